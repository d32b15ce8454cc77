// The proxy port. Provider routing and the gate are built on this server.
#pragma once

#include <memory>

#include "config/config.h"
#include "net/http_server.h"
#include "net/metrics.h"

namespace tollgate {

struct ProxyDependencies {
  const Config& config;
  Metrics& metrics;
};

std::unique_ptr<httplib::Server> BuildProxyServer(const ProxyDependencies& deps);

}  // namespace tollgate
