#include "admin/user_api.h"

#include <nlohmann/json.hpp>

#include "admin/side_server.h"
#include "budget/alerts.h"

namespace tollgate {
namespace {

using nlohmann::json;

void PutMoney(json& j, const std::string& name, Money m) {
  j[name + "_usd"] = m.ToUsdString();
  j[name + "_nanos"] = m.nanos();
}

}  // namespace

json StatusJson(int64_t user_id, const BudgetSettings& s, const SpendState& state, Timestamp now) {
  json j;
  j["user_id"] = user_id;
  PutMoney(j, "limit", s.limit);
  PutMoney(j, "spend", state.spend);
  PutMoney(j, "reserved", state.held);
  Money remaining = s.limit - state.spend - state.held;
  PutMoney(j, "remaining", remaining < Money() ? Money() : remaining);
  // Percent with two decimals, from integers (it is not money, so a JSON number).
  int64_t basis_points = s.limit > Money()
                             ? static_cast<int64_t>(static_cast<__int128>(state.spend.nanos()) *
                                                    10000 / s.limit.nanos())
                             : (state.spend > Money() ? 10000 : 0);
  j["percent"] = static_cast<double>(basis_points) / 100.0;
  j["alert_level"] = AlertLevelName(LevelOf(state.spend, s.limit, s.yellow, s.orange, s.red));
  j["period"] = PeriodName(s.period);
  if (s.period == Period::kCustom) j["custom_period_days"] = s.custom_period_days;
  j["timezone"] = s.timezone;
  j["window_start"] = FormatRfc3339(state.window.start);
  j["next_reset"] = FormatRfc3339(state.window.end);
  j["enforcement"] = EnforcementName(s.enforcement);
  // Projected spend at window end at the rate so far: spend x window / elapsed.
  auto elapsed = (now - state.window.start).count();
  auto length = (state.window.end - state.window.start).count();
  Money projected = state.spend;
  if (elapsed > 0 && length > elapsed) {
    projected = Money::FromNanos(
        static_cast<int64_t>(static_cast<__int128>(state.spend.nanos()) * length / elapsed));
  }
  PutMoney(j, "projected_spend", projected);
  return j;
}

void RegisterUserApi(httplib::Server& server, const UserApiDependencies& deps) {
  server.Get("/api/v1/budget/status", [&deps](const httplib::Request& req, httplib::Response& res) {
    std::string key =
        PresentedKey(req.get_header_value("Authorization"), req.get_header_value("x-api-key"));
    if (key.empty()) {
      return SendSideError(res, 401, "unauthenticated",
                           "send your tollgate key as Authorization: Bearer tg-...");
    }
    auto identity = deps.authenticator.Authenticate(key);
    if (!identity.ok()) {
      if (identity.status().code() == Status::Code::kUnavailable)
        return SendSideError(res, 503, "unavailable", "the database is unreachable; try again");
      return SendSideError(res, 401, "unauthenticated", identity.status().message());
    }
    int64_t user = identity->user.id;
    auto budget = deps.settings.Get(user);
    if (!budget.ok()) return SendSideError(res, 503, "unavailable", budget.status().message());
    if (!budget->settings.budget_visible) {
      return SendSideError(res, 403, "budget_hidden",
                           "your administrator has hidden this budget; it is still enforced");
    }
    auto state = deps.spend_state(user);
    if (!state.ok()) return SendSideError(res, 503, "unavailable", state.status().message());
    res.set_content(StatusJson(user, budget->settings, *state, deps.clock.Now()).dump(),
                    "application/json");
  });
}

}  // namespace tollgate
