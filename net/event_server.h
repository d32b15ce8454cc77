// The HTTP/1.1 server of the proxy port, the side port and tollgate-sim. One epoll thread reads
// every connection; a request, once whole, goes to a worker thread that runs the
// handler and writes the answer; between requests the connection is back with the
// epoll thread and holds no thread at all. A route may also be answered on the epoll
// thread itself (OnLoop), by a handler that never blocks: the proxy's hot path, which
// then costs no hand-off between threads.
//
// Why not cpp-httplib's server: 0.11 gives each connection a thread for its whole
// life and polls every idle keep-alive connection about 90 times a second (500 idle
// connections kept a core busy), which is what broke 2,000 concurrent streams.
// Handlers keep cpp-httplib's Request and Response (content providers included), so
// they read the same on either server.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "net/boundary.h"
#include "net/event_loop.h"
#include "net/http_request_parser.h"
#include "net/path.h"
#include "net/metrics.h"
#include "net/worker_pool.h"

namespace tollgate {

struct ServerTuning {
  int worker_threads = 64;  // requests in progress at once (an open stream holds one)
  size_t max_body_bytes = 10 * 1024 * 1024;  // larger bodies get 413
  size_t max_target_bytes = 8 * 1024;        // longer request targets get 414 (as nginx)
  // Open client connections (idle, busy and streaming alike); one more is answered 503
  // and closed at once, its request unread.
  size_t max_connections = 10'000;
  // Deadlines, however the bytes trickle in (checked once a second; missed: 408, closed):
  // the whole head within head_timeout_seconds of its first byte, the body within
  // body_timeout_seconds plus its size at body_min_bytes_per_second from the end of the
  // head (a chunked body: the size it has reached).
  int head_timeout_seconds = 10;
  int body_timeout_seconds = 10;
  size_t body_min_bytes_per_second = 64 * 1024;
  int keep_alive_seconds = 60;  // an idle connection is closed
};

class EventServer;

// Lets a handler answer while it works: the status line and headers go out at once,
// then the body chunk by chunk, written by the handler's own thread (a stream relayed
// from an upstream needs no second thread and no queue). A handler that never calls
// Begin() answers through its httplib::Response as usual.
class ResponseWriter {
 public:
  // Each returns false once the client is gone; later calls then do nothing.
  bool Begin(int status, const httplib::Headers& headers);
  bool Write(std::string_view data);  // one chunk
  bool End();                         // the last chunk: the answer is complete
  // Ends the answer without its last chunk (the client sees a cut stream).
  void Abort() { failed_ = true; }
  bool started() const { return started_; }
  bool complete() const { return ended_ && !failed_; }

  // Hands the connection over after Begin(), to be written by an event loop of the
  // caller's (the stream relay): the server neither reads nor closes it until
  // `finish` is called, from any thread, exactly once — true when the answer was
  // completed (the connection then serves the next request if keep-alive allows),
  // false to close it. The new owner writes chunks framed with ChunkFrame() and the
  // last chunk itself. Stop() waits for detached connections as for any request.
  struct Detached {
    int fd = -1;
    std::function<void(bool complete)> finish;
    std::string head;  // for the new owner to write first (DetachWithHead)
  };
  Detached Detach();
  // Begin() and Detach() in one, writing nothing: the status line and headers are in
  // Detached::head, for the new owner to send with the first of the body in one write.
  Detached DetachWithHead(int status, const httplib::Headers& headers);
  bool detached() const { return detached_; }

 private:
  friend class EventServer;
  ResponseWriter(EventServer* server, void* connection, int fd, bool keep_alive)
      : server_(server), connection_(connection), fd_(fd), keep_alive_(keep_alive) {}

