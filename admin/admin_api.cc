#include "admin/admin_api.h"

#include <algorithm>
#include <charconv>
#include <map>

#include "admin/settings_json.h"
#include "admin/side_server.h"
#include "admin/user_api.h"
#include "budget/alerts.h"
#include "budget/price_overrides.h"

namespace tollgate {
namespace {

using nlohmann::json;
using Handler = std::function<void(const httplib::Request&, httplib::Response&, const Caller&)>;

constexpr const char* kPrefix = "/api/v1/budget/admin";
constexpr int kExportPage = 2000;  // ledger rows per export chunk

// Every admin route goes through here: no handler runs for a caller who is not an
// admin, so a user's key never reads or writes anyone's data on these paths.
EventServer::Handler AdminOnly(const BudgetApiDependencies& deps, Handler h) {
  return [&deps, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    if (auto caller = AuthenticateAdmin(deps, req, res)) h(req, res, *caller);
  };
}

json UserJson(const User& u) {
  return {{"id", u.id},
          {"name", u.name},
          {"email", u.email},
          {"external_id", u.external_id},
          {"role", RoleName(u.role)},
          {"disabled", u.disabled},
          {"created_at", FormatRfc3339(u.created_at)}};
}

json OptionalTime(const std::optional<Timestamp>& t) {
  return t ? json(FormatRfc3339(*t)) : json(nullptr);
}

json KeyJson(const ApiKey& k, Timestamp now) {
  return {{"id", k.id},
          {"user_id", k.user_id},
          {"prefix", k.prefix},
          {"name", k.name},
          {"act_as_user", k.act_as_user},
          {"expires_at", OptionalTime(k.expires_at)},
          {"revoked_at", OptionalTime(k.revoked_at)},
          {"created_at", FormatRfc3339(k.created_at)},
          {"usable", k.UsableAt(now)}};
}

json ResetJson(const ResetRecord& r) {
  json j = {{"id", r.id},
            {"user_id", r.user_id},
            {"actor", r.actor},
            {"reset_at", FormatRfc3339(r.reset_at)},
            {"reason", r.reason}};
  PutMoney(j, "spend_before", r.spend_before);
  return j;
}

// The id a route's `*` stands for: /api/v1/budget/admin/reset/42, .../users/42/disable.
constexpr size_t kIdSegment = 5;

// The numeric id in a path such as /admin/reset/42.
Result<int64_t> PathId(const httplib::Request& req, const std::string& what) {
  std::string_view text = PathSegment(req.path, kIdSegment);
  int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id <= 0)
    return Status::Invalid(what + ": must be a positive integer id");
  return id;
}

Result<std::string> BodyText(const json& body, const std::string& field, size_t max_bytes,
                             bool required) {
  if (!body.contains(field) || body[field].is_null()) {
    if (required) return Status::Invalid(field + ": is required");
    return std::string();
  }
  if (!body[field].is_string() || !IsCleanText(body[field].get<std::string>(), max_bytes))
    return Status::Invalid(field + ": must be text of at most " + std::to_string(max_bytes) +
                           " bytes without control characters");
  std::string v = body[field].get<std::string>();
  if (required && v.find_first_not_of(' ') == std::string::npos)
    return Status::Invalid(field + ": must not be empty");
  return v;
}

// A user with their live status: the window now and the gate's spend and holds.
struct LiveUser {
  UserWithSettings us;
  SpendState state;
  AlertLevel level = AlertLevel::kGreen;
  int64_t basis_points = 0;
};

Result<std::vector<LiveUser>> LiveUsers(const BudgetApiDependencies& deps, const UserQuery& q) {
  auto users = deps.directory.SearchUsers(q);
  if (!users.ok()) return users.status();
  Timestamp now = deps.clock.Now();
  std::vector<LiveUser> out;
  out.reserve(users->size());
  for (UserWithSettings& us : *users) {
    const BudgetSettings& s = us.settings;
    Window w = CurrentWindow(s.period, s.custom_period_days, s.timezone, s.period_anchor, now);
    auto state = deps.spend_state(us.user.id, w);
    if (!state.ok()) return state.status();
    LiveUser live{std::move(us), *state, {}, 0};
    live.level = LevelOf(live.state.spend, s.limit, s.yellow, s.orange, s.red);
    live.basis_points = SpendBasisPoints(live.state.spend, s.limit);
    out.push_back(std::move(live));
  }
  return out;
}

Result<std::optional<AlertLevel>> ParseLevel(const std::string& text) {
  if (text.empty()) return std::optional<AlertLevel>();
  for (AlertLevel l : {AlertLevel::kGreen, AlertLevel::kYellow, AlertLevel::kOrange,
                       AlertLevel::kRed, AlertLevel::kExceeded}) {
    if (text == AlertLevelName(l)) return std::optional<AlertLevel>(l);
  }
  return Status::Invalid("level: must be GREEN, YELLOW, ORANGE, RED or EXCEEDED");
}

Result<std::optional<Role>> RoleParam(const httplib::Request& req) {
  auto text = TextParam(req, "role", 20);
  if (!text.ok()) return text.status();
  if (text->empty()) return std::optional<Role>();
  auto role = ParseRole(*text);
  if (!role) return Status::Invalid("role: must be user or admin");
  return std::optional<Role>(*role);
}

// GET /admin/list: search, filter by level and role, sort, paginate.
void List(const BudgetApiDependencies& deps, const httplib::Request& req, httplib::Response& res) {
  auto search = TextParam(req, "search");
  if (!search.ok()) return SendStatusError(res, search.status());
  auto level_text = TextParam(req, "level", 20);
  if (!level_text.ok()) return SendStatusError(res, level_text.status());
  auto level = ParseLevel(*level_text);
  if (!level.ok()) return SendStatusError(res, level.status());
  auto role = RoleParam(req);
  if (!role.ok()) return SendStatusError(res, role.status());
  std::string sort = req.has_param("sort") ? req.get_param_value("sort") : "id";
  if (sort != "id" && sort != "name" && sort != "spend" && sort != "percent" && sort != "remaining")
    return SendStatusError(res,
                           Status::Invalid("sort: must be id, name, spend, percent or remaining"));
  bool numeric = sort == "spend" || sort == "percent" || sort == "remaining";
  std::string order = req.has_param("order") ? req.get_param_value("order")
                                             : (numeric && sort != "remaining" ? "desc" : "asc");
  if (order != "asc" && order != "desc")
    return SendStatusError(res, Status::Invalid("order: must be asc or desc"));
  auto limit = IntParam(req, "limit", 50, 1, 500);
  if (!limit.ok()) return SendStatusError(res, limit.status());
  auto offset = IntParam(req, "offset", 0, 0, 1'000'000'000);
  if (!offset.ok()) return SendStatusError(res, offset.status());

  auto live = LiveUsers(deps, {*search, *role, true});
  if (!live.ok()) return SendStatusError(res, live.status());
  std::vector<LiveUser>& rows = *live;
  if (*level) {
    std::erase_if(rows, [&](const LiveUser& u) { return u.level != **level; });
  }
  auto key = [&sort](const LiveUser& u) -> std::pair<int64_t, std::string> {
    if (sort == "spend") return {u.state.spend.nanos(), ""};
    if (sort == "percent") return {u.basis_points, ""};
    if (sort == "remaining")
      return {(u.us.settings.limit - u.state.spend - u.state.held).nanos(), ""};
    if (sort == "name") return {0, u.us.user.name};
    return {u.us.user.id, ""};
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const LiveUser& a, const LiveUser& b) {
    return order == "asc" ? key(a) < key(b) : key(b) < key(a);
  });
  json items = json::array();
  Timestamp now = deps.clock.Now();
  for (size_t i = static_cast<size_t>(*offset);
       i < rows.size() && i < static_cast<size_t>(*offset + *limit); ++i) {
    const LiveUser& u = rows[i];
    items.push_back({{"user", UserJson(u.us.user)},
                     {"status", StatusJson(u.us.user.id, u.us.settings, u.state, now)},
                     {"settings", SettingsToJson(u.us.settings)}});
  }
  SendJson(res, {{"items", items}, {"total", rows.size()}, {"offset", *offset}, {"limit", *limit}});
}

// PUT /admin/configure {"user_id", "settings"} and /admin/configure/bulk
// {"user_ids": [...], "settings"}: all users change or none.
void Configure(const BudgetApiDependencies& deps, const httplib::Request& req,
               httplib::Response& res, const Caller& caller, bool bulk) {
  auto body = ReadJsonObject(req, res);
  if (!body) return;
  std::vector<int64_t> ids;
  const char* ids_field = bulk ? "user_ids" : "user_id";
  const json& idv = (*body).contains(ids_field) ? (*body)[ids_field] : json();
  auto good_id = [](const json& v) { return v.is_number_integer() && v.get<int64_t>() > 0; };
  if (bulk) {
    if (!idv.is_array() || idv.empty() || idv.size() > 10000 ||
        !std::all_of(idv.begin(), idv.end(), good_id))
      return SendStatusError(
          res, Status::Invalid("user_ids: must be a list of 1 to 10000 positive integer ids"));
    for (const json& v : idv) ids.push_back(v.get<int64_t>());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  } else {
    if (!good_id(idv))
      return SendStatusError(res, Status::Invalid("user_id: must be a positive integer id"));
    ids.push_back(idv.get<int64_t>());
  }
  if (!body->contains("settings") || !(*body)["settings"].is_object())
    return SendStatusError(res,
                           Status::Invalid("settings: must be an object of settings to change"));
  for (const auto& [field, _] : body->items()) {
    if (field != ids_field && field != "settings")
      return SendStatusError(res, Status::Invalid(field + ": unknown field (send " +
                                                  std::string(ids_field) + " and settings)"));
  }
  std::vector<BudgetSettings> changed;
  for (int64_t id : ids) {
    auto current = deps.directory.GetSettings(id);
    if (!current.ok()) return SendStatusError(res, current.status());
    BudgetSettings s = *current;
    if (Status st = ApplySettingsChange((*body)["settings"], Editor::kAdmin, &s); !st.ok())
      return SendStatusError(res, st);
    changed.push_back(s);
  }
  auto updated = deps.directory.PutSettingsMany(changed, caller.actor);
  if (!updated.ok()) return SendStatusError(res, updated.status());
  json out = json::array();
  for (const BudgetSettings& s : *updated) {
    deps.settings.Invalidate(s.user_id);
    out.push_back(SettingsToJson(s));
  }
  SendJson(res, bulk ? json{{"updated", out.size()}, {"settings", out}} : out[0]);
}

// POST /admin/reset/{user_id} {"reason"}
void Reset(const BudgetApiDependencies& deps, const httplib::Request& req, httplib::Response& res,
           const Caller& caller) {
  auto id = PathId(req, "user_id");
  if (!id.ok()) return SendStatusError(res, id.status());
  auto body = ReadJsonObject(req, res);
  if (!body) return;
  auto reason = BodyText(*body, "reason", 500, true);
  if (!reason.ok()) return SendStatusError(res, reason.status());
  auto budget = deps.settings.Get(*id);
  if (!budget.ok()) return SendStatusError(res, budget.status());
  auto state = deps.spend_state(*id, budget->window);
  if (!state.ok()) return SendStatusError(res, state.status());
  auto record =
      deps.directory.ResetWindow(*id, caller.actor, *reason, state->spend, deps.clock.Now());
  if (!record.ok()) return SendStatusError(res, record.status());
  deps.settings.Invalidate(*id);
  SendJson(res, ResetJson(*record));
}

// POST /admin/users {"name", "email", "external_id", "role", "limit_usd", "period"}
void CreateUser(const BudgetApiDependencies& deps, const httplib::Request& req,
                httplib::Response& res) {
  auto body = ReadJsonObject(req, res);
  if (!body) return;
  NewUser u;
  json budget_fields = json::object();
  for (const auto& [field, v] : body->items()) {
    if (field == "limit_usd" || field == "period") {
      budget_fields[field] = v;
    } else if (field != "name" && field != "email" && field != "external_id" && field != "role") {
      return SendStatusError(
          res, Status::Invalid(field + ": unknown field (known: name, email, external_id, role, "
                                       "limit_usd, period)"));
    }
  }
  auto name = BodyText(*body, "name", 100, true);
  if (!name.ok()) return SendStatusError(res, name.status());
  auto email = BodyText(*body, "email", 200, false);
  if (!email.ok()) return SendStatusError(res, email.status());
  auto external = BodyText(*body, "external_id", 200, false);
  if (!external.ok()) return SendStatusError(res, external.status());
  auto role = BodyText(*body, "role", 20, false);
  if (!role.ok()) return SendStatusError(res, role.status());
  u.name = *name;
  u.email = *email;
  u.external_id = *external;
  if (!role->empty()) {
    auto r = ParseRole(*role);
    if (!r) return SendStatusError(res, Status::Invalid("role: must be user or admin"));
    u.role = *r;
  }
  const BudgetDefaults& defaults =
      u.role == Role::kAdmin ? deps.config.admin_defaults : deps.config.user_defaults;
  if (!budget_fields.empty()) {
    // The same rules as any settings change, checked before anything is written.
    BudgetSettings scratch = SettingsFromDefaults(defaults, 0, deps.clock.Now());
    if (Status st = ApplySettingsChange(budget_fields, Editor::kAdmin, &scratch); !st.ok())
      return SendStatusError(res, st);
    if (budget_fields.contains("limit_usd")) u.limit = scratch.limit;
    if (budget_fields.contains("period")) u.period = scratch.period;
  }
  auto user = deps.directory.CreateUser(u, defaults, deps.clock.Now());
  if (!user.ok()) {
    if (user.status().code() == Status::Code::kConflict)
      return SendSideError(res, 409, "conflict", "a user with this name or external_id exists");
    return SendStatusError(res, user.status());
  }
  SendJson(res, UserJson(*user), 201);
}

void ListUsers(const BudgetApiDependencies& deps, const httplib::Request& req,
               httplib::Response& res) {
  auto search = TextParam(req, "search");
  if (!search.ok()) return SendStatusError(res, search.status());
  auto role = RoleParam(req);
  if (!role.ok()) return SendStatusError(res, role.status());
  auto limit = IntParam(req, "limit", 100, 1, 1000);
  if (!limit.ok()) return SendStatusError(res, limit.status());
  auto offset = IntParam(req, "offset", 0, 0, 1'000'000'000);
  if (!offset.ok()) return SendStatusError(res, offset.status());
  auto users = deps.directory.SearchUsers({*search, *role, true});
  if (!users.ok()) return SendStatusError(res, users.status());
  json items = json::array();
  for (size_t i = static_cast<size_t>(*offset);
       i < users->size() && i < static_cast<size_t>(*offset + *limit); ++i)
    items.push_back(UserJson((*users)[i].user));
  SendJson(res, {{"items", items}, {"total", users->size()}});
}

void SetDisabled(const BudgetApiDependencies& deps, const httplib::Request& req,
                 httplib::Response& res, bool disabled) {
  auto id = PathId(req, "user_id");
  if (!id.ok()) return SendStatusError(res, id.status());
  if (Status s = deps.directory.SetUserDisabled(*id, disabled); !s.ok())
    return SendStatusError(res, s);
  SendJson(res, {{"user_id", *id}, {"disabled", disabled}});
}

// POST /admin/keys {"user_id", "name", "act_as_user", "expires_at"}: the secret is in
// this answer and nowhere else, ever.
void CreateKey(const BudgetApiDependencies& deps, const httplib::Request& req,
               httplib::Response& res) {
  auto body = ReadJsonObject(req, res);
  if (!body) return;
  for (const auto& [field, _] : body->items()) {
    if (field != "user_id" && field != "name" && field != "act_as_user" && field != "expires_at")
      return SendStatusError(res, Status::Invalid(field + ": unknown field (known: user_id, name, "
                                                          "act_as_user, expires_at)"));
  }
  const json& uid = body->contains("user_id") ? (*body)["user_id"] : json();
  if (!uid.is_number_integer() || uid.get<int64_t>() <= 0)
    return SendStatusError(res, Status::Invalid("user_id: must be a positive integer id"));
  auto name = BodyText(*body, "name", 100, false);
  if (!name.ok()) return SendStatusError(res, name.status());
  bool act_as_user = false;
  if (body->contains("act_as_user")) {
    if (!(*body)["act_as_user"].is_boolean())
      return SendStatusError(res, Status::Invalid("act_as_user: must be true or false"));
    act_as_user = (*body)["act_as_user"].get<bool>();
  }
  std::optional<Timestamp> expires;
  Timestamp now = deps.clock.Now();
  if (body->contains("expires_at") && !(*body)["expires_at"].is_null()) {
    Timestamp t;
    const json& e = (*body)["expires_at"];
    if (!e.is_string() || !ParseRfc3339(e.get<std::string>(), &t) || t <= now)
      return SendStatusError(res,
                             Status::Invalid("expires_at: must be a future RFC 3339 time such as "
                                             "2027-01-01T00:00:00Z"));
    expires = t;
  }
  int64_t user_id = uid.get<int64_t>();
  if (auto user = deps.directory.FindUser(std::to_string(user_id));
      !user.ok() || user->id != user_id)
    return SendStatusError(res, user.ok()
                                    ? Status::NotFound("no user with id " + std::to_string(user_id))
                                    : user.status());
  auto created = deps.directory.CreateKey(user_id, *name, act_as_user, expires, now);
  if (!created.ok()) return SendStatusError(res, created.status());
  res.set_header("Cache-Control", "no-store");
  SendJson(res, {{"key", KeyJson(created->key, now)}, {"secret", created->secret}}, 201);
}

void ListKeys(const BudgetApiDependencies& deps, const httplib::Request& req,
              httplib::Response& res) {
  auto user = IntParam(req, "user_id", 0, 0, INT64_MAX);
  if (!user.ok()) return SendStatusError(res, user.status());
  auto prefix = TextParam(req, "prefix", 64);
  if (!prefix.ok()) return SendStatusError(res, prefix.status());
  auto keys = deps.directory.ListKeys(*user ? std::optional<int64_t>(*user) : std::nullopt);
  if (!keys.ok()) return SendStatusError(res, keys.status());
  json items = json::array();
  Timestamp now = deps.clock.Now();
  for (const ApiKey& k : *keys) {
    if (k.prefix.starts_with(*prefix)) items.push_back(KeyJson(k, now));
  }
  SendJson(res, {{"items", items}});
}

void RevokeKey(const BudgetApiDependencies& deps, const httplib::Request& req,
               httplib::Response& res) {
  auto id = PathId(req, "key_id");
  if (!id.ok()) return SendStatusError(res, id.status());
  if (Status s = deps.directory.RevokeKey(std::to_string(*id), deps.clock.Now()); !s.ok())
    return SendStatusError(res, s);
  SendJson(res, {{"key_id", *id}, {"revoked", true}});
}

void ResetLog(const BudgetApiDependencies& deps, const httplib::Request& req,
              httplib::Response& res) {
  auto user = IntParam(req, "user_id", 0, 0, INT64_MAX);
  if (!user.ok()) return SendStatusError(res, user.status());
  auto limit = IntParam(req, "limit", 100, 1, 1000);
  if (!limit.ok()) return SendStatusError(res, limit.status());
  auto log = deps.directory.ResetLog(*user ? std::optional<int64_t>(*user) : std::nullopt,
                                     static_cast<int>(*limit));
  if (!log.ok()) return SendStatusError(res, log.status());
  json items = json::array();
  for (const ResetRecord& r : *log) items.push_back(ResetJson(r));
  SendJson(res, {{"items", items}});
}

json RatesJson(const Rates& r) {
  return {{"input", r.input.ToUsdPerMillionString()},
          {"output", r.output.ToUsdPerMillionString()},
          {"cache_read", r.cache_read.ToUsdPerMillionString()},
          {"cache_write_5m", r.cache_write_5m.ToUsdPerMillionString()},
          {"cache_write_1h", r.cache_write_1h.ToUsdPerMillionString()}};
}

json PriceJson(const PriceEntry& e) {
  json windows = json::array();
  for (const PriceWindow& w : e.windows)
    windows.push_back({{"name", w.name}, {"usd_per_million", RatesJson(w.rates)}});
  return {{"provider", e.provider},
          {"model", e.model},
          {"effective_from", FormatRfc3339(e.effective_from)},
          {"usd_per_million", RatesJson(e.rates)},
          {"windows", windows},
          {"source", e.source},
          {"checked", e.checked},
          {"override", e.override}};
}

void ListPrices(const BudgetApiDependencies& deps, httplib::Response& res) {
  json entries = json::array();
  for (const PriceEntry& e : deps.pricing->entries()) entries.push_back(PriceJson(e));
  json overrides = json::array();
  for (const PriceEntry& e : deps.pricing->Overrides()) overrides.push_back(PriceJson(e));
  SendJson(res,
           {{"entries", entries}, {"overrides", overrides}, {"aliases", deps.pricing->aliases()}});
}

// POST /admin/pricing: a price for (provider, model) from effective_from (default now).
void OverridePrice(const BudgetApiDependencies& deps, const httplib::Request& req,
                   httplib::Response& res, const Caller& caller) {
  auto body = ReadJsonObject(req, res);
  if (!body) return;
  static const std::vector<std::string> kRateFields = {
      "input_usd_per_million", "output_usd_per_million", "cache_read_usd_per_million",
      "cache_write_5m_usd_per_million", "cache_write_1h_usd_per_million"};
  for (const auto& [field, _] : body->items()) {
    if (field != "provider" && field != "model" && field != "effective_from" &&
        std::find(kRateFields.begin(), kRateFields.end(), field) == kRateFields.end())
      return SendStatusError(res, Status::Invalid(field + ": unknown field"));
  }
  auto provider = BodyText(*body, "provider", 20, true);
  if (!provider.ok()) return SendStatusError(res, provider.status());
  if (*provider != "mistral" && *provider != "anthropic" && *provider != "deepseek" &&
      *provider != "ollama")
    return SendStatusError(
        res, Status::Invalid("provider: must be mistral, anthropic, deepseek or ollama"));
  auto model = BodyText(*body, "model", 200, true);
  if (!model.ok()) return SendStatusError(res, model.status());
  PriceOverride o{*provider, *model, deps.clock.Now(), {}, caller.actor};
  if (body->contains("effective_from")) {
    const json& e = (*body)["effective_from"];
    if (!e.is_string() || !ParseRfc3339(e.get<std::string>(), &o.effective_from))
      return SendStatusError(res,
                             Status::Invalid("effective_from: must be an RFC 3339 time such as "
                                             "2026-12-01T00:00:00Z"));
  }
  TokenRate* targets[] = {&o.rates.input, &o.rates.output, &o.rates.cache_read,
                          &o.rates.cache_write_5m, &o.rates.cache_write_1h};
  for (size_t i = 0; i < kRateFields.size(); ++i) {
    const std::string& f = kRateFields[i];
    if (!body->contains(f)) {
      if (i < 2) return SendStatusError(res, Status::Invalid(f + ": is required"));
      *targets[i] = o.rates.input;  // cache rates default to the input rate
      continue;
    }
    const json& v = (*body)[f];
    auto rate = v.is_string() ? TokenRate::ParseUsdPerMillion(v.get<std::string>()) : std::nullopt;
    if (!rate)
      return SendStatusError(
          res, Status::Invalid(f + ": must be a decimal string of USD per million tokens, "
                                   "such as \"0.40\""));
    *targets[i] = *rate;
  }
  if (Status s = deps.price_overrides->Add(o); !s.ok()) return SendStatusError(res, s);
  auto quote = deps.pricing->Lookup(o.provider, o.model, o.effective_from);
  if (!quote.ok()) return SendStatusError(res, quote.status());
  SendJson(res, {{"price_id", quote->id}, {"price", PriceJson(*quote->entry)}}, 201);
}

// GET /admin/overview: spend today, this week and this month (UTC), users per alert
// level, reserved in flight, and spend by provider and model for a range.
void Overview(const BudgetApiDependencies& deps, const httplib::Request& req,
              httplib::Response& res) {
  Timestamp now = deps.clock.Now();
  auto from = TimeParam(req, "from");
  if (!from.ok()) return SendStatusError(res, from.status());
  auto to = TimeParam(req, "to");
  if (!to.ok()) return SendStatusError(res, to.status());
  json periods = json::object();
  Timestamp month_start;
  for (Period p : {Period::kDaily, Period::kWeekly, Period::kMonthly}) {
    Window w = CurrentWindow(p, 30, "UTC", Timestamp(), now);
    if (p == Period::kMonthly) month_start = w.start;
    auto groups = deps.usage->Breakdown({0, w.start, w.end});
    if (!groups.ok()) return SendStatusError(res, groups.status());
    UsageTotals t;
    for (const UsageGroup& g : *groups) t.Add(g.totals);
    json j = {{"from", FormatRfc3339(w.start)}, {"requests", t.requests}};
    PutMoney(j, "spend", t.cost);
    periods[p == Period::kDaily ? "today" : p == Period::kWeekly ? "this_week" : "this_month"] = j;
  }
  Timestamp f = from->value_or(month_start), t = to->value_or(Timestamp::max());
  if (t <= f) return SendStatusError(res, Status::Invalid("to: must be after from"));
  auto groups = deps.usage->Breakdown({0, f, t});
  if (!groups.ok()) return SendStatusError(res, groups.status());
  json breakdown = BreakdownJson(*groups, f, t);
  std::map<std::string, Money> by_provider;
  for (const UsageGroup& g : *groups) by_provider[g.provider] += g.totals.cost;
  json providers = json::array();
  for (const auto& [name, cost] : by_provider) {
    json p = {{"provider", name}};
    PutMoney(p, "spend", cost);
    providers.push_back(p);
  }
  auto live = LiveUsers(deps, {});
  if (!live.ok()) return SendStatusError(res, live.status());
  json levels = {{"GREEN", 0}, {"YELLOW", 0}, {"ORANGE", 0}, {"RED", 0}, {"EXCEEDED", 0}};
  Money reserved, limits;
  for (const LiveUser& u : *live) {
    levels[AlertLevelName(u.level)] = levels[AlertLevelName(u.level)].get<int>() + 1;
    reserved += u.state.held;
    limits += u.us.settings.limit;
  }
  json j = {{"periods", periods},
            {"users", live->size()},
            {"users_per_alert_level", levels},
            {"by_provider", providers},
            {"breakdown", breakdown}};
  PutMoney(j, "reserved", reserved);
  PutMoney(j, "total_limits", limits);
  SendJson(res, j);
}

std::string CsvField(const std::string& s) {
  std::string v = s;
  if (!v.empty() && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@')) v = "'" + v;
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// GET /admin/usage/export.csv?user_id&from&to: streamed page by page (keyset on the
// ledger id), so memory stays at one page whatever the size.
void Export(const BudgetApiDependencies& deps, const httplib::Request& req,
            httplib::Response& res) {
  auto user = IntParam(req, "user_id", 0, 0, INT64_MAX);
  if (!user.ok()) return SendStatusError(res, user.status());
  auto from = TimeParam(req, "from");
  if (!from.ok()) return SendStatusError(res, from.status());
  auto to = TimeParam(req, "to");
  if (!to.ok()) return SendStatusError(res, to.status());
  LedgerFilter filter{*user, from->value_or(Timestamp()), to->value_or(Timestamp::max())};
  if (filter.to <= filter.from)
    return SendStatusError(res, Status::Invalid("to: must be after from"));
  // The first page is read before answering, so a database error is still a clean 503.
  auto first = deps.usage->Page(filter, 0, kExportPage, false);
  if (!first.ok()) return SendStatusError(res, first.status());
  struct Cursor {
    std::vector<LedgerRow> page;
    int64_t last = 0;
    bool header = true;
  };
  auto cursor = std::make_shared<Cursor>(Cursor{std::move(*first), 0, true});
  res.set_header("Content-Disposition", "attachment; filename=\"tollgate-usage.csv\"");
  res.set_chunked_content_provider(
      "text/csv; charset=utf-8", [&deps, filter, cursor](size_t, httplib::DataSink& sink) {
        std::string chunk;
        if (cursor->header) {
          chunk = kCsvHeader;
          cursor->header = false;
        }
        if (cursor->page.empty()) {
          if (!chunk.empty()) sink.write(chunk.data(), chunk.size());
          sink.done();
          return true;
        }
        for (const LedgerRow& r : cursor->page) chunk += CsvLine(r);
        cursor->last = cursor->page.back().id;
        if (!sink.write(chunk.data(), chunk.size())) return false;
        auto next = deps.usage->Page(filter, cursor->last, kExportPage, false);
        if (!next.ok()) return false;  // the client sees a cut response, never a wrong one
        cursor->page = std::move(*next);
        return true;
      });
}

}  // namespace

const char* const kCsvHeader =
    "request_id,time,user_id,provider,model,price_id,input_tokens,output_tokens,"
    "cache_read_tokens,cache_write_tokens,reasoning_tokens,cost_usd,cost_nanos,status,streamed,"
    "estimated,latency_ms\r\n";

std::string CsvLine(const LedgerRow& row) {
  const UsageRecord& r = row.record;
  std::string line;
  line.reserve(256);
  auto add = [&line](const std::string& v) {
    if (!line.empty()) line += ',';
    line += v;
  };
  add(CsvField(r.request_id));
  add(FormatRfc3339(r.started_at));
  add(std::to_string(r.user_id));
  add(CsvField(r.provider));
  add(CsvField(r.model));
  add(CsvField(r.price_id));
  add(std::to_string(r.usage.input_tokens));
  add(std::to_string(r.usage.output_tokens));
  add(std::to_string(r.usage.cache_read_tokens));
  add(std::to_string(r.usage.cache_write_5m_tokens + r.usage.cache_write_1h_tokens));
  add(std::to_string(r.usage.reasoning_tokens));
  add(r.cost.ToUsdString());
  add(std::to_string(r.cost.nanos()));
  add(std::to_string(r.status));
  add(r.streamed ? "true" : "false");
  add(r.estimated ? "true" : "false");
  add(std::to_string(r.latency_ms));
  return line + "\r\n";
}

void RegisterAdminApi(EventServer& server, const BudgetApiDependencies& deps) {
  const std::string p = kPrefix;
  server.Put(p + "/configure",
             AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller& c) {
               Configure(deps, req, res, c, false);
             }));
  server.Put(p + "/configure/bulk",
             AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller& c) {
               Configure(deps, req, res, c, true);
             }));
  server.Get(p + "/list", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
               List(deps, req, res);
             }));
  server.Post(p + "/reset/*", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller& c) {
                Reset(deps, req, res, c);
              }));
  server.Get(p + "/users", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
               ListUsers(deps, req, res);
             }));
  server.Post(p + "/users", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                CreateUser(deps, req, res);
              }));
  server.Post(p + "/users/*/disable",
              AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                SetDisabled(deps, req, res, true);
              }));
  server.Post(p + "/users/*/enable",
              AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                SetDisabled(deps, req, res, false);
              }));
  server.Get(p + "/keys", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
               ListKeys(deps, req, res);
             }));
  server.Post(p + "/keys", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                CreateKey(deps, req, res);
              }));
  server.Post(p + "/keys/*/revoke",
              AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                RevokeKey(deps, req, res);
              }));
  server.Get(p + "/reset-log", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
               ResetLog(deps, req, res);
             }));
  if (deps.pricing) {
    server.Get(p + "/pricing", AdminOnly(deps, [&deps](const auto&, auto& res, const Caller&) {
                 ListPrices(deps, res);
               }));
  }
  if (deps.pricing && deps.price_overrides) {
    server.Post(p + "/pricing",
                AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller& c) {
                  OverridePrice(deps, req, res, c);
                }));
  }
  if (deps.usage) {
    server.Get(p + "/overview", AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                 Overview(deps, req, res);
               }));
    server.Get(p + "/usage/export.csv",
               AdminOnly(deps, [&deps](const auto& req, auto& res, const Caller&) {
                 Export(deps, req, res);
               }));
  }
}

}  // namespace tollgate
