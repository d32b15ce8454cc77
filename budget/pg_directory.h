// The directory in Postgres.
#pragma once

#include "budget/directory.h"
#include "budget/pg_pool.h"

namespace tollgate {

class PgDirectory final : public Directory {
 public:
  explicit PgDirectory(PgPool& pool) : pool_(pool) {}

  Result<User> CreateUser(const NewUser& u, const BudgetDefaults& defaults, Timestamp now) override;
  Result<User> FindUser(const std::string& name_or_id) override;
  Result<std::vector<User>> ListUsers() override;
  Result<std::vector<UserWithSettings>> SearchUsers(const UserQuery& q) override;
  Status SetUserDisabled(int64_t user_id, bool disabled) override;
  Result<CreatedKey> CreateKey(int64_t user_id, const std::string& name, bool act_as_user,
                               std::optional<Timestamp> expires_at, Timestamp now) override;
  Result<ApiKey> FindKeyByHash(const std::string& hash) override;
  Status RevokeKey(const std::string& id_or_prefix, Timestamp now) override;
  Result<std::vector<ApiKey>> ListKeys(std::optional<int64_t> user_id) override;
  Result<BudgetSettings> GetSettings(int64_t user_id) override;
  Result<std::vector<BudgetSettings>> PutSettingsMany(const std::vector<BudgetSettings>& all,
                                                      const std::string& actor) override;
  Result<ResetRecord> ResetWindow(int64_t user_id, const std::string& actor,
                                  const std::string& reason, Money spend_before,
                                  Timestamp now) override;
  Result<std::vector<ResetRecord>> ResetLog(std::optional<int64_t> user_id, int limit) override;

 private:
  PgPool& pool_;
};

}  // namespace tollgate
