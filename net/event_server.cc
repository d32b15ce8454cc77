#include "net/event_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/text.h"
#include "net/header_list.h"

namespace tollgate {

struct EventServer::Connection final : EventLoop::Watcher {
  Connection(EventServer* owner, int socket, ParserLimits limits)
      : server(owner), fd(socket), parser(limits) {}
  void OnEvents(uint32_t) override { server->OnReadable(this); }
  EventServer* const server;
  const int fd;
  std::string remote_addr;
  int remote_port = 0;
  std::string in;  // bytes read and not yet parsed into a request
  RequestParser parser;
  bool continue_sent = false;
  bool head_checked = false;  // by the head check, for the request being read
  bool peer_closed = false;
  bool busy = false;                          // with a worker or a loop handler (guarded by mu_)
  bool armed = false;                         // in the epoll set (guarded by mu_)
  std::unique_ptr<httplib::Request> request;  // taken for a loop handler
  std::chrono::steady_clock::time_point last_active;
  std::chrono::steady_clock::time_point head_since;  // the request's first byte came
  std::chrono::steady_clock::time_point body_since;  // its head was complete
};

namespace {

using Clock = std::chrono::steady_clock;
// Level-triggered, and left in the epoll set from one request to the next for as long
// as the loop has the connection: a request answered on the loop costs no epoll_ctl.
constexpr uint32_t kReadEvents = EPOLLIN | EPOLLRDHUP;
constexpr int kWriteTimeoutMs = 60'000;

const char* Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 529:
      return "Overloaded";
    default:
      return "";
  }
}

// Framing headers are the server's to write, whatever the handler set.
bool IsFramingHeader(std::string_view name) {
  return IsOneOf(name, {"Content-Length", "Transfer-Encoding", "Connection"});
}

// The status line and the handler's headers; the framing lines and the blank line
// are the caller's.
std::string StatusAndHeaders(int status, const httplib::Headers& headers, bool keep_alive) {
  std::string out;
  out.reserve(256);
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(Reason(status));
  out.append("\r\n");
  for (const auto& [name, value] : headers) {
    if (!IsFramingHeader(name)) out.append(name).append(": ").append(value).append("\r\n");
  }
  if (!keep_alive) out += "Connection: close\r\n";
  return out;
}

// The head of an answer whose body follows in chunks.
std::string ChunkedHead(int status, const httplib::Headers& headers, bool keep_alive) {
  return StatusAndHeaders(status, headers, keep_alive) + "Transfer-Encoding: chunked\r\n\r\n";
}

// Writes what the socket takes without waiting: the bytes written, or -1 if the
// connection failed.
ssize_t SendAvailable(int fd, const char* data, size_t size) {
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      return -1;
    }
  }
  return static_cast<ssize_t>(sent);
}

bool Send(int fd, const char* data, size_t size) {
  for (;;) {
    ssize_t n = SendAvailable(fd, data, size);
    if (n < 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
    if (size == 0) return true;
    // A client reading slower than we write: wait for room, within reason.
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    if (poll(&p, 1, kWriteTimeoutMs) != 1 || !(p.revents & POLLOUT)) return false;
  }
}

// What the server says when a handler set no status, or an error status without a body.
void CompleteAnswer(httplib::Response& res, const std::string& error_text) {
  if (res.status == -1) res.status = 200;
  if (res.status >= 400 && res.body.empty() && !res.content_provider_)
    res.set_content(error_text.empty() ? std::string(Reason(res.status)) : error_text,
                    "text/plain");
}

// A plain answer (no content provider), framed with its length.
std::string PlainAnswer(const httplib::Response& res, bool keep_alive, bool head_only) {
  std::string out = StatusAndHeaders(res.status, res.headers, keep_alive);
  out.reserve(out.size() + 32 + (head_only ? 0 : res.body.size()));
  out.append("Content-Length: ").append(std::to_string(res.body.size())).append("\r\n\r\n");
  if (!head_only) out += res.body;
  return out;
}

void FillRemote(const sockaddr_storage& addr, std::string* host, int* port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
    *port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text));
    *port = ntohs(a.sin6_port);
  }
  *host = text;
}

}  // namespace

void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string ChunkFrame(std::string_view data) {
  char line[24];
  int n = snprintf(line, sizeof(line), "%zx\r\n", data.size());
  std::string frame;
  frame.reserve(static_cast<size_t>(n) + data.size() + 2);
  frame.append(line, static_cast<size_t>(n));
  frame.append(data);
  frame += "\r\n";
  return frame;
}

