#include "net/stream_relay.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace tollgate {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Bytes waiting for a slow client before the upstream's reads pause.
constexpr size_t kMaxPending = 1 << 20;
// Read from one upstream per wake-up, so one fast stream cannot starve the others.
constexpr size_t kMaxReadPerWake = 256 * 1024;

}  // namespace

struct StreamRelay::Relay {
  std::unique_ptr<HttpConnection> upstream;
  ReleaseUpstream release;
  ResponseWriter::Detached client;
  std::unique_ptr<RelayedStream> stream;
  Tag upstream_tag{this, false};
  Tag client_tag{this, true};

  std::string pending;  // framed bytes for the client, from `sent` on
  size_t sent = 0;
  bool upstream_over = false;  // the upstream's answer ended (or failed, or was given up)
  bool client_ended = false;   // the last chunk is queued: the answer is whole
  bool client_gone = false;    // a write failed, or the client stalled
  bool draining = false;       // reading on for the usage after the client left
  bool completed = false;
  bool ended_before_added = false;  // Start read the upstream's answer to its end
  uint32_t upstream_events = 0;     // as registered in epoll
  uint32_t client_events = 0;
  SteadyClock::time_point upstream_active;
  SteadyClock::time_point client_active;
  SteadyClock::time_point drain_deadline = SteadyClock::time_point::max();

  bool waiting_for_client() const { return sent < pending.size(); }
};

StreamRelay::StreamRelay(RelayTimeouts timeouts, size_t done_threads, Boundary boundary)
    : timeouts_(timeouts),
      boundary_(boundary),
      done_pool_(std::make_unique<WorkerPool>(done_threads, boundary)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event wake{.events = EPOLLIN, .data = {.ptr = nullptr}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake);
  loop_ = std::thread([this] { Loop(); });
}

StreamRelay::~StreamRelay() {
  stopping_ = true;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // The loop also wakes by itself within a second.
  }
  loop_.join();
  std::vector<Relay*> left;
  {
    std::lock_guard lock(mu_);
    left.assign(relays_.begin(), relays_.end());
    left.insert(left.end(), incoming_.begin(), incoming_.end());
    relays_.clear();
    incoming_.clear();
  }
  for (Relay* r : left) {
    r->client_gone = true;
    r->upstream.reset();
    Complete(r);
  }
  done_pool_.reset();  // runs the Done() calls queued above
  for (Relay* r : completed_) delete r;
  close(epoll_fd_);
  close(wake_fd_);
}

void StreamRelay::Add(std::unique_ptr<HttpConnection> upstream, ReleaseUpstream release,
                      ResponseWriter::Detached client, std::unique_ptr<RelayedStream> stream) {
  auto* r = new Relay{.upstream = std::move(upstream),
                      .release = std::move(release),
                      .client = std::move(client),
                      .stream = std::move(stream)};
  r->upstream_tag.relay = r->client_tag.relay = r;
  r->pending = std::move(r->client.head);  // the answer's head, if not written yet
  r->upstream_active = r->client_active = SteadyClock::now();
  Start(r);
  {
    std::lock_guard lock(mu_);
    incoming_.push_back(r);
  }
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // Picked up by the loop's next wake-up within a second.
  }
}

void StreamRelay::Loop() {
  epoll_event events[256];
  SteadyClock::time_point last_sweep = SteadyClock::now();
  while (!stopping_.load()) {
    int n = epoll_wait(epoll_fd_, events, 256, 1000);
    for (int i = 0; i < n; ++i) {
      auto* tag = static_cast<Tag*>(events[i].data.ptr);
      if (tag == nullptr) {
        uint64_t count;
        if (read(wake_fd_, &count, sizeof(count)) < 0) {
          // Nothing to drain: another wake-up got it.
        }
        std::vector<Relay*> added;
        {
          std::lock_guard lock(mu_);
          added.swap(incoming_);
          relays_.insert(added.begin(), added.end());
        }
        for (Relay* r : added) Register(r);
        continue;
      }
      Relay* r = tag->relay;
      if (r->completed) continue;
      if (tag->client) {
        OnClient(r, events[i].events);
      } else {
        OnUpstream(r);
      }
    }
    if (SteadyClock::now() - last_sweep >= std::chrono::seconds(1)) {
      Sweep();
      last_sweep = SteadyClock::now();
    }
    for (Relay* r : completed_) delete r;
    completed_.clear();
  }
}

// On the thread that adds the stream, before the relay knows of it: the body bytes that
// came with the upstream's head (often its first event) go to the client at once, so a
// stream's first byte waits for no other thread. What the client does not take at once,
// and all failures, are the relay's to handle.
void StreamRelay::Start(Relay* r) {
  r->ended_before_added = ReadAndFrame(r) != HttpConnection::Progress::kWouldBlock;
  if (r->pending.empty()) return;
  ssize_t n = send(r->client.fd, r->pending.data(), r->pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n > 0) r->sent = static_cast<size_t>(n);
}

void StreamRelay::Register(Relay* r) {
  epoll_event none{.events = 0, .data = {.ptr = &r->upstream_tag}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, r->upstream->fd(), &none);
  epoll_event client{.events = 0, .data = {.ptr = &r->client_tag}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, r->client.fd, &client);
  if (r->ended_before_added) return EndUpstream(r);
  OnUpstream(r);  // whatever came since Start
}

