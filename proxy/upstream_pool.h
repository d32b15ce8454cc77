// Keep-alive connections to one upstream, re-used across requests: each request
// borrows one (or opens a new one) and gives it back once its answer is read whole.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/http_client.h"

namespace tollgate {

struct UpstreamRequest {
  std::string method;
  std::string target;  // path and query
  HeaderList headers;
  std::string body;
};

class UpstreamPool {
 public:
  // Servers close idle keep-alive connections after a while (nginx: 75 s); one idle
  // longer than this is dropped rather than risked.
  static constexpr auto kMaxIdleAge = std::chrono::seconds(30);
  // Idle connections kept per upstream. A stream that finds one is begun on the event
  // loop with no connect and no TLS handshake (round trips to the provider); one that
  // does not waits for a worker to open one (unless OpenWithoutWaiting can). 2,000
  // concurrent streams at a steady rate had ~500 upstream connections in use at once in
  // the benchmark, and with 256 kept, half of their starts opened a new one (added TTFB
  // p99 at 2,000 streams 4.28, 1.99, 2.55, 0.08 ms with 256; 1.36, 1.28, 1.36, 1.48 with
  // 1,024, alternated).
  static constexpr size_t kDefaultMaxIdle = 1024;

  // `ca_file` replaces the system's trust store (tests); `base_url` was validated by
  // the config (an unparsable one fails every request with kConnect).
  UpstreamPool(const std::string& base_url, ClientTimeouts timeouts, std::string ca_file = "",
               size_t max_idle = kDefaultMaxIdle);

  // Sends the request and reads the answer's head. The connection comes back for its
  // body (read it, then Release it); null on failure, with `error` and `detail` (what
  // failed, or when: "cannot connect to …", "while waiting for the answer") set.
  // A kept-alive connection that the upstream closed before answering is replaced
  // once by a new one.
  std::unique_ptr<HttpConnection> Begin(const UpstreamRequest& request, ResponseHead* head,
                                        ClientError* error, std::string* detail);
  // Keeps the connection for the next request if its answer was read whole.
  void Release(std::unique_ptr<HttpConnection> connection);

  // For an event loop, which may not wait for a connect: a kept-alive connection that
  // is still open, or null.
  std::unique_ptr<HttpConnection> TakeIdle();
  // For an event loop too: a new connection whose connect is begun and not waited for
  // (HttpConnection::FinishConnect), when the upstream allows that (plain HTTP to an IP
  // address: Ollama on its host, tollgate-sim); else, or when it failed at once, null.
  std::unique_ptr<HttpConnection> OpenWithoutWaiting();
  // "cannot connect to <host:port>", for a connect that failed.
  std::string CannotConnect() const;
  int connect_timeout_ms() const { return timeouts_.connect_ms; }
  // The request's bytes as they go on the wire to this upstream.
  std::string Format(const UpstreamRequest& request) const;

 private:
  std::unique_ptr<HttpConnection> Borrow(ClientError* error, std::string* detail, bool* reused);

  const std::string base_url_;
  const std::optional<UpstreamAddress> address_;
  const bool opens_without_waiting_;
  const ClientTimeouts timeouts_;
  TlsContext tls_;
  const size_t max_idle_;
  std::mutex mu_;
  struct Idle {
    std::unique_ptr<HttpConnection> connection;
    std::chrono::steady_clock::time_point since;
  };
  std::vector<Idle> idle_;
};

}  // namespace tollgate