EventServer::EventServer(const ServerTuning& tuning, Boundary boundary)
    : tuning_(tuning),
      limits_{.max_body_bytes = tuning.max_body_bytes, .max_target_bytes = tuning.max_target_bytes},
      boundary_(boundary),
      pool_(std::make_unique<WorkerPool>(static_cast<size_t>(tuning.worker_threads), boundary)) {}

EventServer::~EventServer() {
  Stop();
  // Open until now, not closed by Stop(): a thread may still Post (and wake) a stopped
  // loop, and must not write into a descriptor number reused meanwhile. The workers
  // (a task ending after Stop may still Post) are gone first.
  pool_.reset();
  if (wake_fd_ >= 0) close(wake_fd_);
}

namespace {
EventServer::StreamingHandler Plain(EventServer::Handler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                        ResponseWriter&) { handler(req, res); };
}
}  // namespace

void EventServer::Get(const std::string& pattern, Handler handler) {
  Streaming("GET", pattern, Plain(std::move(handler)));
}
void EventServer::Post(const std::string& pattern, Handler handler) {
  Streaming("POST", pattern, Plain(std::move(handler)));
}
void EventServer::Put(const std::string& pattern, Handler handler) {
  Streaming("PUT", pattern, Plain(std::move(handler)));
}
void EventServer::Delete(const std::string& pattern, Handler handler) {
  Streaming("DELETE", pattern, Plain(std::move(handler)));
}
void EventServer::Streaming(const std::string& method, const std::string& pattern,
                            StreamingHandler handler) {
  routes_.push_back({method, PathPattern(pattern), "", std::move(handler), nullptr});
}
void EventServer::Streaming(const std::string& method, PathPrefix prefix,
                            StreamingHandler handler) {
  routes_.push_back({method, std::nullopt, std::move(prefix.prefix), std::move(handler), nullptr});
}
void EventServer::OnLoop(const std::string& method, const std::string& pattern, LoopHandler on_loop,
                         StreamingHandler on_worker) {
  routes_.push_back({method, PathPattern(pattern), "", std::move(on_worker), std::move(on_loop)});
  has_loop_routes_ = true;
}
void EventServer::OnLoop(const std::string& method, PathPrefix prefix, LoopHandler on_loop,
                         StreamingHandler on_worker) {
  routes_.push_back(
      {method, std::nullopt, std::move(prefix.prefix), std::move(on_worker), std::move(on_loop)});
  has_loop_routes_ = true;
}

bool EventServer::Route::Matches(const httplib::Request& req) const {
  if (method != req.method) return false;
  if (pattern) return pattern->Matches(req.path);
  return req.path.starts_with(prefix);
}

void LoopReply::Send(httplib::Response& res) const {
  server_->SendOnLoop(static_cast<EventServer::Connection*>(connection_), res, keep_alive_);
}

void LoopReply::ToWorker(StreamingHandler handler) const {
  auto* c = static_cast<EventServer::Connection*>(connection_);
  {
    std::lock_guard lock(server_->mu_);
    server_->Disarm(c);  // a worker's until Release, as after Dispatch
  }
  server_->pool_->Submit(
      [server = server_, c, handler = std::move(handler)] { server->Serve(c, &handler); });
}

EventLoop& LoopReply::loop() const { return *server_; }

bool ResponseWriter::Begin(int status, const httplib::Headers& headers) {
  if (started_) return !failed_;
  started_ = true;
  std::string out = ChunkedHead(status, headers, keep_alive_);
  failed_ = !Send(fd_, out.data(), out.size());
  return !failed_;
}

bool ResponseWriter::Write(std::string_view data) {
  if (!started_ || ended_ || failed_) return false;
  if (data.empty()) return true;
  std::string frame = ChunkFrame(data);
  failed_ = !Send(fd_, frame.data(), frame.size());
  return !failed_;
}

bool ResponseWriter::End() {
  if (!started_ || ended_ || failed_) return false;
  ended_ = true;
  failed_ = !Send(fd_, kLastChunk.data(), kLastChunk.size());
  return !failed_;
}

ResponseWriter::Detached ResponseWriter::Detach() {
  detached_ = true;
  return server_->Handed(static_cast<EventServer::Connection*>(connection_),
                         keep_alive_ && !failed_);
}

