// Budget settings on the hot path: read from the directory at most once per `ttl`
// per user and instance, so a change made anywhere is enforced everywhere within
// that time. The current window is cached with them until it ends.
#pragma once

#include <chrono>

#include "budget/directory.h"
#include "budget/gate.h"
#include "budget/ttl_cache.h"
#include "budget/window.h"

namespace tollgate {

struct UserBudget {
  BudgetSettings settings;
  Window window;
};

class SettingsCache {
 public:
  SettingsCache(Directory& directory, const Clock& clock,
                std::chrono::milliseconds ttl = std::chrono::seconds(1))
      : directory_(directory), clock_(clock), cache_(clock, ttl) {}

  Result<UserBudget> Get(int64_t user_id);
  // What Get would return without asking the directory, or nullopt (TtlCache::Peek).
  std::optional<UserBudget> Peek(int64_t user_id, bool stale_ok = false);
  void Invalidate(int64_t user_id);

 private:
  Directory& directory_;
  const Clock& clock_;
  TtlCache<int64_t, UserBudget> cache_;
};

// The start of every gate's decision: the user's budget, with the admission's limit
// and reset time filled in; nullopt (and `a` refused as Unavailable) when unreadable.
std::optional<UserBudget> BudgetForAdmission(SettingsCache& settings, int64_t user_id,
                                             Admission* a);
// The same from the cache alone, for the event loop: nullopt when not cached.
std::optional<UserBudget> CachedBudgetForAdmission(SettingsCache& settings, int64_t user_id,
                                                   Admission* a);

}  // namespace tollgate
