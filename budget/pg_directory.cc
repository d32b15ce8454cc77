#include "budget/pg_directory.h"

#include <nlohmann/json.hpp>

#include "budget/keys.h"

namespace tollgate {
namespace {

const std::string kUserColumns =
    "id, name, email, coalesce(external_id, ''), role, disabled, " + SqlTime("created_at");

User ReadUser(const pqxx::row& r) {
  User u;
  u.id = r[0].as<int64_t>();
  u.name = r[1].as<std::string>();
  u.email = r[2].as<std::string>();
  u.external_id = r[3].as<std::string>();
  u.role = ParseRole(r[4].as<std::string>()).value_or(Role::kUser);
  u.disabled = r[5].as<bool>();
  u.created_at = FromMicros(r[6].as<int64_t>());
  return u;
}

const std::string kKeyColumns = "id, user_id, prefix, name, act_as_user, " + SqlTime("expires_at") +
                                ", " + SqlTime("revoked_at") + ", " + SqlTime("created_at");

ApiKey ReadKey(const pqxx::row& r) {
  ApiKey k;
  k.id = r[0].as<int64_t>();
  k.user_id = r[1].as<int64_t>();
  k.prefix = r[2].as<std::string>();
  k.name = r[3].as<std::string>();
  k.act_as_user = r[4].as<bool>();
  if (!r[5].is_null()) k.expires_at = FromMicros(r[5].as<int64_t>());
  if (!r[6].is_null()) k.revoked_at = FromMicros(r[6].as<int64_t>());
  k.created_at = FromMicros(r[7].as<int64_t>());
  return k;
}

const std::string kSettingsColumns =
    "user_id, limit_nanos, period, custom_period_days, " + SqlTime("period_anchor") +
    ", timezone, enforcement, yellow_pct, orange_pct, red_pct, budget_visible, can_modify_limit, "
    "max_self_limit_nanos, can_reset, version";

BudgetSettings ReadSettings(const pqxx::row& row, int first = 0) {
  auto r = [&row, first](int i) { return row[first + i]; };
  BudgetSettings s;
  s.user_id = r(0).as<int64_t>();
  s.limit = Money::FromNanos(r(1).as<int64_t>());
  s.period = ParsePeriod(r(2).as<std::string>()).value_or(Period::kMonthly);
  s.custom_period_days = r(3).as<int>();
  s.period_anchor = FromMicros(r(4).as<int64_t>());
  s.timezone = r(5).as<std::string>();
  s.enforcement = ParseEnforcement(r(6).as<std::string>()).value_or(Enforcement::kHard);
  s.yellow = r(7).as<int>();
  s.orange = r(8).as<int>();
  s.red = r(9).as<int>();
  s.budget_visible = r(10).as<bool>();
  s.can_modify_limit = r(11).as<bool>();
  if (!r(12).is_null()) s.max_self_limit = Money::FromNanos(r(12).as<int64_t>());
  s.can_reset = r(13).as<bool>();
  s.version = r(14).as<int64_t>();
  return s;
}

nlohmann::json SettingsJson(const BudgetSettings& s) {
  return {{"limit_nanos", s.limit.nanos()},
          {"period", PeriodName(s.period)},
          {"custom_period_days", s.custom_period_days},
          {"timezone", s.timezone},
          {"enforcement", EnforcementName(s.enforcement)},
          {"thresholds", {s.yellow, s.orange, s.red}},
          {"budget_visible", s.budget_visible},
          {"can_modify_limit", s.can_modify_limit},
          {"max_self_limit_nanos",
           s.max_self_limit ? nlohmann::json(s.max_self_limit->nanos()) : nullptr},
          {"can_reset", s.can_reset}};
}

bool IsNumber(const std::string& s) {
  return !s.empty() && s.size() < 19 && s.find_first_not_of("0123456789") == std::string::npos;
}

void InsertSettings(pqxx::work& w, const BudgetSettings& s, const std::string& actor) {
  std::string max_self = s.max_self_limit ? std::to_string(s.max_self_limit->nanos()) : "";
  w.exec_params(
      "INSERT INTO budget_settings (user_id, limit_nanos, period, custom_period_days, "
      "period_anchor, timezone,"
      " enforcement, yellow_pct, orange_pct, red_pct, budget_visible, can_modify_limit, "
      "max_self_limit_nanos,"
      " can_reset, updated_by) VALUES ($1, $2, $3, $4, " +
          SqlFromMicros(5) + ", $6, $7, $8, $9, $10, $11, $12, $13::bigint, $14, $15)",
      s.user_id, s.limit.nanos(), PeriodName(s.period), s.custom_period_days,
      Micros(s.period_anchor), s.timezone, EnforcementName(s.enforcement), s.yellow, s.orange,
      s.red, s.budget_visible, s.can_modify_limit, s.max_self_limit ? max_self.c_str() : nullptr,
      s.can_reset, actor);
}

}  // namespace

Result<User> PgDirectory::CreateUser(const NewUser& u, const BudgetDefaults& defaults,
                                     Timestamp now) {
  return pool_.Get<User>([&](pqxx::connection& c) {
    pqxx::work w(c);
    User user =
        ReadUser(w.exec_params1("INSERT INTO users (name, email, external_id, role, created_at) "
                                "VALUES ($1, $2, nullif($3, ''), $4, " +
                                    SqlFromMicros(5) + ") RETURNING " + kUserColumns,
                                u.name, u.email, u.external_id, RoleName(u.role), Micros(now)));
    BudgetSettings s = SettingsFromDefaults(defaults, user.id, now);
    if (u.limit) s.limit = *u.limit;
    if (u.period) s.period = *u.period;
    InsertSettings(w, s, "create");
    w.commit();
    return user;
  });
}

Result<User> PgDirectory::FindUser(const std::string& name_or_id) {
  std::optional<User> found;
  Status s = pool_.Run([&](pqxx::connection& c) {
    // The caches' loads: look-ups that need no snapshot, so no transaction (one round
    // trip each instead of BEGIN, the query and ROLLBACK).
    pqxx::nontransaction w(c);
    pqxx::result r;
    if (IsNumber(name_or_id)) {
      r = w.exec_params("SELECT " + kUserColumns + " FROM users WHERE id = $1",
                        std::stoll(name_or_id));
    }
    if (r.empty())
      r = w.exec_params("SELECT " + kUserColumns + " FROM users WHERE name = $1", name_or_id);
    if (r.empty())
      r = w.exec_params("SELECT " + kUserColumns + " FROM users WHERE external_id = $1",
                        name_or_id);
    if (!r.empty()) found = ReadUser(r[0]);
  });
  if (!s.ok()) return s;
  if (!found) return Status::NotFound("no user \"" + name_or_id + "\"");
  return *found;
}

Result<std::vector<User>> PgDirectory::ListUsers() {
  return pool_.Get<std::vector<User>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    std::vector<User> out;
    for (const auto& row : w.exec("SELECT " + kUserColumns + " FROM users ORDER BY id"))
      out.push_back(ReadUser(row));
    return out;
  });
}