ResponseWriter::Detached ResponseWriter::DetachWithHead(int status,
                                                        const httplib::Headers& headers) {
  started_ = true;
  Detached detached = Detach();
  detached.head = ChunkedHead(status, headers, keep_alive_);
  return detached;
}

ResponseWriter::Detached LoopReply::DetachWithHead(int status,
                                                   const httplib::Headers& headers) const {
  auto* c = static_cast<EventServer::Connection*>(connection_);
  c->request.reset();
  {
    std::lock_guard lock(server_->mu_);
    server_->Disarm(c);  // the new owner's until it is resumed
  }
  ResponseWriter::Detached detached = server_->Handed(c, keep_alive_);
  detached.head = ChunkedHead(status, headers, keep_alive_);
  return detached;
}

ResponseWriter::Detached EventServer::Handed(Connection* c, bool keep_alive) {
  return {c->fd, [this, c, keep_alive](bool complete) { Resume(c, complete && keep_alive); }, ""};
}

size_t EventServer::connections() const {
  std::lock_guard lock(mu_);
  return connections_.size();
}

int EventServer::Start(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  for (addrinfo* a = found; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    // A burst of thousands of connects must queue, not be dropped and retried seconds later.
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0) {
      listen_fd_ = fd;
    } else {
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) return -1;
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  std::string ignored;
  FillRemote(bound, &ignored, &port_);

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event listen_event{.events = EPOLLIN, .data = {.ptr = &listen_fd_}};
  epoll_event wake_event{.events = EPOLLIN, .data = {.ptr = &wake_fd_}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen_event);
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake_event);
  loop_ = std::thread([this] { Loop(); });
  loop_id_.store(loop_.get_id());
  return port_;
}

void EventServer::Stop(std::chrono::milliseconds grace) {
  if (!loop_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  Wake();  // the loop stops accepting and closes the idle connections
  {
    std::unique_lock lock(mu_);
    if (!idle_.wait_for(lock, grace, [&] { return busy_ == 0; })) {
      for (Connection* c : connections_) shutdown(c->fd, SHUT_RDWR);
    }
    idle_.wait(lock, [&] { return busy_ == 0; });
  }
  Wake();
  loop_.join();
  RunPosted();
  close(listen_fd_);
  close(epoll_fd_);
}

void EventServer::Wake() {
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // The loop also wakes by itself within a second.
  }
}

void EventServer::Loop() {
  epoll_event events[256];
  Clock::time_point last_sweep = Clock::now();
  bool closing = false;
  for (;;) {
    if (stopping_.load()) {
      if (!closing) {
        closing = true;
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        std::vector<Connection*> idle;
        {
          std::lock_guard lock(mu_);
          for (Connection* c : connections_) {
            if (!c->busy) idle.push_back(c);
          }
        }
        for (Connection* c : idle) Close(c);
      }
      std::lock_guard lock(mu_);
      if (busy_ == 0) break;  // requests answered on the loop need it to the end
    }
    int n = epoll_wait(epoll_fd_, events, 256, WaitMs());
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &listen_fd_) {
        Accept();
      } else if (tag == &wake_fd_) {
        uint64_t count;
        if (read(wake_fd_, &count, sizeof(count)) < 0) continue;
      } else {
        boundary_.Run("a loop event",
                      [&] { static_cast<Watcher*>(tag)->OnEvents(events[i].events); });
      }
    }
    RunPosted();
    if (RunTimers()) RunPosted();  // what the timers posted goes now, not after the next wait
    if (Clock::now() - last_sweep >= std::chrono::seconds(1)) {
      Sweep();
      for (const auto& tick : ticks_) boundary_.Run("a loop tick", tick);
      last_sweep = Clock::now();
    }
  }
  RunPosted();
}