// Reads what the upstream has, passes it through the stream and frames it for the client.
HttpConnection::Progress StreamRelay::ReadAndFrame(Relay* r) {
  std::string body;
  ClientError error = ClientError::kNone;
  HttpConnection::Progress progress = r->upstream->ReadAvailable(&body, &error, kMaxReadPerWake);
  if (!body.empty()) {
    r->upstream_active = SteadyClock::now();
    std::string out;
    if (!boundary_.Run("a stream's transform", [&] { out = r->stream->Transform(body); }))
      return HttpConnection::Progress::kFailed;  // read no further: the stream ends here
    if (!r->client_gone && !out.empty()) r->pending += ChunkFrame(out);
  }
  return progress;
}

void StreamRelay::OnUpstream(Relay* r) {
  if (ReadAndFrame(r) != HttpConnection::Progress::kWouldBlock) return EndUpstream(r);
  Flush(r);
}

void StreamRelay::EndUpstream(Relay* r) {
  r->upstream_over = true;
  bool complete = false;
  std::string tail;
  if (!boundary_.Run("a stream's end", [&] { tail = r->stream->Finish(&complete); })) {
    tail.clear();
    complete = false;
  }
  if (!r->client_gone) {
    if (!tail.empty()) r->pending += ChunkFrame(tail);
    if (complete) r->pending += kLastChunk;
    r->client_ended = complete;
  }
  Flush(r);
}

void StreamRelay::OnClient(Relay* r, uint32_t events) {
  if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
    ClientGone(r);
    if (r->upstream_over) return Complete(r);
    return Watch(r);
  }
  Flush(r);
}

void StreamRelay::Flush(Relay* r) {
  while (!r->client_gone && r->waiting_for_client()) {
    ssize_t n = send(r->client.fd, r->pending.data() + r->sent, r->pending.size() - r->sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      r->sent += static_cast<size_t>(n);
      r->client_active = SteadyClock::now();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      ClientGone(r);
    }
  }
  size_t held = r->pending.size() - r->sent;
  if (held > peak_buffered_.load()) peak_buffered_ = held;  // one thread writes it
  if (!r->waiting_for_client()) {
    r->pending.clear();
    r->sent = 0;
  } else if (r->sent > kMaxPending) {
    r->pending.erase(0, r->sent);
    r->sent = 0;
  }
  if (r->upstream_over && (r->client_gone || !r->waiting_for_client())) return Complete(r);
  Watch(r);
}

void StreamRelay::ClientGone(Relay* r) {
  if (r->client_gone) return;
  r->client_gone = true;
  r->pending.clear();
  r->sent = 0;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, r->client.fd, nullptr);  // a hung-up socket stays ready
  if (r->upstream_over || r->draining) return;
  bool drain = false;
  boundary_.Run("a stream's drain decision", [&] { drain = r->stream->MayDrain(); });
  if (drain) {
    r->draining = true;
    r->drain_deadline = SteadyClock::now() + std::chrono::milliseconds(timeouts_.drain_ms);
  } else {
    r->upstream_over = true;  // given up: the connection is not reused
    r->upstream.reset();
  }
}

// Level-triggered interest: the upstream while the client keeps up, the client while
// bytes wait for it.
void StreamRelay::Watch(Relay* r) {
  uint32_t up = 0;
  if (!r->upstream_over) {
    if (r->pending.size() - r->sent < kMaxPending) {
      up = r->upstream->wants_write() ? uint32_t{EPOLLOUT} : uint32_t{EPOLLIN};
    } else if (r->upstream_events != 0) {
      ++read_pauses_;
    }
  }
  if (r->upstream && up != r->upstream_events) {
    epoll_event ev{.events = up, .data = {.ptr = &r->upstream_tag}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, r->upstream->fd(), &ev);
    r->upstream_events = up;
  }
  uint32_t client = r->waiting_for_client() ? uint32_t{EPOLLOUT} : 0;
  if (!r->client_gone && client != r->client_events) {
    epoll_event ev{.events = client, .data = {.ptr = &r->client_tag}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, r->client.fd, &ev);
    r->client_events = client;
  }
}

void StreamRelay::Complete(Relay* r) {
  if (r->completed) return;
  r->completed = true;
  if (r->upstream) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, r->upstream->fd(), nullptr);
    r->release(std::move(r->upstream));  // kept only if its answer was read whole
  }
  if (!r->client_gone) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, r->client.fd, nullptr);
  {
    std::lock_guard lock(mu_);
    relays_.erase(r);
  }
  bool client_complete = r->client_ended && !r->client_gone;
  // Settling may block (Redis, the ledger): not on this thread.
  done_pool_->Submit([this, stream = std::shared_ptr<RelayedStream>(std::move(r->stream)),
                      finish = std::move(r->client.finish), client_complete] {
    boundary_.Run("a stream's settlement", [&] { stream->Done(client_complete); });
    finish(client_complete);
  });
  completed_.push_back(r);
}

void StreamRelay::Sweep() {
  SteadyClock::time_point now = SteadyClock::now();
  std::vector<Relay*> all;
  {
    std::lock_guard lock(mu_);
    all.assign(relays_.begin(), relays_.end());
  }
  for (Relay* r : all) {
    if (r->completed) continue;
    if (!r->client_gone && r->waiting_for_client() &&
        now - r->client_active > std::chrono::milliseconds(timeouts_.client_stall_ms)) {
      ClientGone(r);
      if (r->upstream_over) {
        Complete(r);
        continue;
      }
      Watch(r);  // its bytes were dropped: the upstream's reads, paused for it, go on
    }
    if (r->draining && now > r->drain_deadline) {
      r->upstream.reset();  // cut mid-answer: not reusable
      r->upstream_over = true;
      Complete(r);
      continue;
    }
    bool silent =
        !r->waiting_for_client() &&
        now - r->upstream_active > std::chrono::milliseconds(timeouts_.upstream_silence_ms);
    if (!r->upstream_over && silent) {
      EndUpstream(r);
    }
  }
}

}  // namespace tollgate
