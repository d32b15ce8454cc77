// Turns a presented tollgate key into an identity (key + user), and names the end
// user for act_as_user keys. Lookups are cached for at most `ttl` so a revocation or
// a disabled user is seen by every instance within that time.
#pragma once

#include <chrono>
#include <mutex>
#include <unordered_map>

#include "budget/directory.h"

namespace tollgate {

struct Identity {
  ApiKey key;
  User user;  // the key's owner
};

class Authenticator {
 public:
  Authenticator(Directory& directory, const Clock& clock, std::chrono::milliseconds ttl = std::chrono::seconds(1))
      : directory_(directory), clock_(clock), ttl_(ttl) {}

  // NotFound for an unknown key; Invalid("...revoked/expired/disabled") for one that
  // may not be used; Unavailable when the directory cannot be reached.
  Result<Identity> Authenticate(const std::string& secret);

  // The user an act_as_user key names (id, name or external id); created with the
  // user defaults on first sight when `auto_create`.
  Result<User> ResolveEndUser(const std::string& who, bool auto_create, const BudgetDefaults& defaults);

 private:
  struct Entry {
    Result<Identity> identity;
    Timestamp fetched_at;
  };
  Directory& directory_;
  const Clock& clock_;
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;  // by key hash
};

}  // namespace tollgate