void EventServer::Watch(int fd, uint32_t events, Watcher* watcher) {
  epoll_event ev{.events = events, .data = {.ptr = watcher}};
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventServer::Unwatch(int fd) { epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventServer::Post(std::function<void()> task) {
  bool first = false;
  {
    std::lock_guard lock(post_mu_);
    first = posted_.empty();
    posted_.push_back(std::move(task));
  }
  if (first && !InLoopThread()) Wake();
}

void EventServer::RunPosted() {
  for (;;) {
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard lock(post_mu_);
      if (posted_.empty()) return;
      tasks.swap(posted_);
    }
    for (auto& task : tasks) boundary_.Run("a posted task", task);
  }
}

void EventServer::EverySecond(std::function<void()> tick) { ticks_.push_back(std::move(tick)); }

void EventServer::RunAfter(std::chrono::milliseconds delay, std::function<void()> task) {
  timers_.push_back({Clock::now() + delay, std::move(task)});
}

// How long epoll may wait: until the next timer is due (rounded up to the millisecond),
// at most a second (the sweep and the ticks).
int EventServer::WaitMs() const {
  auto wait = std::chrono::milliseconds(1000);
  auto now = Clock::now();
  for (const Timer& t : timers_) {
    wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(std::max(t.due - now, {})));
  }
  return static_cast<int>(wait.count());
}

bool EventServer::RunTimers() {
  if (timers_.empty()) return false;
  auto now = Clock::now();
  std::vector<std::function<void()>> due;
  std::erase_if(timers_, [&](Timer& t) {
    if (t.due > now) return false;
    due.push_back(std::move(t.task));
    return true;
  });
  for (auto& task : due) boundary_.Run("a timer", task);  // may set new timers
  return !due.empty();
}

bool EventServer::InLoopThread() const { return std::this_thread::get_id() == loop_id_.load(); }

void EventServer::Accept() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Stop asking until the sweep: the listener would otherwise wake the loop forever.
        epoll_event none{.events = 0, .data = {.ptr = &listen_fd_}};
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &none);
        accept_paused_ = true;
      }
      return;
    }
    if (AtConnectionCap()) {
      RefuseConnection(fd);
      continue;
    }
    int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    auto* c = new Connection(this, fd, limits_);
    FillRemote(addr, &c->remote_addr, &c->remote_port);
    c->last_active = Clock::now();
    std::lock_guard lock(mu_);
    connections_.insert(c);
    Arm(c);
  }
}

bool EventServer::AtConnectionCap() const {
  std::lock_guard lock(mu_);
  return connections_.size() >= tuning_.max_connections;
}

// Said at once and closed: an answer before the request is plain HTTP/1.1 (clients read
// it as the reply, and SDKs retry a 503 after a pause), it costs no buffer and no parse,
// and a flood past the cap holds nothing open. Not accepting would leave clients waiting
// in the backlog until their connect timeout, with the listener waking the loop.
void EventServer::RefuseConnection(int fd) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";
  if (metrics_ != nullptr) metrics_->Inc(Counter::kConnectionsRefused);
  // What the client has sent already is dropped first, so that the close is a FIN,
  // not a reset that could overtake the answer.
  char discard[4096];
  while (recv(fd, discard, sizeof(discard), MSG_DONTWAIT) ==
         static_cast<ssize_t>(sizeof(discard))) {
  }
  SendAvailable(fd, kBusy.data(), kBusy.size());
  close(fd);
}

void EventServer::Arm(Connection* c) {
  if (c->armed) return;
  epoll_event ev{.events = kReadEvents, .data = {.ptr = static_cast<Watcher*>(c)}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev);
  c->armed = true;
}

// Out of the epoll set altogether: a connection merely disabled would still report
// EPOLLHUP and EPOLLERR.
void EventServer::Disarm(Connection* c) {
  if (!c->armed) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  c->armed = false;
}

void EventServer::OnReadable(Connection* c) {
  {
    // Spoke (or hung up) while its request is still being answered on the loop: heard
    // again once the answer is out (Release), not read now.
    std::lock_guard lock(mu_);
    if (c->busy) return Disarm(c);
  }
  const bool was_idle = !c->parser.started() && c->in.empty();
  const bool had_head = c->parser.head_done();
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = recv(c->fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      c->in.append(buffer, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(buffer)) break;
      // Until the head is parsed, one read at a time: the head check comes before the
      // body is read (epoll, level-triggered, brings the rest).
      if (!had_head) break;
    } else if (n == 0) {
      c->peer_closed = true;
      break;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      return Close(c);
    }
  }
  Clock::time_point now = Clock::now();
  c->last_active = now;
  if (was_idle) c->head_since = now;
  RequestParser::State state = c->parser.Parse(c->in);
  if (state == RequestParser::State::kNeedMore) {
    if (c->peer_closed) return Close(c);  // hung up before a whole request
    if (!c->parser.head_done()) return;   // still armed: the rest wakes the loop
    if (!had_head) c->body_since = now;
    return HeadIn(c);
  }
  {
    std::lock_guard lock(mu_);
    c->busy = true;
    ++busy_;
  }
  Dispatch(c);
}

