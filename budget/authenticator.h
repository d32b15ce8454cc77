// Turns a presented tollgate key into an identity (key + user), and names the end
// user for act_as_user keys. Lookups are cached for at most `ttl` so a revocation or
// a disabled user is seen by every instance within that time.
#pragma once

#include <chrono>

#include "budget/directory.h"
#include "budget/ttl_cache.h"

namespace tollgate {

// The key a caller presents, as each SDK sends it: "Authorization: Bearer tg-..." or
// Anthropic's "x-api-key: tg-...". Empty when neither is there.
std::string PresentedKey(const std::string& authorization, const std::string& x_api_key);

struct Identity {
  ApiKey key;
  User user;  // the key's owner
};

class Authenticator {
 public:
  Authenticator(Directory& directory, const Clock& clock,
                std::chrono::milliseconds ttl = std::chrono::seconds(1))
      : directory_(directory), clock_(clock), cache_(clock, ttl) {}

  // NotFound for an unknown key; Invalid("...revoked/expired/disabled") for one that
  // may not be used; Unavailable when the directory cannot be reached.
  Result<Identity> Authenticate(const std::string& secret);
  // The same from the cache alone (an event loop's thread): nullopt when the key is
  // not cached, or is due for a reload.
  std::optional<Result<Identity>> AuthenticateCached(const std::string& secret);

  // The user an act_as_user key names (id, name or external id); created with the
  // user defaults on first sight when `auto_create`.
  Result<User> ResolveEndUser(const std::string& who, bool auto_create,
                              const BudgetDefaults& defaults);

 private:
  Result<Identity> Usable(const Identity& found) const;

  Directory& directory_;
  const Clock& clock_;
  // By key hash. An unknown key is cached as an identity with id 0, so guessing keys
  // costs one lookup per second per guess at most.
  TtlCache<std::string, Identity> cache_;
};

}  // namespace tollgate
