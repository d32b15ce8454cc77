#include "admin/user_api.h"

#include "admin/settings_json.h"
#include "admin/side_server.h"
#include "budget/alerts.h"

namespace tollgate {
namespace {

using nlohmann::json;

json TotalsJson(const UsageTotals& t) {
  json j = {{"requests", t.requests},
            {"input_tokens", t.input_tokens},
            {"output_tokens", t.output_tokens},
            {"cache_read_tokens", t.cache_read_tokens},
            {"cache_write_tokens", t.cache_write_tokens},
            {"reasoning_tokens", t.reasoning_tokens}};
  PutMoney(j, "cost", t.cost);
  return j;
}

// The signed-in user and their budget; nullopt with the answer already written when
// the key is bad, the caller has no budget (the admin token) or the budget is hidden.
struct Me {
  User user;
  UserBudget budget;
  std::string actor;
};

std::optional<Me> SignedInUser(const BudgetApiDependencies& deps, const httplib::Request& req,
                               httplib::Response& res) {
  auto caller = Authenticate(deps, req, res);
  if (!caller) return std::nullopt;
  if (!caller->user) {
    SendSideError(res, 403, "no_budget",
                  "the admin token has no budget of its own; use /api/v1/budget/admin/...");
    return std::nullopt;
  }
  auto budget = deps.settings.Get(caller->user->id);
  if (!budget.ok()) {
    SendStatusError(res, budget.status());
    return std::nullopt;
  }
  if (!budget->settings.budget_visible) {
    SendSideError(res, 403, "budget_hidden",
                  "your administrator has hidden this budget; it is still enforced");
    return std::nullopt;
  }
  return Me{*caller->user, *budget, caller->actor};
}

// [from, to) from the query, defaulting to the current window.
Result<std::pair<Timestamp, Timestamp>> Range(const httplib::Request& req, const Window& w) {
  auto from = TimeParam(req, "from");
  if (!from.ok()) return from.status();
  auto to = TimeParam(req, "to");
  if (!to.ok()) return to.status();
  Timestamp f = from->value_or(w.start),
            t = to->value_or(to->has_value() || from->has_value() ? Timestamp::max() : w.end);
  if (t <= f) return Status::Invalid("to: must be after from");
  return std::pair{f, t};
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
  j["percent"] = static_cast<double>(SpendBasisPoints(state.spend, s.limit)) / 100.0;
  j["alert_level"] = AlertLevelName(LevelOf(state.spend, s.limit, s.yellow, s.orange, s.red));
  j["thresholds"] = {{"yellow", s.yellow}, {"orange", s.orange}, {"red", s.red}};
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
  j["can_reset"] = s.can_reset;
  j["can_modify_limit"] = s.can_modify_limit;
  return j;
}

json HistoryJson(const LedgerRow& row) {
  const UsageRecord& r = row.record;
  json j = {{"id", row.id},
            {"request_id", r.request_id},
            {"user_id", r.user_id},
            {"time", FormatRfc3339(r.started_at)},
            {"provider", r.provider},
            {"model", r.model},
            {"price_id", r.price_id},
            {"input_tokens", r.usage.input_tokens},
            {"output_tokens", r.usage.output_tokens},
            {"cache_read_tokens", r.usage.cache_read_tokens},
            {"cache_write_tokens", r.usage.cache_write_5m_tokens + r.usage.cache_write_1h_tokens},
            {"reasoning_tokens", r.usage.reasoning_tokens},
            {"status", r.status},
            {"streamed", r.streamed},
            {"estimated", r.estimated},
            {"latency_ms", r.latency_ms}};
  PutMoney(j, "cost", r.cost);
  return j;
}

json BreakdownJson(const std::vector<UsageGroup>& groups, Timestamp from, Timestamp to) {
  json rows = json::array();
  UsageTotals total;
  for (const UsageGroup& g : groups) {
    json row = TotalsJson(g.totals);
    row["provider"] = g.provider;
    row["model"] = g.model;
    rows.push_back(std::move(row));
    total.Add(g.totals);
  }
  return {{"from", FormatRfc3339(from)},
          {"to", to == Timestamp::max() ? json(nullptr) : json(FormatRfc3339(to))},
          {"by_model", rows},
          {"total", TotalsJson(total)}};
}

void RegisterUserApi(EventServer& server, const BudgetApiDependencies& deps) {
  server.Get("/api/v1/budget/status", [&deps](const httplib::Request& req, httplib::Response& res) {
    auto me = SignedInUser(deps, req, res);
    if (!me) return;
    auto state = deps.spend_state(me->user.id, me->budget.window);
    if (!state.ok()) return SendStatusError(res, state.status());
    SendJson(res, StatusJson(me->user.id, me->budget.settings, *state, deps.clock.Now()));
  });

  server.Get("/api/v1/budget/settings",
             [&deps](const httplib::Request& req, httplib::Response& res) {
               auto me = SignedInUser(deps, req, res);
               if (!me) return;
               json j = SettingsToJson(me->budget.settings);
               j.update(SelfEditable(me->budget.settings));
               SendJson(res, j);
             });

  server.Put("/api/v1/budget/settings",
             [&deps](const httplib::Request& req, httplib::Response& res) {
               auto me = SignedInUser(deps, req, res);
               if (!me) return;
               auto change = ReadJsonObject(req, res);
               if (!change) return;
               // Read fresh from the directory: the cached copy may be a second old.
               auto current = deps.directory.GetSettings(me->user.id);
               if (!current.ok()) return SendStatusError(res, current.status());
               BudgetSettings s = *current;
               if (Status st = ApplySettingsChange(*change, Editor::kSelf, &s); !st.ok())
                 return SendStatusError(res, st);
               auto updated = deps.directory.PutSettings(s, me->actor);
               if (!updated.ok()) return SendStatusError(res, updated.status());
               deps.settings.Invalidate(me->user.id);
               json j = SettingsToJson(*updated);
               j.update(SelfEditable(*updated));
               SendJson(res, j);
             });

  server.Post("/api/v1/budget/reset", [&deps](const httplib::Request& req, httplib::Response& res) {
    auto me = SignedInUser(deps, req, res);
    if (!me) return;
    if (!me->budget.settings.can_reset) {
      return SendSideError(res, 403, "reset_not_allowed",
                           "your administrator has not allowed you to reset your budget");
    }
    std::string reason;
    if (!req.body.empty()) {
      auto body = ReadJsonObject(req, res);
      if (!body) return;
      if (body->contains("reason")) {
        const json& r = (*body)["reason"];
        if (!r.is_string() || !IsCleanText(r.get<std::string>(), 500))
          return SendStatusError(res, Status::Invalid("reason: must be text of at most 500 bytes"));
        reason = r.get<std::string>();
      }
    }
    auto state = deps.spend_state(me->user.id, me->budget.window);
    if (!state.ok()) return SendStatusError(res, state.status());
    auto record =
        deps.directory.ResetWindow(me->user.id, me->actor, reason, state->spend, deps.clock.Now());
    if (!record.ok()) return SendStatusError(res, record.status());
    deps.settings.Invalidate(me->user.id);
    json j = {{"reset_at", FormatRfc3339(record->reset_at)}, {"reason", reason}};
    PutMoney(j, "spend_before", record->spend_before);
    SendJson(res, j);
  });

  if (!deps.usage) return;

  server.Get("/api/v1/budget/usage/breakdown",
             [&deps](const httplib::Request& req, httplib::Response& res) {
               auto me = SignedInUser(deps, req, res);
               if (!me) return;
               auto range = Range(req, me->budget.window);
               if (!range.ok()) return SendStatusError(res, range.status());
               auto groups = deps.usage->Breakdown({me->user.id, range->first, range->second});
               if (!groups.ok()) return SendStatusError(res, groups.status());
               SendJson(res, BreakdownJson(*groups, range->first, range->second));
             });

  server.Get("/api/v1/budget/usage/history", [&deps](const httplib::Request& req,
                                                     httplib::Response& res) {
    auto me = SignedInUser(deps, req, res);
    if (!me) return;
    auto limit = IntParam(req, "limit", 50, 1, 500);
    if (!limit.ok()) return SendStatusError(res, limit.status());
    auto before = IntParam(req, "before", 0, 0, INT64_MAX);
    if (!before.ok()) return SendStatusError(res, before.status());
    auto rows = deps.usage->Page({me->user.id, Timestamp(), Timestamp::max()}, *before,
                                 static_cast<int>(*limit), true);
    if (!rows.ok()) return SendStatusError(res, rows.status());
    json items = json::array();
    for (const LedgerRow& r : *rows) items.push_back(HistoryJson(r));
    json next = rows->size() == static_cast<size_t>(*limit) ? json(rows->back().id) : json(nullptr);
    SendJson(res, {{"items", items}, {"next_before", next}});
  });
}

}  // namespace tollgate