void EventServer::HeadIn(Connection* c) {
  if (head_check_ && !c->head_checked) {
    c->head_checked = true;
    httplib::Response res;
    switch (head_check_(c->parser.request(), true, res)) {
      case HeadVerdict::kRefuse:
        return AnswerAndClose(c, res);
      case HeadVerdict::kUndecided:
        return CheckHeadOnWorker(c);
      case HeadVerdict::kProceed:
        break;
    }
  }
  if (!SendContinue(c)) Close(c);
}

// The connection is a worker's meanwhile (busy, out of the epoll set), as for a request.
void EventServer::CheckHeadOnWorker(Connection* c) {
  {
    std::lock_guard lock(mu_);
    c->busy = true;
    ++busy_;
    Disarm(c);
  }
  pool_->Submit([this, c] {
    httplib::Response res;
    if (head_check_(c->parser.request(), false, res) == HeadVerdict::kRefuse)
      return AnswerAndClose(c, res);
    if (!SendContinue(c)) return Close(c);
    Release(c);  // armed again: what came meanwhile is read
  });
}

bool EventServer::SendContinue(Connection* c) {
  if (!c->parser.request().expect_continue || c->continue_sent) return true;
  static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
  c->continue_sent = true;
  return send(c->fd, kContinue, sizeof(kContinue) - 1, MSG_NOSIGNAL) >= 0;
}

void EventServer::AnswerAndClose(Connection* c, httplib::Response& res) {
  CompleteAnswer(res, "");
  std::string out = PlainAnswer(res, /*keep_alive=*/false, /*head_only=*/false);
  SendAvailable(c->fd, out.data(), out.size());  // the connection ends either way
  Close(c);
}

void EventServer::Dispatch(Connection* c) {
  if (has_loop_routes_ && !InLoopThread()) return Post([this, c] { Dispatch(c); });
  if (has_loop_routes_ && TryOnLoop(c)) return;
  {
    std::lock_guard lock(mu_);
    Disarm(c);  // a worker's until Release: the loop must not hear of it meanwhile
  }
  pool_->Submit([this, c] { Serve(c); });
}

bool EventServer::TryOnLoop(Connection* c) {
  if (c->parser.error_status() != 0) return false;
  bool keep_alive = c->parser.request().keep_alive && !c->peer_closed && !stopping_.load();
  c->request = std::make_unique<httplib::Request>(TakeRequest(*c));
  httplib::Request& req = *c->request;
  for (const auto& route : routes_) {
    if (!route.Matches(req)) continue;
    if (!route.on_loop) return false;
    // Declined: the worker's Answer() takes the request as it is.
    bool taken = false;
    if (boundary_.Run("a loop handler",
                      [&] { taken = route.on_loop(req, LoopReply(this, c, keep_alive)); }))
      return taken;
    httplib::Response res;  // it threw, having used no reply
    RenderError(req, 500, "internal error", res);
    SendOnLoop(c, res, keep_alive);
    return true;
  }
  return false;
}

void EventServer::SendOnLoop(Connection* c, httplib::Response& res, bool keep_alive) {
  bool head_only = c->request && c->request->method == "HEAD";
  c->request.reset();
  CompleteAnswer(res, "");
  if (strcasecmp(res.get_header_value("Connection").c_str(), "close") == 0) keep_alive = false;
  std::string out = PlainAnswer(res, keep_alive, head_only);
  ssize_t sent = SendAvailable(c->fd, out.data(), out.size());
  if (sent < 0) return AfterAnswer(c, false);
  if (static_cast<size_t>(sent) == out.size()) return AfterAnswer(c, keep_alive);
  // A client reading slowly: a worker waits for it, the loop does not.
  {
    std::lock_guard lock(mu_);
    Disarm(c);
  }
  pool_->Submit([this, c, keep_alive, rest = out.substr(static_cast<size_t>(sent))] {
    AfterAnswer(c, Send(c->fd, rest.data(), rest.size()) && keep_alive);
  });
}

void EventServer::AfterAnswer(Connection* c, bool keep_alive) {
  if (!keep_alive || c->peer_closed || stopping_.load()) return Close(c);
  if (!NextRequestReady(c)) return Release(c);
  Dispatch(c);
}

