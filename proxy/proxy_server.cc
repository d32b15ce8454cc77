#include "proxy/proxy_server.h"

#include <nlohmann/json.hpp>

namespace tollgate {

std::unique_ptr<httplib::Server> BuildProxyServer(const ProxyDependencies& deps) {
  auto server = std::make_unique<httplib::Server>();
  TuneServer(*server, {.worker_threads = deps.config.worker_threads,
                       .max_body_bytes = deps.config.max_body_bytes,
                       .read_timeout_seconds = 60,
                       .keep_alive_seconds = 60});
  Metrics* metrics = &deps.metrics;
  // Until provider routes are registered, every path is unknown.
  server->set_error_handler([metrics](const httplib::Request&, httplib::Response& res) {
    metrics->Inc(Counter::kProxyRequests);
    if (res.body.empty()) {
      res.set_content(nlohmann::json{{"error", {{"message", "unknown path"}, {"type", "not_found_error"}}}}.dump(),
                      "application/json");
    }
  });
  return server;
}

}  // namespace tollgate
