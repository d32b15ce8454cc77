#include "proxy/loop_exchange.h"

#include <sys/epoll.h>

#include <algorithm>

namespace tollgate {

// One upstream connection owned by the loop: watched for as long as it lives, busy
// with one exchange at a time, parked in between.
class LoopExchanges::Link final : public EventLoop::Watcher {
 public:
  // `reused`: the connection was kept alive from an earlier exchange (not newly opened).
  Link(LoopExchanges* owner, EventLoop& loop, UpstreamPool& pool,
       std::unique_ptr<HttpConnection> connection, bool reused)
      : owner_(owner),
        loop_(loop),
        pool_(pool),
        connection_(std::move(connection)),
        reused_(reused) {}

  UpstreamPool& pool() const { return pool_; }
  std::unique_ptr<HttpConnection> TakeConnection() { return std::move(connection_); }

  void Begin(std::string bytes, std::string method, Done done, bool stream) {
    bytes_ = std::move(bytes);
    unsent_ = bytes_;
    method_ = std::move(method);
    done_ = std::move(done);
    stream_ = stream;
    answer_ = LoopAnswer{};
    phase_ = connection_->connecting() ? Phase::kConnect : Phase::kWrite;
    busy_ = true;
    Touch();
    Step();
  }

  void OnEvents(uint32_t) override {
    if (dropped_) return;  // an event of the batch that dropped it
    // Idle, the upstream has nothing to say: it closed the connection (or broke it).
    if (!busy_) return owner_->Drop(this);
    Touch();
    Step();
  }

  // Silent past the read timeout, or past the connect timeout while connecting.
  bool Silent(std::chrono::steady_clock::time_point now, int read_timeout_ms) const {
    int timeout_ms = phase_ == Phase::kConnect ? pool_.connect_timeout_ms() : read_timeout_ms;
    return now - last_progress_ > std::chrono::milliseconds(timeout_ms);
  }

  // `detail` says what failed; by default, when ("while waiting for the answer", ...).
  void Fail(ClientError error, std::string detail = "") {
    answer_.error = error;
    answer_.detail = detail.empty() ? When() : std::move(detail);
    Finish();
  }

  // Watched for input only, as an idle connection is.
  void WatchInput() { WatchFor(EPOLLIN); }
  void Unwatch() {
    if (watching_ != 0) loop_.Unwatch(connection_->fd());
    watching_ = 0;
  }
  void MarkDropped() { dropped_ = true; }

  std::chrono::steady_clock::time_point last_progress() const { return last_progress_; }

 private:
  enum class Phase { kConnect, kWrite, kHead, kBody };

  void Touch() { last_progress_ = std::chrono::steady_clock::now(); }

  const char* When() const {
    switch (phase_) {
      case Phase::kConnect:
        return "while connecting";
      case Phase::kWrite:
        return "while sending the request";
      case Phase::kHead:
        return "while waiting for the answer";
      case Phase::kBody:
        break;
    }
    return "while reading the answer";
  }

  void WatchFor(uint32_t events) {
    if (events == watching_) return;
    loop_.Watch(connection_->fd(), events, this);
    watching_ = events;
  }

  void Step() {
    ClientError error = ClientError::kNone;
    HttpConnection::Progress p = HttpConnection::Progress::kDone;
    while (p == HttpConnection::Progress::kDone) {
      switch (phase_) {
        case Phase::kConnect:
          p = connection_->FinishConnect(&error, &reason_);
          if (p == HttpConnection::Progress::kDone) phase_ = Phase::kWrite;
          break;
        case Phase::kWrite:
          p = connection_->Write(&unsent_, &error);
          if (p == HttpConnection::Progress::kDone) phase_ = Phase::kHead;
          break;
        case Phase::kHead:
          p = connection_->ReadHeadAvailable(&answer_.head, method_, &error);
          if (p != HttpConnection::Progress::kDone) break;
          if (stream_ && answer_.head.status >= 200 && answer_.head.status < 300) return HandOut();
          phase_ = Phase::kBody;
          break;
        case Phase::kBody:
          // Read past the bound by at most one read, then refused.
          p = connection_->ReadAvailable(&answer_.body, &error, owner_->max_answer_bytes_ + 1);
          if (answer_.body.size() > owner_->max_answer_bytes_) {
            answer_.body.clear();
            return Fail(ClientError::kTooLarge);
          }
          if (p == HttpConnection::Progress::kDone) return Finish();
          break;
      }
    }
    if (p == HttpConnection::Progress::kFailed && phase_ == Phase::kConnect)
      return Fail(error, pool_.CannotConnect() + ": " + reason_);
    if (p == HttpConnection::Progress::kFailed) {
      // Only a kept-alive connection may have been closed by the upstream while it sat
      // idle, before it read the request; a new one that closes may have run it.
      answer_.retry = reused_ && error == ClientError::kClosed && connection_->answer_bytes() == 0;
      return Fail(error);
    }
    WatchFor(connection_->wants_write() ? EPOLLOUT : EPOLLIN);
  }