void EventServer::Serve(Connection* c, const StreamingHandler* first) {
  for (;;) {
    Outcome outcome = Answer(*c, first);
    first = nullptr;
    if (outcome == Outcome::kDetached) return;  // Resume() takes it from here
    if (outcome == Outcome::kClose) return Close(c);
    if (!NextRequestReady(c)) return Release(c);
    // A pipelined request: its route may be one answered on the loop.
    if (has_loop_routes_) return Dispatch(c);
  }
}

bool EventServer::NextRequestReady(Connection* c) {
  c->parser.Reset();
  c->continue_sent = c->head_checked = false;
  if (c->in.empty()) return false;
  // A pipelined request is here, its time counted from now.
  c->head_since = c->body_since = Clock::now();
  return c->parser.Parse(c->in) != RequestParser::State::kNeedMore;
}

void EventServer::Resume(Connection* c, bool keep_alive) {
  if (!keep_alive || c->peer_closed) return Close(c);
  if (!NextRequestReady(c)) return Release(c);
  Dispatch(c);
}

httplib::Request EventServer::TakeRequest(Connection& c) {
  ParsedRequest& parsed = c.parser.request();
  httplib::Request req;
  req.method = std::move(parsed.method);
  req.target = std::move(parsed.target);
  req.version = std::move(parsed.version);
  size_t query = req.target.find('?');
  req.path = req.target.substr(0, query);
  if (query != std::string::npos)  // form-decoded, as cpp-httplib's own server does
    httplib::detail::parse_query_text(req.target.substr(query + 1), req.params);
  req.headers = std::move(parsed.headers);
  req.body = std::move(parsed.body);
  req.remote_addr = c.remote_addr;
  req.remote_port = c.remote_port;
  return req;
}

EventServer::Outcome EventServer::Answer(Connection& c, const StreamingHandler* handler) {
  httplib::Request req = c.request ? std::move(*c.request) : TakeRequest(c);
  c.request.reset();
  httplib::Response res;
  bool keep_alive = c.parser.request().keep_alive && !c.peer_closed && !stopping_.load();

  ResponseWriter writer(this, &c, c.fd, keep_alive);
  int error = c.parser.error_status();
  if (error != 0) {
    // What follows an unreadable request cannot be framed: answer and close.
    keep_alive = false;
    RenderError(req, error, c.parser.error_message(), res);
  } else if (handler != nullptr) {
    Run(*handler, req, res, writer);
  } else if (!Route(req, res, writer)) {
    RenderError(req, 404, "no route for " + req.method + " " + req.path, res);
  }
  if (writer.detached()) return Outcome::kDetached;
  if (writer.started())
    return writer.complete() && keep_alive ? Outcome::kKeepAlive : Outcome::kClose;
  CompleteAnswer(res, error != 0 ? c.parser.error_message() : "");
  return WriteResponse(c, req, res, keep_alive) && keep_alive ? Outcome::kKeepAlive
                                                              : Outcome::kClose;
}

bool EventServer::Route(httplib::Request& req, httplib::Response& res, ResponseWriter& writer) {
  for (const auto& route : routes_) {
    if (!route.Matches(req)) continue;
    Run(route.handler, req, res, writer);
    return true;
  }
  return false;
}

void EventServer::Run(const StreamingHandler& handler, const httplib::Request& req,
                      httplib::Response& res, ResponseWriter& writer) {
  if (boundary_.Run("a handler", [&] { handler(req, res, writer); })) return;
  // Handlers return errors as values; this is the last line, not the plan: a 500 in the
  // route's own shape, or an answer already begun cut off.
  writer.Abort();
  res = httplib::Response();
  RenderError(req, 500, "internal error", res);
}

void EventServer::RenderError(const httplib::Request& req, int status, std::string_view message,
                              httplib::Response& res) {
  res.status = status;
  if (!render_error_) return;
  bool rendered = boundary_.Run("the error renderer",
                                [&] { render_error_(req, status, ValidUtf8(message), res); });
  if (!rendered) {
    res = httplib::Response();
    res.status = status;  // CompleteAnswer gives it the plain reason
  }
}

