// The directory: users, their keys and their budget settings. Postgres is the truth
// (pg_directory.h); fake_directory.h is the in-memory stand-in for unit tests.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/clock.h"
#include "config/config.h"
#include "config/money.h"
#include "config/status.h"

namespace tollgate {

struct User {
  int64_t id = 0;
  std::string name;
  std::string email;
  std::string external_id;  // the application's own id for this user; may be empty
  Role role = Role::kUser;
  bool disabled = false;
  Timestamp created_at;
};

struct ApiKey {
  int64_t id = 0;
  int64_t user_id = 0;
  std::string prefix;
  std::string name;
  bool act_as_user = false;
  std::optional<Timestamp> expires_at;
  std::optional<Timestamp> revoked_at;
  Timestamp created_at;

  bool UsableAt(Timestamp now) const { return !revoked_at && (!expires_at || now < *expires_at); }
};

struct BudgetSettings {
  int64_t user_id = 0;
  Money limit;
  Period period = Period::kMonthly;
  int custom_period_days = 30;
  Timestamp period_anchor;  // start of the current window (creation or last reset)
  std::string timezone = "UTC";
  Enforcement enforcement = Enforcement::kHard;
  int yellow = 50, orange = 75, red = 90;
  bool budget_visible = true;
  bool can_modify_limit = false;
  std::optional<Money> max_self_limit;
  bool can_reset = false;
  int64_t version = 1;  // bumped on every change; caches compare it
};

// Settings a new user starts with: the role's defaults, anchored now.
BudgetSettings SettingsFromDefaults(const BudgetDefaults& d, int64_t user_id, Timestamp now);

struct NewUser {
  std::string name;
  std::string email;
  std::string external_id;
  Role role = Role::kUser;
  std::optional<Money> limit;    // overrides the role default
  std::optional<Period> period;  // overrides the role default
};

struct CreatedKey {
  ApiKey key;
  std::string secret;  // shown once
};

// A user with their settings, as the admin list reads them.
struct UserWithSettings {
  User user;
  BudgetSettings settings;
};

// Which users an admin list wants. `search` matches name, email or external id
// (case-insensitive substring; it is data, never SQL).
struct UserQuery {
  std::string search;
  std::optional<Role> role;
  bool include_disabled = true;
};

struct ResetRecord {
  int64_t id = 0;
  int64_t user_id = 0;
  std::string actor;
  Timestamp reset_at;
  Money spend_before;
  std::string reason;
};

class Directory {
 public:
  virtual ~Directory() = default;

  // Creates the user and their settings row (role defaults) in one step.
  virtual Result<User> CreateUser(const NewUser& u, const BudgetDefaults& defaults,
                                  Timestamp now) = 0;
  // By numeric id, by name, or by external id, in that order.
  virtual Result<User> FindUser(const std::string& name_or_id) = 0;
  virtual Result<std::vector<User>> ListUsers() = 0;
  // Users matching `q` with their settings, by id.
  virtual Result<std::vector<UserWithSettings>> SearchUsers(const UserQuery& q) = 0;
  virtual Status SetUserDisabled(int64_t user_id, bool disabled) = 0;

  virtual Result<CreatedKey> CreateKey(int64_t user_id, const std::string& name, bool act_as_user,
                                       std::optional<Timestamp> expires_at, Timestamp now) = 0;
  // The key with this SHA-256 hash, usable or not (the caller checks UsableAt).
  virtual Result<ApiKey> FindKeyByHash(const std::string& hash) = 0;
  // Revokes by id or by display prefix; NotFound if nothing matches, Conflict if a
  // prefix is ambiguous.
  virtual Status RevokeKey(const std::string& id_or_prefix, Timestamp now) = 0;
  virtual Result<std::vector<ApiKey>> ListKeys(std::optional<int64_t> user_id) = 0;

  virtual Result<BudgetSettings> GetSettings(int64_t user_id) = 0;
  // Writes the settings (version bumped) and records who changed what; several users'
  // settings are written all together or not at all.
  virtual Result<std::vector<BudgetSettings>> PutSettingsMany(
      const std::vector<BudgetSettings>& all, const std::string& actor) = 0;
  Result<BudgetSettings> PutSettings(const BudgetSettings& s, const std::string& actor) {
    auto r = PutSettingsMany({s}, actor);
    if (!r.ok()) return r.status();
    return r->front();
  }
  // Starts a new window at `now` and writes the reset log, atomically.
  virtual Result<ResetRecord> ResetWindow(int64_t user_id, const std::string& actor,
                                          const std::string& reason, Money spend_before,
                                          Timestamp now) = 0;
  virtual Result<std::vector<ResetRecord>> ResetLog(std::optional<int64_t> user_id, int limit) = 0;
};

}  // namespace tollgate
