// The side port: health, readiness, metrics, the budget REST API (user and admin)
// and the pages.
#pragma once

#include <functional>
#include <memory>

#include "config/config.h"
#include "net/event_server.h"
#include "net/metrics.h"

namespace tollgate {

struct BudgetApiDependencies;

struct SideDependencies {
  const Config& config;
  Metrics& metrics;
  std::function<Status()> check_postgres;  // readiness probes
  std::function<Status()> check_redis;
  const BudgetApiDependencies* budget_api = nullptr;  // the budget REST API, when given
};

// Builds the side-port server with every route registered.
std::unique_ptr<EventServer> BuildSideServer(const SideDependencies& deps);

// The one error shape on this port: {"error":{"code","message"}}.
void SendSideError(httplib::Response& res, int status, const std::string& code,
                   const std::string& message);

}  // namespace tollgate
