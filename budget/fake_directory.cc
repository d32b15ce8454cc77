#include "budget/fake_directory.h"

#include <cctype>

#include "budget/keys.h"

namespace tollgate {

Result<User> FakeDirectory::CreateUser(const NewUser& u, const BudgetDefaults& defaults,
                                       Timestamp now) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  for (const auto& [id, existing] : users_) {
    if (existing.name == u.name ||
        (!u.external_id.empty() && existing.external_id == u.external_id))
      return Status::Conflict("user \"" + u.name + "\" already exists");
  }
  User user{next_id_++, u.name, u.email, u.external_id, u.role, false, now};
  users_[user.id] = user;
  BudgetSettings s = SettingsFromDefaults(defaults, user.id, now);
  if (u.limit) s.limit = *u.limit;
  if (u.period) s.period = *u.period;
  settings_[user.id] = s;
  return user;
}

Result<User> FakeDirectory::FindUser(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  for (const auto& [id, u] : users_) {
    if (std::to_string(id) == name_or_id) return u;
  }
  for (const auto& [id, u] : users_) {
    if (u.name == name_or_id || (!u.external_id.empty() && u.external_id == name_or_id)) return u;
  }
  return Status::NotFound("no user \"" + name_or_id + "\"");
}

Result<std::vector<User>> FakeDirectory::ListUsers() {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  std::vector<User> out;
  for (const auto& [id, u] : users_) out.push_back(u);
  return out;
}

Result<std::vector<UserWithSettings>> FakeDirectory::SearchUsers(const UserQuery& q) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  std::string needle = lower(q.search);
  std::vector<UserWithSettings> out;
  for (const auto& [id, u] : users_) {
    bool text = needle.empty() || lower(u.name).find(needle) != std::string::npos ||
                lower(u.email).find(needle) != std::string::npos ||
                lower(u.external_id).find(needle) != std::string::npos;
    if (!text || (q.role && u.role != *q.role) || (!q.include_disabled && u.disabled)) continue;
    out.push_back({u, settings_.at(id)});
  }
  return out;
}

Status FakeDirectory::SetUserDisabled(int64_t user_id, bool disabled) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  auto it = users_.find(user_id);
  if (it == users_.end()) return Status::NotFound("no user with id " + std::to_string(user_id));
  it->second.disabled = disabled;
  return Status::Ok();
}

Result<CreatedKey> FakeDirectory::CreateKey(int64_t user_id, const std::string& name,
                                            bool act_as_user, std::optional<Timestamp> expires_at,
                                            Timestamp now) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  if (!users_.count(user_id)) return Status::NotFound("no user with id " + std::to_string(user_id));
  GeneratedKey g = GenerateKey();
  ApiKey k{next_id_++, user_id, g.prefix, name, act_as_user, expires_at, std::nullopt, now};
  keys_[k.id] = k;
  key_by_hash_[g.hash] = k.id;
  return CreatedKey{k, g.secret};
}

Result<ApiKey> FakeDirectory::FindKeyByHash(const std::string& hash) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  auto it = key_by_hash_.find(hash);
  if (it == key_by_hash_.end()) return Status::NotFound("unknown key");
  return keys_[it->second];
}

Status FakeDirectory::RevokeKey(const std::string& id_or_prefix, Timestamp now) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  std::vector<ApiKey*> matches;
  for (auto& [id, k] : keys_) {
    if (std::to_string(id) == id_or_prefix || k.prefix == id_or_prefix) matches.push_back(&k);
  }
  if (matches.empty()) return Status::NotFound("no key \"" + id_or_prefix + "\"");
  if (matches.size() > 1) return Status::Conflict("prefix matches several keys; use the key id");
  if (!matches[0]->revoked_at) matches[0]->revoked_at = now;
  return Status::Ok();
}

Result<std::vector<ApiKey>> FakeDirectory::ListKeys(std::optional<int64_t> user_id) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  std::vector<ApiKey> out;
  for (const auto& [id, k] : keys_) {
    if (!user_id || k.user_id == *user_id) out.push_back(k);
  }
  return out;
}

Result<BudgetSettings> FakeDirectory::GetSettings(int64_t user_id) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  auto it = settings_.find(user_id);
  if (it == settings_.end())
    return Status::NotFound("no budget settings for user " + std::to_string(user_id));
  return it->second;
}

Result<std::vector<BudgetSettings>> FakeDirectory::PutSettingsMany(
    const std::vector<BudgetSettings>& all, const std::string&) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  for (const BudgetSettings& s : all) {
    if (!settings_.count(s.user_id))
      return Status::NotFound("no budget settings for user " + std::to_string(s.user_id));
  }
  std::vector<BudgetSettings> out;
  for (const BudgetSettings& s : all) {
    BudgetSettings& current = settings_[s.user_id];
    BudgetSettings next = s;
    next.period_anchor = current.period_anchor;
    next.version = current.version + 1;
    current = next;
    out.push_back(next);
  }
  return out;
}

Result<ResetRecord> FakeDirectory::ResetWindow(int64_t user_id, const std::string& actor,
                                               const std::string& reason, Money spend_before,
                                               Timestamp now) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  auto it = settings_.find(user_id);
  if (it == settings_.end())
    return Status::NotFound("no budget settings for user " + std::to_string(user_id));
  it->second.period_anchor = now;
  it->second.version += 1;
  ResetRecord r{
      static_cast<int64_t>(resets_.size() + 1), user_id, actor, now, spend_before, reason};
  resets_.push_back(r);
  return r;
}

Result<std::vector<ResetRecord>> FakeDirectory::ResetLog(std::optional<int64_t> user_id,
                                                         int limit) {
  std::lock_guard lock(mu_);
  if (down_) return Down();
  std::vector<ResetRecord> out;
  for (auto it = resets_.rbegin(); it != resets_.rend() && static_cast<int>(out.size()) < limit;
       ++it) {
    if (!user_id || it->user_id == *user_id) out.push_back(*it);
  }
  return out;
}

}  // namespace tollgate
