// Keep-alive clients to one upstream, re-used across requests. httplib::Client holds
// one connection and is not safe for concurrent use, so each request borrows one.
#pragma once

#include <httplib.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tollgate {

struct UpstreamTimeouts {
  int connect_ms = 5000;
  int read_ms = 600000;
};

class UpstreamPool {
 public:
  UpstreamPool(std::string base_url, UpstreamTimeouts timeouts, size_t max_idle = 256)
      : base_url_(std::move(base_url)), timeouts_(timeouts), max_idle_(max_idle) {}

  std::unique_ptr<httplib::Client> Acquire();
  void Release(std::unique_ptr<httplib::Client> client);
  const std::string& base_url() const { return base_url_; }

 private:
  const std::string base_url_;
  const UpstreamTimeouts timeouts_;
  const size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
};

}  // namespace tollgate
