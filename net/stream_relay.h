// Relays streamed answers from upstream connections to clients on one epoll thread.
// A worker sends the request, reads the answer's head, writes the client's head and
// hands both sockets here; from then on the stream costs no thread: each wake-up of
// the loop reads whatever arrived on any upstream, passes it through the stream's
// transform (the provider's usage observer), and writes it to the client without
// waiting. A client slower than its upstream stops the upstream's reads (the socket
// buffers bound the memory); a client that hangs up leaves the read going on to the
// final usage if the stream may drain.
//
// Why: read on a thread per stream, each chunk woke a thread (~120 µs of CPU per
// chunk on this VM); 2,000 streams of 10 chunks a second took both cores.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "net/event_server.h"
#include "net/http_client.h"
#include "net/worker_pool.h"

namespace tollgate {

// What a relayed stream does with its bytes. Transform, Finish and MayDrain run on
// the relay's thread and must not block; Done runs on a worker and may. Each runs inside
// the relay's Boundary: a Transform that throws ends the upstream's part as if it broke
// off (Finish says how the client's answer ends), a Finish that throws cuts the answer,
// and the client's connection is given back whatever Done does.
class RelayedStream {
 public:
  virtual ~RelayedStream() = default;
  // Upstream body bytes in, bytes for the client out (may be empty).
  virtual std::string Transform(std::string_view upstream) = 0;
  // The upstream's answer is over (ended, failed or went silent): the last bytes for
  // the client, and whether the answer ends properly (`*complete`, the last chunk
  // follows) or is cut off.
  virtual std::string Finish(bool* complete) = 0;
  // The client hung up: whether to keep reading the upstream (to its usage) anyway.
  virtual bool MayDrain() = 0;
  // Everything is over; `client_complete`: the client got the whole answer.
  virtual void Done(bool client_complete) = 0;
};

struct RelayTimeouts {
  int upstream_silence_ms = 600000;  // no byte from the upstream for this long: cut
  int drain_ms = 120000;             // reading on after the client left
  int client_stall_ms = 60000;       // a client that takes no byte for this long is gone
};

class StreamRelay {
 public:
  // Returns a finished upstream connection (to its pool, which keeps it if reusable).
  using ReleaseUpstream = std::function<void(std::unique_ptr<HttpConnection>)>;

  explicit StreamRelay(RelayTimeouts timeouts, size_t done_threads = 8,
                       Boundary boundary = Boundary());
  // Streams still running are cut: Done(false) and the client connection closed.
  ~StreamRelay();
  StreamRelay(const StreamRelay&) = delete;
  StreamRelay& operator=(const StreamRelay&) = delete;

  // Takes over a stream whose head the client has been sent, or is in `client.head` to
  // send first. Any thread; the body bytes already in are sent to the client from it,
  // with the head in one write.
  void Add(std::unique_ptr<HttpConnection> upstream, ReleaseUpstream release,
           ResponseWriter::Detached client, std::unique_ptr<RelayedStream> stream);

  // The most bytes ever held for one slow client (bounded by the back-pressure).
  size_t peak_buffered_bytes() const { return peak_buffered_.load(); }
  // How often an upstream's reads were paused for a slow client.
  size_t read_pauses() const { return read_pauses_.load(); }

 private:
  struct Relay;
  struct Tag {
    Relay* relay;
    bool client;
  };

  void Loop();
  void Start(Relay* r);
  HttpConnection::Progress ReadAndFrame(Relay* r);
  void Register(Relay* r);
  void OnUpstream(Relay* r);
  void OnClient(Relay* r, uint32_t events);
  void EndUpstream(Relay* r);
  void Flush(Relay* r);
  void ClientGone(Relay* r);
  void Watch(Relay* r);
  void Complete(Relay* r);
  void Sweep();

  const RelayTimeouts timeouts_;
  const Boundary boundary_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> peak_buffered_{0};
  std::atomic<size_t> read_pauses_{0};

  mutable std::mutex mu_;
  std::vector<Relay*> incoming_;  // added, not yet registered by the loop
  std::unordered_set<Relay*> relays_;
  std::vector<Relay*> completed_;  // freed after the current batch of events

  std::unique_ptr<WorkerPool> done_pool_;
  std::thread loop_;
};

}  // namespace tollgate
