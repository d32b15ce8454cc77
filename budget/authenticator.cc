#include "budget/authenticator.h"

#include <strings.h>

#include "budget/keys.h"

namespace tollgate {

std::string PresentedKey(const std::string& authorization, const std::string& x_api_key) {
  if (authorization.size() > 7 && strncasecmp(authorization.c_str(), "Bearer ", 7) == 0)
    return authorization.substr(7);
  return x_api_key;
}

Result<Identity> Authenticator::Authenticate(const std::string& secret) {
  if (!LooksLikeTollgateKey(secret)) return Status::NotFound("invalid tollgate key");
  auto found = cache_.Get(HashKey(secret), [&]() -> Result<Identity> {
    auto key = directory_.FindKeyByHash(HashKey(secret));
    if (!key.ok()) {
      if (key.status().code() == Status::Code::kNotFound) return Identity{};  // cached as unknown
      return key.status();  // outages are not cached
    }
    auto user = directory_.FindUser(std::to_string(key->user_id));
    if (!user.ok()) return user.status();
    return Identity{*key, *user};
  });
  if (!found.ok()) return found.status();
  return Usable(*found);
}

std::optional<Result<Identity>> Authenticator::AuthenticateCached(const std::string& secret) {
  if (!LooksLikeTollgateKey(secret)) return Status::NotFound("invalid tollgate key");
  auto found = cache_.Peek(HashKey(secret));
  if (!found) return std::nullopt;
  return Usable(*found);
}

Result<Identity> Authenticator::Usable(const Identity& found) const {
  if (found.key.id == 0) return Status::NotFound("invalid tollgate key");
  if (found.key.revoked_at) return Status::Invalid("this tollgate key has been revoked");
  if (!found.key.UsableAt(clock_.Now())) return Status::Invalid("this tollgate key has expired");
  if (found.user.disabled) return Status::Invalid("the user of this tollgate key is disabled");
  return found;
}

Result<User> Authenticator::ResolveEndUser(const std::string& who, bool auto_create,
                                           const BudgetDefaults& defaults) {
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
