// An in-memory directory for unit tests, with a switch that makes it unreachable.
#pragma once

#include <map>
#include <mutex>

#include "budget/directory.h"

namespace tollgate {

class FakeDirectory final : public Directory {
 public:
  // Ids start at `first_id`, so tests sharing one real Redis can keep users apart.
  explicit FakeDirectory(int64_t first_id = 1) : next_id_(first_id) {}
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

  void set_down(bool down) {
    std::lock_guard lock(mu_);
    down_ = down;
  }

 private:
  Status Down() const { return Status::Unavailable("directory unreachable (fake down)"); }

  std::mutex mu_;
  bool down_ = false;
  std::map<int64_t, User> users_;
  std::map<int64_t, ApiKey> keys_;
  std::map<std::string, int64_t> key_by_hash_;
  std::map<int64_t, BudgetSettings> settings_;
  std::vector<ResetRecord> resets_;
  int64_t next_id_;
};

}  // namespace tollgate