bool EventServer::WriteResponse(Connection& c, const httplib::Request& req, httplib::Response& res,
                                bool keep_alive) {
  const bool has_provider = static_cast<bool>(res.content_provider_);
  const bool chunked = has_provider && res.is_chunked_content_provider_;
  const bool until_close = has_provider && !chunked && res.content_length_ == 0;
  if (until_close || strcasecmp(res.get_header_value("Connection").c_str(), "close") == 0)
    keep_alive = false;

  const bool head_only = req.method == "HEAD";
  if (!has_provider) {
    std::string out = PlainAnswer(res, keep_alive, head_only);
    return Send(c.fd, out.data(), out.size());
  }
  std::string out = StatusAndHeaders(res.status, res.headers, keep_alive);
  if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else if (!until_close) {
    out += "Content-Length: " + std::to_string(res.content_length_) + "\r\n";
  }
  out += "\r\n";
  if (!Send(c.fd, out.data(), out.size())) return false;
  if (head_only) return true;

  // Content providers, as cpp-httplib runs them: called until they say done (or, with a
  // length, until that many bytes went out); false from a provider aborts the answer.
  bool ok = true;
  bool done = false;
  size_t offset = 0;
  httplib::DataSink sink;
  sink.write = [&](const char* data, size_t size) {
    if (!ok) return false;
    if (size == 0) return true;
    if (chunked) {
      std::string frame = ChunkFrame(std::string_view(data, size));
      ok = Send(c.fd, frame.data(), frame.size());
    } else {
      ok = Send(c.fd, data, size);
    }
    offset += size;
    return ok;
  };
  sink.done = [&] {
    if (done) return;
    done = true;
    if (chunked && ok) ok = Send(c.fd, kLastChunk.data(), kLastChunk.size());
  };
  sink.is_writable = [&] { return ok; };
  while (ok && !done && (chunked || until_close || offset < res.content_length_)) {
    size_t remaining = chunked || until_close ? 0 : res.content_length_ - offset;
    // Part of the handler, run after it returned: inside the boundary too (a throw cuts
    // the answer).
    bool provided = false;
    boundary_.Run("a content provider",
                  [&] { provided = res.content_provider_(offset, remaining, sink); });
    if (!provided) ok = false;
  }
  res.content_provider_success_ = ok;
  return ok;
}

void EventServer::Release(Connection* c) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_.load()) {
      c->busy = false;
      --busy_;
      c->last_active = Clock::now();
      Arm(c);
      idle_.notify_all();
      return;
    }
  }
  Close(c);
}

void EventServer::Close(Connection* c) {
  {
    std::lock_guard lock(mu_);
    connections_.erase(c);
    if (c->busy) {
      --busy_;
      idle_.notify_all();
    }
  }
  close(c->fd);
  delete c;
}

bool EventServer::Late(const Connection& c, Clock::time_point now) const {
  using std::chrono::seconds;
  if (!c.parser.started() && c.in.empty())
    return now - c.last_active > seconds(tuning_.keep_alive_seconds);
  if (!c.parser.head_done()) return now - c.head_since > seconds(tuning_.head_timeout_seconds);
  const ParsedRequest& r = c.parser.request();
  size_t size = r.chunked ? r.body.size() : r.content_length;
  auto allowed = seconds(tuning_.body_timeout_seconds) +
                 std::chrono::milliseconds(size * 1000 / tuning_.body_min_bytes_per_second);
  return now - c.body_since > allowed;
}

// A request that missed its deadline gets a 408 (in the route's shape when the head is
// in) and the connection is closed; an idle one is just closed.
void EventServer::TimeOut(Connection* c) {
  if (!c->parser.started() && c->in.empty()) return Close(c);
  const bool head_in = c->parser.head_done();
  httplib::Request req = head_in ? TakeRequest(*c) : httplib::Request();
  std::string message = head_in ? "the request body did not arrive in time"
                                : "the request head did not arrive in time";
  httplib::Response res;
  res.status = 408;
  if (render_error_) render_error_(req, 408, message, res);
  CompleteAnswer(res, message);
  if (metrics_ != nullptr) metrics_->Inc(Counter::kRequestsTimedOut);
  AnswerAndClose(c, res);
}

void EventServer::Sweep() {
  Clock::time_point now = Clock::now();
  std::vector<Connection*> late;
  {
    std::lock_guard lock(mu_);
    for (Connection* c : connections_) {
      if (!c->busy && Late(*c, now)) late.push_back(c);
    }
  }
  for (Connection* c : late) TimeOut(c);
  if (accept_paused_) {
    accept_paused_ = false;
    epoll_event ev{.events = EPOLLIN, .data = {.ptr = &listen_fd_}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
  }
}

}  // namespace tollgate
