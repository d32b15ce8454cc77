#include "proxy/upstream_pool.h"

namespace tollgate {

UpstreamPool::UpstreamPool(const std::string& base_url, ClientTimeouts timeouts,
                           std::string ca_file, size_t max_idle)
    : base_url_(base_url),
      address_(ParseBaseUrl(base_url)),
      opens_without_waiting_(address_ && HttpConnection::OpensWithoutWaiting(*address_)),
      timeouts_(timeouts),
      tls_(ca_file),
      max_idle_(max_idle) {}

std::unique_ptr<HttpConnection> UpstreamPool::TakeIdle() {
  auto now = std::chrono::steady_clock::now();
  for (;;) {
    Idle idle;
    {
      std::lock_guard lock(mu_);
      if (idle_.empty()) return nullptr;
      idle = std::move(idle_.back());
      idle_.pop_back();
    }
    if (now - idle.since < kMaxIdleAge && !idle.connection->IdleConnectionLost())
      return std::move(idle.connection);
  }
}

std::unique_ptr<HttpConnection> UpstreamPool::OpenWithoutWaiting() {
  if (!opens_without_waiting_) return nullptr;  // every https or named upstream's miss
  ClientError error = ClientError::kNone;
  std::string detail;
  return HttpConnection::OpenWithoutWaiting(*address_, timeouts_, &error, &detail);
}

std::string UpstreamPool::CannotConnect() const {
  return "cannot connect to " + (address_ ? address_->authority : base_url_);
}

std::string UpstreamPool::Format(const UpstreamRequest& request) const {
  return FormatRequest(request.method, request.target, address_ ? address_->authority : "",
                       request.headers, request.body);
}

std::unique_ptr<HttpConnection> UpstreamPool::Borrow(ClientError* error, std::string* detail,
                                                     bool* reused) {
  *reused = true;
  if (auto idle = TakeIdle()) return idle;
  *reused = false;
  if (!address_) {
    *error = ClientError::kConnect;
    *detail = "upstream URL must be scheme://host[:port]: " + base_url_;
    return nullptr;
  }
  return HttpConnection::Open(*address_, tls_.get(), timeouts_, error, detail);
}

std::unique_ptr<HttpConnection> UpstreamPool::Begin(const UpstreamRequest& request,
                                                    ResponseHead* head, ClientError* error,
                                                    std::string* detail) {
  std::string bytes;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = false;
    auto connection = Borrow(error, detail, &reused);
    if (!connection) return nullptr;
    if (bytes.empty()) bytes = Format(request);
    *detail = "while sending the request";
    *error = connection->Send(bytes);
    if (*error == ClientError::kNone) {
      *detail = "while waiting for the answer";
      *error = connection->ReadHead(head, request.method);
    }
    if (*error == ClientError::kNone) {
      detail->clear();
      return connection;
    }
    // The upstream closed a kept-alive connection as we sent: nothing of ours was read,
    // so the request goes again on a new connection.
    if (!(reused && *error == ClientError::kClosed && connection->answer_bytes() == 0)) break;
  }
  return nullptr;
}

void UpstreamPool::Release(std::unique_ptr<HttpConnection> connection) {
  if (!connection || !connection->reusable()) return;
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_)
    idle_.push_back({std::move(connection), std::chrono::steady_clock::now()});
}

}  // namespace tollgate
