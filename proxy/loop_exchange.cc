#include "proxy/loop_exchange.h"

#include <sys/epoll.h>

#include <chrono>

namespace tollgate {

class LoopExchanges::Exchange final : public EventLoop::Watcher {
 public:
  Exchange(LoopExchanges* owner, EventLoop& loop, UpstreamPool& pool,
           std::unique_ptr<HttpConnection> connection, std::string bytes, std::string method,
           Done done)
      : owner_(owner),
        loop_(loop),
        pool_(pool),
        connection_(std::move(connection)),
        bytes_(std::move(bytes)),
        unsent_(bytes_),
        method_(std::move(method)),
        done_(std::move(done)) {}

  void Begin() {
    Touch();
    Step();
  }

  void OnEvents(uint32_t) override {
    if (finished_) return;  // an event of the batch that finished it
    Touch();
    Step();
  }

  bool Silent(std::chrono::steady_clock::time_point now, int timeout_ms) const {
    return now - last_progress_ > std::chrono::milliseconds(timeout_ms);
  }

  void Fail(ClientError error) {
    answer_.error = error;
    answer_.detail = When();
    Finish();
  }

 private:
  enum class Phase { kWrite, kHead, kBody };

  void Touch() { last_progress_ = std::chrono::steady_clock::now(); }

  const char* When() const {
    switch (phase_) {
      case Phase::kWrite:
        return "while sending the request";
      case Phase::kHead:
        return "while waiting for the answer";
      case Phase::kBody:
        break;
    }
    return "while reading the answer";
  }

  void Step() {
    ClientError error = ClientError::kNone;
    HttpConnection::Progress p = HttpConnection::Progress::kDone;
    while (p == HttpConnection::Progress::kDone) {
      switch (phase_) {
        case Phase::kWrite:
          p = connection_->Write(&unsent_, &error);
          if (p == HttpConnection::Progress::kDone) phase_ = Phase::kHead;
          break;
        case Phase::kHead:
          p = connection_->ReadHeadAvailable(&answer_.head, method_, &error);
          if (p == HttpConnection::Progress::kDone) phase_ = Phase::kBody;
          break;
        case Phase::kBody:
          p = connection_->ReadAvailable(&answer_.body, &error);
          if (p == HttpConnection::Progress::kDone) return Finish();
          break;
      }
    }
    if (p == HttpConnection::Progress::kFailed) {
      answer_.retry = error == ClientError::kClosed && connection_->answer_bytes() == 0;
      return Fail(error);
    }
    uint32_t events = connection_->wants_write() ? EPOLLOUT : EPOLLIN;
    if (events != watching_) {
      loop_.Watch(connection_->fd(), events, this);
      watching_ = events;
    }
  }

  void Finish() {
    finished_ = true;
    if (watching_ != 0) loop_.Unwatch(connection_->fd());
    watching_ = 0;
    pool_.Release(std::move(connection_));  // kept only if the answer was read whole
    owner_->active_.erase(this);
    Done done = std::move(done_);
    done(std::move(answer_));
    loop_.Post([this] { delete this; });
  }

  LoopExchanges* const owner_;
  EventLoop& loop_;
  UpstreamPool& pool_;
  std::unique_ptr<HttpConnection> connection_;
  const std::string bytes_;
  std::string_view unsent_;
  const std::string method_;
  Done done_;
  LoopAnswer answer_;
  Phase phase_ = Phase::kWrite;
  uint32_t watching_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point last_progress_;
};

LoopExchanges::~LoopExchanges() {
  for (Exchange* x : active_) delete x;
}

void LoopExchanges::Start(EventLoop& loop, UpstreamPool& pool,
                          std::unique_ptr<HttpConnection> connection,
                          const UpstreamRequest& request, Done done) {
  if (!ticking_) {
    ticking_ = true;
    loop.EverySecond([this] { Tick(); });
  }
  auto* x = new Exchange(this, loop, pool, std::move(connection), pool.Format(request),
                         request.method, std::move(done));
  active_.insert(x);
  x->Begin();
}

void LoopExchanges::Tick() {
  auto now = std::chrono::steady_clock::now();
  std::vector<Exchange*> silent;
  for (Exchange* x : active_) {
    if (x->Silent(now, read_timeout_ms_)) silent.push_back(x);
  }
  for (Exchange* x : silent) x->Fail(ClientError::kTimeout);
}

}  // namespace tollgate