Result<std::vector<UserWithSettings>> PgDirectory::SearchUsers(const UserQuery& q) {
  // The search text is a bound parameter; LIKE's own wildcards in it are escaped so
  // "%" or "_" match themselves.
  std::string pattern = "%";
  for (char ch : q.search) {
    if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
    pattern += ch;
  }
  pattern += "%";
  std::string role = q.role ? RoleName(*q.role) : "";
  return pool_.Get<std::vector<UserWithSettings>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    pqxx::result r = w.exec_params("SELECT " + kUserColumns + ", " + kSettingsColumns +
                                       " FROM users JOIN budget_settings ON user_id = id"
                                       " WHERE ($1 = '%%' OR name ILIKE $1 OR email ILIKE $1"
                                       "        OR coalesce(external_id, '') ILIKE $1)"
                                       "   AND ($2 = '' OR role = $2) AND ($3 OR NOT disabled)"
                                       " ORDER BY id",
                                   pattern, role, q.include_disabled);
    std::vector<UserWithSettings> out;
    out.reserve(r.size());
    for (const auto& row : r) {
      UserWithSettings us;
      us.user = ReadUser(row);
      us.settings = ReadSettings(row, 7);
      out.push_back(std::move(us));
    }
    return out;
  });
}

Status PgDirectory::SetUserDisabled(int64_t user_id, bool disabled) {
  bool changed = false;
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    changed = w.exec_params("UPDATE users SET disabled = $2 WHERE id = $1", user_id, disabled)
                  .affected_rows() == 1;
    w.commit();
  });
  if (s.ok() && !changed) return Status::NotFound("no user with id " + std::to_string(user_id));
  return s;
}