  // The answer is whole (or failed): the link is parked or dropped before `done` runs,
  // so `done` may start the next exchange on it.
  void Finish() {
    busy_ = false;
    Done done = std::move(done_);
    LoopAnswer answer = std::move(answer_);
    bytes_.clear();
    unsent_ = {};
    owner_->active_.erase(this);
    reused_ = true;
    if (connection_->reusable())
      owner_->Park(this);
    else
      owner_->Drop(this);
    done(std::move(answer));
  }

  // A stream's head is in: the connection goes out with the answer, for a relay, and
  // the link is forgotten.
  void HandOut() {
    busy_ = false;
    Done done = std::move(done_);
    LoopAnswer answer = std::move(answer_);
    answer.connection = owner_->Forget(this);
    done(std::move(answer));
  }

  LoopExchanges* const owner_;
  EventLoop& loop_;
  UpstreamPool& pool_;
  std::unique_ptr<HttpConnection> connection_;
  std::string bytes_;
  std::string_view unsent_;
  std::string method_;
  std::string reason_;  // why the connect failed
  Done done_;
  LoopAnswer answer_;
  Phase phase_ = Phase::kWrite;
  uint32_t watching_ = 0;
  bool busy_ = false;
  bool stream_ = false;
  bool dropped_ = false;
  bool reused_;
  std::chrono::steady_clock::time_point last_progress_;
};

LoopExchanges::~LoopExchanges() {
  for (Link* link : active_) delete link;
  for (auto& [pool, links] : parked_) {
    for (Link* link : links) delete link;
  }
}

bool LoopExchanges::Start(EventLoop& loop, UpstreamPool& pool, const UpstreamRequest& request,
                          Done done, bool stream) {
  if (loop_ == nullptr) {
    loop_ = &loop;
    loop.EverySecond([this] { Tick(); });
  }
  Link* link = TakeParked(pool);
  if (link == nullptr) {
    auto connection = pool.TakeIdle();
    bool reused = connection != nullptr;
    if (!reused) connection = pool.OpenWithoutWaiting();
    if (!connection) return false;
    link = new Link(this, loop, pool, std::move(connection), reused);
  }
  active_.insert(link);
  link->Begin(pool.Format(request), request.method, std::move(done), stream);
  return true;
}

// The most recently used first. One idle past UpstreamPool::kMaxIdleAge was dropped by
// the tick (within a second of it).
LoopExchanges::Link* LoopExchanges::TakeParked(UpstreamPool& pool) {
  auto it = parked_.find(&pool);
  if (it == parked_.end() || it->second.empty()) return nullptr;
  Link* link = it->second.back();
  it->second.pop_back();
  return link;
}

// Keeps the link watched for the next exchange; beyond the loop's share its connection
// goes back to the pool, for the workers.
void LoopExchanges::Park(Link* link) {
  std::vector<Link*>& links = parked_[&link->pool()];
  if (links.size() >= max_idle_) return Drop(link, /*to_pool=*/true);
  link->WatchInput();
  links.push_back(link);
}

void LoopExchanges::Drop(Link* link, bool to_pool) {
  UpstreamPool& pool = link->pool();
  std::unique_ptr<HttpConnection> connection = Forget(link);
  if (to_pool) pool.Release(std::move(connection));
}

std::unique_ptr<HttpConnection> LoopExchanges::Forget(Link* link) {
  std::vector<Link*>& links = parked_[&link->pool()];
  links.erase(std::remove(links.begin(), links.end(), link), links.end());
  active_.erase(link);
  link->Unwatch();
  std::unique_ptr<HttpConnection> connection = link->TakeConnection();
  link->MarkDropped();
  loop_->Post([link] { delete link; });
  return connection;
}

void LoopExchanges::Tick() {
  auto now = std::chrono::steady_clock::now();
  std::vector<Link*> silent, stale;
  for (Link* link : active_) {
    if (link->Silent(now, read_timeout_ms_)) silent.push_back(link);
  }
  for (Link* link : silent) link->Fail(ClientError::kTimeout);
  for (auto& [pool, links] : parked_) {
    for (Link* link : links) {
      if (now - link->last_progress() >= UpstreamPool::kMaxIdleAge) stale.push_back(link);
    }
  }
  for (Link* link : stale) Drop(link);
}

}  // namespace tollgate
