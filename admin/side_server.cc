#include "admin/side_server.h"

#include <nlohmann/json.hpp>

#include "admin/admin_api.h"
#include "admin/pages.h"
#include "admin/user_api.h"
#include "config/text.h"

namespace tollgate {
namespace {

// Counters tell who is served and how much: for the metrics token (a scraper's, which
// can do nothing else) or an admin (the bootstrap token, an admin's key).
bool MayScrape(const SideDependencies& deps, const httplib::Request& req, httplib::Response& res) {
  std::string key =
      PresentedKey(req.get_header_value("Authorization"), req.get_header_value("x-api-key"));
  if (!deps.config.metrics_token.empty() && SameSecret(key, deps.config.metrics_token)) return true;
  if (deps.budget_api) return AuthenticateAdmin(*deps.budget_api, req, res).has_value();
  if (!deps.config.admin_token.empty() && SameSecret(key, deps.config.admin_token)) return true;
  SendSideError(res, 401, "unauthenticated",
                "send the metrics token (TOLLGATE_METRICS_TOKEN) or an admin's key as "
                "Authorization: Bearer ...");
  return false;
}

}  // namespace

void SendSideError(httplib::Response& res, int status, const std::string& code,
                   const std::string& message) {
  res.status = status;
  res.set_content(
      DumpJson(nlohmann::json{{"error", {{"code", code}, {"message", ValidUtf8(message)}}}}),
      "application/json");
}

std::unique_ptr<EventServer> BuildSideServer(const SideDependencies& deps) {
  auto server = std::make_unique<EventServer>(
      ServerTuning{.worker_threads = 32, .max_body_bytes = 1024 * 1024}, Boundary(&deps.metrics));

  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });

  server->Get("/readyz", [&deps](const httplib::Request&, httplib::Response& res) {
    Status pg = deps.check_postgres();
    Status redis = deps.check_redis();
    auto part = [](const Status& s) {
      return s.ok() ? nlohmann::json{{"ok", true}}
                    : nlohmann::json{{"ok", false}, {"error", s.message()}};
    };
    bool ready = pg.ok() && redis.ok();
    res.status = ready ? 200 : 503;
    res.set_content(DumpJson(nlohmann::json{{"status", ready ? "ready" : "not ready"},
                                            {"postgres", part(pg)},
                                            {"redis", part(redis)}}),
                    "application/json");
  });

  server->Get("/metrics", [&deps](const httplib::Request& req, httplib::Response& res) {
    if (!MayScrape(deps, req, res)) return;
    res.set_content(deps.metrics.RenderPrometheus(), "text/plain; version=0.0.4");
  });

  RegisterPages(*server);
  if (deps.budget_api) {
    RegisterUserApi(*server, *deps.budget_api);
    RegisterAdminApi(*server, *deps.budget_api);
  }

  server->set_error_renderer(
      [](const httplib::Request&, int status, const std::string& message, httplib::Response& res) {
        if (status == 404) return SendSideError(res, 404, "not_found", "no such endpoint");
        if (status >= 500)
          return SendSideError(res, status, "internal", "internal error; see the server log");
        SendSideError(res, status,
                      status == 413   ? "too_large"
                      : status == 414 ? "uri_too_long"
                                      : "bad_request",
                      message);
      });
  return server;
}

}  // namespace tollgate