  EventServer* const server_;
  void* const connection_;
  const int fd_;
  const bool keep_alive_;
  bool started_ = false;
  bool ended_ = false;
  bool failed_ = false;
  bool detached_ = false;
};

// Lifts the process's soft limit on open files to its hard limit: each connection is a
// descriptor, and thousands may be open at once.
void RaiseOpenFileLimit();

// One chunk of a chunked body: size line, data, CRLF. The last chunk is kLastChunk.
std::string ChunkFrame(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// A handler run on a worker thread: it answers through `res`, or through the writer.
using StreamingHandler =
    std::function<void(const httplib::Request&, httplib::Response&, ResponseWriter&)>;

// The answer to a request an OnLoop handler took: sent once, from the loop thread
// (another thread posts it there with loop().Post). Small and copyable.
class LoopReply {
 public:
  // Writes the answer (a plain body; no content provider), then the connection serves
  // its next request.
  void Send(httplib::Response& res) const;
  // Instead of Send, from any thread: the request goes on on a worker, where `handler`
  // answers it as a worker route's handler would (a stream through the writer, say).
  // The request is the one the loop handler was given.
  void ToWorker(StreamingHandler handler) const;
  // Instead of Send, on the loop thread: a chunked answer begun and its connection handed
  // over, as ResponseWriter::DetachWithHead does (nothing is written here).
  ResponseWriter::Detached DetachWithHead(int status, const httplib::Headers& headers) const;
  EventLoop& loop() const;

 private:
  friend class EventServer;
  LoopReply(EventServer* server, void* connection, bool keep_alive)
      : server_(server), connection_(connection), keep_alive_(keep_alive) {}
  EventServer* server_;
  void* connection_;
  bool keep_alive_;
};

// Routes every path that starts with `prefix` (see EventServer's routes).
struct PathPrefix {
  std::string prefix;
};

class EventServer final : public EventLoop {
 public:
  friend class ResponseWriter;
  friend class LoopReply;
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  using StreamingHandler = ::tollgate::StreamingHandler;
  // Runs on the loop thread and must not block: takes the request (true; `reply` is
  // then sent later, once) or declines it (false, having answered nothing), and the
  // route's worker handler gets it. One that throws must have used no reply: the server
  // answers 500 for it.
  using LoopHandler = std::function<bool(const httplib::Request&, const LoopReply& reply)>;
  // Renders an error the server raises itself (no route: 404; a request it cannot
  // read: 400, 413, 414, 431, 501, 505; a handler that threw: 500). `req` holds what was
  // read of the request, the caller's bytes as they came; `message` is valid UTF-8.
  using ErrorRenderer = std::function<void(const httplib::Request& req, int status,
                                           const std::string& message, httplib::Response& res)>;
  // Asked once a request's head is in and its body still to come (never for a request
  // that arrived whole), before the body is read: whether it is worth reading. Called
  // on the loop thread with `on_loop` true, where it must not block: kUndecided asks
  // again on a worker (`on_loop` false), which must decide. kRefuse sends `res` at once
  // and closes the connection, the body unread.
  enum class HeadVerdict { kProceed, kRefuse, kUndecided };
  using HeadCheck =
      std::function<HeadVerdict(const ParsedRequest& head, bool on_loop, httplib::Response& res)>;

  // Handlers, loop callbacks, worker tasks and the error renderer run inside `boundary`:
  // an exception from one is a 500 (or a cut answer), a log line and a count.
  explicit EventServer(const ServerTuning& tuning, Boundary boundary = Boundary());
  ~EventServer();
  EventServer(const EventServer&) = delete;
  EventServer& operator=(const EventServer&) = delete;

  // Routes, tried in order; `pattern` (a PathPattern: literal segments and `*`) must
  // match the whole path (query excluded); a handler reads what a `*` stood for with
  // PathSegment(req.path, i). Register them before Start(). A route given a PathPrefix
  // takes every path that starts with it, compared as bytes.
  void Get(const std::string& pattern, Handler handler);
  void Post(const std::string& pattern, Handler handler);
  void Put(const std::string& pattern, Handler handler);
  void Delete(const std::string& pattern, Handler handler);
  // A route whose handler may answer through the ResponseWriter.
  void Streaming(const std::string& method, const std::string& pattern, StreamingHandler handler);
  void Streaming(const std::string& method, PathPrefix prefix, StreamingHandler handler);
  // A route tried on the loop thread first, on a worker when `on_loop` declines.
  void OnLoop(const std::string& method, const std::string& pattern, LoopHandler on_loop,
              StreamingHandler on_worker);
  void OnLoop(const std::string& method, PathPrefix prefix, LoopHandler on_loop,
              StreamingHandler on_worker);
  void set_error_renderer(ErrorRenderer renderer) { render_error_ = std::move(renderer); }
  void set_head_check(HeadCheck check) { head_check_ = std::move(check); }
  // Where the server counts connections refused at the cap and requests timed out.
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }

  // Binds (port 0: any free port), listens and starts serving; the bound port or -1.
  int Start(const std::string& host, int port);
  // Stops accepting and closes idle connections; requests in progress may finish
  // within `grace`, after which their sockets are shut down. The loop runs until the
  // last request is over (those answered on it need it).
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(30));
  int port() const { return port_; }