Result<CreatedKey> PgDirectory::CreateKey(int64_t user_id, const std::string& name,
                                          bool act_as_user, std::optional<Timestamp> expires_at,
                                          Timestamp now) {
  GeneratedKey g = GenerateKey();
  std::string expires = expires_at ? std::to_string(Micros(*expires_at)) : "";
  auto key = pool_.Get<ApiKey>([&](pqxx::connection& c) {
    pqxx::work w(c);
    ApiKey k = ReadKey(w.exec_params1(
        "INSERT INTO api_keys (user_id, key_hash, prefix, name, act_as_user, expires_at, "
        "created_at) VALUES"
        " ($1, $2, $3, $4, $5, " +
            SqlFromMicros(6) + ", " + SqlFromMicros(7) + ") RETURNING " + kKeyColumns,
        user_id, g.hash, g.prefix, name, act_as_user, expires_at ? expires.c_str() : nullptr,
        Micros(now)));
    w.commit();
    return k;
  });
  if (!key.ok()) return key.status();
  return CreatedKey{*key, g.secret};
}

Result<ApiKey> PgDirectory::FindKeyByHash(const std::string& hash) {
  std::optional<ApiKey> found;
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::nontransaction w(c);  // one round trip, as in FindUser
    auto r = w.exec_params("SELECT " + kKeyColumns + " FROM api_keys WHERE key_hash = $1", hash);
    if (!r.empty()) found = ReadKey(r[0]);
  });
  if (!s.ok()) return s;
  if (!found) return Status::NotFound("unknown key");
  return *found;
}

Status PgDirectory::RevokeKey(const std::string& id_or_prefix, Timestamp now) {
  Status result = Status::Ok();
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    pqxx::result r =
        IsNumber(id_or_prefix)
            ? w.exec_params("SELECT id FROM api_keys WHERE id = $1", std::stoll(id_or_prefix))
            : w.exec_params("SELECT id FROM api_keys WHERE prefix = $1", id_or_prefix);
    if (r.empty()) {
      result = Status::NotFound("no key \"" + id_or_prefix + "\"");
      return;
    }
    if (r.size() > 1) {
      result =
          Status::Conflict("prefix \"" + id_or_prefix + "\" matches several keys; use the key id");
      return;
    }
    w.exec_params("UPDATE api_keys SET revoked_at = coalesce(revoked_at, " + SqlFromMicros(2) +
                      ") WHERE id = $1",
                  r[0][0].as<int64_t>(), Micros(now));
    w.commit();
  });
  return s.ok() ? result : s;
}

Result<std::vector<ApiKey>> PgDirectory::ListKeys(std::optional<int64_t> user_id) {
  return pool_.Get<std::vector<ApiKey>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    std::vector<ApiKey> out;
    pqxx::result r = user_id ? w.exec_params("SELECT " + kKeyColumns +
                                                 " FROM api_keys WHERE user_id = $1 ORDER BY id",
                                             *user_id)
                             : w.exec("SELECT " + kKeyColumns + " FROM api_keys ORDER BY id");
    for (const auto& row : r) out.push_back(ReadKey(row));
    return out;
  });
}

Result<BudgetSettings> PgDirectory::GetSettings(int64_t user_id) {
  std::optional<BudgetSettings> found;
  Status s = pool_.Run([&](pqxx::connection& c) {
    pqxx::nontransaction w(c);  // one round trip, as in FindUser
    auto r = w.exec_params(
        "SELECT " + kSettingsColumns + " FROM budget_settings WHERE user_id = $1", user_id);
    if (!r.empty()) found = ReadSettings(r[0]);
  });
  if (!s.ok()) return s;
  if (!found) return Status::NotFound("no budget settings for user " + std::to_string(user_id));
  return *found;
}

