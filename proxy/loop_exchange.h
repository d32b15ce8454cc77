// Buffered upstream exchanges on an event loop: the request is written when the
// socket takes it and the answer read as it arrives, so the proxy's hot path asks
// its upstream without a thread waiting on the answer. Between exchanges the loop
// keeps its upstream connections watched, so taking one again costs no system call
// and an upstream closing one while it idles is seen as it happens.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "proxy/upstream_pool.h"

namespace tollgate {

struct LoopAnswer {
  ClientError error = ClientError::kNone;
  std::string detail;  // when it failed: "while waiting for the answer", ...
  ResponseHead head;
  std::string body;
  // A kept-alive connection (not one opened for this request) was closed before any
  // byte of the answer: the upstream closed it while it sat idle and never read the
  // request, which may go again on a new connection.
  bool retry = false;
  // A stream's (Start with `stream`), once a 2xx head is in: the connection, its body
  // unread (what came with the head is buffered in it), for a relay. `body` stays empty.
  std::unique_ptr<HttpConnection> connection;
};

class LoopExchanges {
 public:
  // An answer read whole (not a stream's) larger than `max_answer_bytes` fails the
  // exchange with kTooLarge.
  LoopExchanges(int read_timeout_ms, size_t max_answer_bytes, size_t max_idle_per_upstream = 256)
      : read_timeout_ms_(read_timeout_ms),
        max_answer_bytes_(max_answer_bytes),
        max_idle_(max_idle_per_upstream) {}
  // Exchanges cut off by a stopped loop are freed without their callbacks.
  ~LoopExchanges();
  LoopExchanges(const LoopExchanges&) = delete;
  LoopExchanges& operator=(const LoopExchanges&) = delete;

  using Done = std::function<void(LoopAnswer)>;
  // Loop thread only, and always the same loop. Sends `request` to `pool`'s upstream
  // on a kept-alive connection (the loop's own, else one of the pool's, else a new one
  // when the upstream is plain HTTP to an IP address) and reads the whole answer; `done`
  // runs on the loop. False, and nothing started, when none of those is to be had:
  // opening a connection that may wait (a name to resolve, a TLS handshake) is for a
  // worker. An upstream silent for the read timeout (the connect timeout while
  // connecting) fails the exchange as kTimeout. With `stream`, a 2xx answer is done at
  // its head: its connection is handed out in the answer (any other answer is read
  // whole, as an error body is).
  bool Start(EventLoop& loop, UpstreamPool& pool, const UpstreamRequest& request, Done done,
             bool stream = false);

 private:
  class Link;
  Link* TakeParked(UpstreamPool& pool);
  void Park(Link* link);
  // Forgets the link (its deletion is posted); its connection is closed, or given back
  // to its pool.
  void Drop(Link* link, bool to_pool = false);
  // Forgets the link and hands out its connection.
  std::unique_ptr<HttpConnection> Forget(Link* link);
  void Tick();

  const int read_timeout_ms_;
  const size_t max_answer_bytes_;
  const size_t max_idle_;
  EventLoop* loop_ = nullptr;
  // Loop thread only. A link is in exactly one of: active_ (an exchange on it),
  // parked_ (idle, watched), or neither (dropped, its deletion posted).
  std::unordered_set<Link*> active_;
  std::unordered_map<const UpstreamPool*, std::vector<Link*>> parked_;
};

}  // namespace tollgate
