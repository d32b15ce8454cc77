// Buffered upstream exchanges on an event loop: the request is written when the
// socket takes it and the answer read as it arrives, so the proxy's hot path asks
// its upstream without a thread waiting on the answer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "proxy/upstream_pool.h"

namespace tollgate {

struct LoopAnswer {
  ClientError error = ClientError::kNone;
  std::string detail;  // when it failed: "while waiting for the answer", ...
  ResponseHead head;
  std::string body;
  // The kept-alive connection was closed before any byte of the answer: the upstream
  // never read the request, which may go again on a new connection.
  bool retry = false;
};

class LoopExchanges {
 public:
  explicit LoopExchanges(int read_timeout_ms) : read_timeout_ms_(read_timeout_ms) {}
  // Exchanges cut off by a stopped loop are freed without their callbacks.
  ~LoopExchanges();
  LoopExchanges(const LoopExchanges&) = delete;
  LoopExchanges& operator=(const LoopExchanges&) = delete;

  using Done = std::function<void(LoopAnswer)>;
  // Loop thread only. Sends `request` on `connection` (kept alive, from `pool`) and
  // reads the whole answer; `done` runs on the loop, and the connection goes back to
  // the pool. An upstream silent for the read timeout fails it as kTimeout.
  void Start(EventLoop& loop, UpstreamPool& pool, std::unique_ptr<HttpConnection> connection,
             const UpstreamRequest& request, Done done);

 private:
  class Exchange;
  void Tick();

  const int read_timeout_ms_;
  std::unordered_set<Exchange*> active_;  // loop thread only
  bool ticking_ = false;
};

}  // namespace tollgate
