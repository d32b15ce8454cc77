#include "budget/authenticator.h"

#include "budget/keys.h"

namespace tollgate {

Result<Identity> Authenticator::Authenticate(const std::string& secret) {
  if (!LooksLikeTollgateKey(secret)) return Status::NotFound("invalid tollgate key");
  std::string hash = HashKey(secret);
  Timestamp now = clock_.Now();
  Result<Identity> found = Status::NotFound("invalid tollgate key");
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.fetched_at < ttl_) {
      found = it->second.identity;
      cached = true;
    }
  }
  if (!cached) {
    auto key = directory_.FindKeyByHash(hash);
    if (!key.ok()) {
      if (key.status().code() != Status::Code::kNotFound) return key.status();  // do not cache outages
      found = Status::NotFound("invalid tollgate key");
    } else {
      auto user = directory_.FindUser(std::to_string(key->user_id));
      if (!user.ok()) return user.status();
      found = Identity{*key, *user};
    }
    std::lock_guard lock(mu_);
    if (cache_.size() > 100000) cache_.clear();  // bound memory under key-guessing
    cache_.insert_or_assign(hash, Entry{found, now});
  }
  if (!found.ok()) return found.status();
  if (found->key.revoked_at) return Status::Invalid("this tollgate key has been revoked");
  if (!found->key.UsableAt(now)) return Status::Invalid("this tollgate key has expired");
  if (found->user.disabled) return Status::Invalid("the user of this tollgate key is disabled");
  return found;
}

Result<User> Authenticator::ResolveEndUser(const std::string& who, bool auto_create, const BudgetDefaults& defaults) {
  auto user = directory_.FindUser(who);
  if (user.ok() || user.status().code() != Status::Code::kNotFound || !auto_create) return user;
  NewUser u;
  u.name = who;
  u.external_id = who;
  auto created = directory_.CreateUser(u, defaults, clock_.Now());
  if (created.ok() || created.status().code() != Status::Code::kConflict) return created;
  return directory_.FindUser(who);  // another instance created it first
}

}  // namespace tollgate