  // EventLoop, for OnLoop handlers and what they wait on.
  void Watch(int fd, uint32_t events, Watcher* watcher) override;
  void Unwatch(int fd) override;
  void Post(std::function<void()> task) override;
  void EverySecond(std::function<void()> tick) override;
  void RunAfter(std::chrono::milliseconds delay, std::function<void()> task) override;
  bool InLoopThread() const override;

  // Open connections, and threads in the worker pool (for tests and metrics).
  size_t connections() const;
  size_t worker_threads() const { return pool_->threads(); }

 private:
  struct Connection;
  struct Route {
    std::string method;
    std::optional<PathPattern> pattern;  // none for a PathPrefix route, which has:
    std::string prefix;
    StreamingHandler handler;
    LoopHandler on_loop;  // may be empty
    bool Matches(const httplib::Request& req) const;
  };

  void Loop();
  void Accept();
  void OnReadable(Connection* c);
  // The head is in, the body still to come: its check, then 100 Continue if asked for.
  void HeadIn(Connection* c);
  void CheckHeadOnWorker(Connection* c);
  // Asks a client that waits for it (Expect: 100-continue) for the body; false if the
  // connection failed.
  bool SendContinue(Connection* c);
  // Writes what the socket takes of `res` at once and closes: for answers the server
  // gives without reading on (a refused head, a missed deadline).
  void AnswerAndClose(Connection* c, httplib::Response& res);
  // Past the request's deadline (Sweep).
  bool Late(const Connection& c, std::chrono::steady_clock::time_point now) const;
  void TimeOut(Connection* c);
  // Past max_connections: answered 503 and closed, never read.
  bool AtConnectionCap() const;
  void RefuseConnection(int fd);
  // A whole request is in: answered on the loop if its route can, else by a worker.
  void Dispatch(Connection* c);
  bool TryOnLoop(Connection* c);
  // Answers on this worker until the connection is idle, detached or closed; the first
  // request by `first` when given, not by its route.
  void Serve(Connection* c, const StreamingHandler* first = nullptr);
  // After an answer: the next request, back to waiting, or closed.
  void AfterAnswer(Connection* c, bool keep_alive);
  void SendOnLoop(Connection* c, httplib::Response& res, bool keep_alive);
  void RunPosted();
  int WaitMs() const;
  bool RunTimers();  // whether any ran
  void Wake();
  enum class Outcome { kKeepAlive, kClose, kDetached };
  // Answers the parsed request (or the parse error).
  Outcome Answer(Connection& c, const StreamingHandler* handler);
  // A detached connection comes back: the next request, or closed.
  void Resume(Connection* c, bool keep_alive);
  // The connection handed over; `finish` resumes it.
  ResponseWriter::Detached Handed(Connection* c, bool keep_alive);
  // Ready for the connection's next request; true if it is already here, whole.
  bool NextRequestReady(Connection* c);
  httplib::Request TakeRequest(Connection& c);
  bool Route(httplib::Request& req, httplib::Response& res, ResponseWriter& writer);
  void Run(const StreamingHandler& handler, const httplib::Request& req, httplib::Response& res,
           ResponseWriter& writer);
  // The renderer's answer for `status` in `res`, or the server's plain one if it throws.
  void RenderError(const httplib::Request& req, int status, std::string_view message,
                   httplib::Response& res);
  bool WriteResponse(Connection& c, const httplib::Request& req, httplib::Response& res,
                     bool keep_alive);
  // Into / out of the epoll set, with mu_ held.
  void Arm(Connection* c);
  void Disarm(Connection* c);
  void Release(Connection* c);
  void Close(Connection* c);
  void Sweep();

  const ServerTuning tuning_;
  const ParserLimits limits_;
  const Boundary boundary_;
  std::vector<struct Route> routes_;
  ErrorRenderer render_error_;
  HeadCheck head_check_;
  Metrics* metrics_ = nullptr;

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = -1;
  bool accept_paused_ = false;  // out of file descriptors; retried by the sweep
  std::thread loop_;
  std::atomic<std::thread::id> loop_id_;
  bool has_loop_routes_ = false;
  std::vector<std::function<void()>> ticks_;  // loop thread only
  struct Timer {
    std::chrono::steady_clock::time_point due;
    std::function<void()> task;
  };
  std::vector<Timer> timers_;  // loop thread only; few

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;

  mutable std::mutex mu_;  // connections_, each connection's busy flag, busy_, stopping_
  std::condition_variable idle_;
  std::unordered_set<Connection*> connections_;
  size_t busy_ = 0;
  std::atomic<bool> stopping_{false};

  // Last: destroyed first, so no worker outlives the routes it runs.
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace tollgate