Result<std::vector<BudgetSettings>> PgDirectory::PutSettingsMany(
    const std::vector<BudgetSettings>& all, const std::string& actor) {
  std::vector<BudgetSettings> updated;
  std::optional<int64_t> missing;
  Status st = pool_.Run([&](pqxx::connection& c) {
    updated.clear();
    pqxx::work w(c);
    for (const BudgetSettings& s : all) {
      auto before = w.exec_params(
          "SELECT " + kSettingsColumns + " FROM budget_settings WHERE user_id = $1 FOR UPDATE",
          s.user_id);
      if (before.empty()) {
        missing = s.user_id;
        return;  // the transaction is rolled back: nothing is half-written
      }
      std::string max_self = s.max_self_limit ? std::to_string(s.max_self_limit->nanos()) : "";
      updated.push_back(ReadSettings(w.exec_params1(
          "UPDATE budget_settings SET limit_nanos = $2, period = $3, custom_period_days = $4, "
          "timezone = $5,"
          " enforcement = $6, yellow_pct = $7, orange_pct = $8, red_pct = $9, budget_visible = "
          "$10, can_modify_limit = $11, max_self_limit_nanos = $12::bigint, can_reset = $13,"
          " version = version + 1, updated_at = now(), updated_by = $14 WHERE user_id = $1"
          " RETURNING " +
              kSettingsColumns,
          s.user_id, s.limit.nanos(), PeriodName(s.period), s.custom_period_days, s.timezone,
          EnforcementName(s.enforcement), s.yellow, s.orange, s.red, s.budget_visible,
          s.can_modify_limit, s.max_self_limit ? max_self.c_str() : nullptr, s.can_reset, actor)));
      nlohmann::json change = {{"before", SettingsJson(ReadSettings(before[0]))},
                               {"after", SettingsJson(updated.back())}};
      w.exec_params(
          "INSERT INTO settings_audit (user_id, actor, change) VALUES ($1, $2, $3::jsonb)",
          s.user_id, actor, change.dump());
    }
    w.commit();
  });
  if (!st.ok()) return st;
  if (missing) return Status::NotFound("no budget settings for user " + std::to_string(*missing));
  return updated;
}

Result<ResetRecord> PgDirectory::ResetWindow(int64_t user_id, const std::string& actor,
                                             const std::string& reason, Money spend_before,
                                             Timestamp now) {
  std::optional<ResetRecord> record;
  Status st = pool_.Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    if (w.exec_params(
             "UPDATE budget_settings SET period_anchor = " + SqlFromMicros(2) +
                 ", version = version + 1, updated_at = now(), updated_by = $3 WHERE user_id = $1",
             user_id, Micros(now), actor)
            .affected_rows() != 1)
      return;
    auto row = w.exec_params1(
        "INSERT INTO budget_reset_log (user_id, actor, reset_at, spend_before_nanos, reason) "
        "VALUES ($1, $2, " +
            SqlFromMicros(3) + ", $4, $5) RETURNING id",
        user_id, actor, Micros(now), spend_before.nanos(), reason);
    record = ResetRecord{row[0].as<int64_t>(), user_id, actor, now, spend_before, reason};
    w.commit();
  });
  if (!st.ok()) return st;
  if (!record) return Status::NotFound("no budget settings for user " + std::to_string(user_id));
  return *record;
}

Result<std::vector<ResetRecord>> PgDirectory::ResetLog(std::optional<int64_t> user_id, int limit) {
  return pool_.Get<std::vector<ResetRecord>>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    const std::string cols = "SELECT id, user_id, actor, " + SqlTime("reset_at") +
                             ", spend_before_nanos, reason FROM budget_reset_log ";
    pqxx::result r =
        user_id
            ? w.exec_params(cols + "WHERE user_id = $1 ORDER BY reset_at DESC, id DESC LIMIT $2",
                            *user_id, limit)
            : w.exec_params(cols + "ORDER BY reset_at DESC, id DESC LIMIT $1", limit);
    std::vector<ResetRecord> out;
    for (const auto& row : r) {
      out.push_back({row[0].as<int64_t>(), row[1].as<int64_t>(), row[2].as<std::string>(),
                     FromMicros(row[3].as<int64_t>()), Money::FromNanos(row[4].as<int64_t>()),
                     row[5].as<std::string>()});
    }
    return out;
  });
}

}  // namespace tollgate
