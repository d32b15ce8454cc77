#include "proxy/upstream_pool.h"

namespace tollgate {

std::unique_ptr<httplib::Client> UpstreamPool::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<httplib::Client>(base_url_);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(timeouts_.connect_ms / 1000, (timeouts_.connect_ms % 1000) * 1000);
  c->set_read_timeout(timeouts_.read_ms / 1000, (timeouts_.read_ms % 1000) * 1000);
  c->set_write_timeout(60, 0);
  c->set_decompress(false);  // bytes are relayed as they come
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  c->enable_server_certificate_verification(true);  // real providers: verify TLS
#endif
  return c;
}

void UpstreamPool::Release(std::unique_ptr<httplib::Client> client) {
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(client));
}

}  // namespace tollgate
