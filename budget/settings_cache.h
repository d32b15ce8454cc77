// Budget settings on the hot path: read from the directory at most once per `ttl`
// per user and instance, so a change made anywhere is enforced everywhere within
// that time. The current window is cached with them until it ends.
#pragma once

#include <chrono>
#include <mutex>
#include <unordered_map>

#include "budget/directory.h"
#include "budget/window.h"

namespace tollgate {

struct UserBudget {
  BudgetSettings settings;
  Window window;
};

class SettingsCache {
 public:
  SettingsCache(Directory& directory, const Clock& clock, std::chrono::milliseconds ttl = std::chrono::seconds(1))
      : directory_(directory), clock_(clock), ttl_(ttl) {}

  Result<UserBudget> Get(int64_t user_id);
  void Invalidate(int64_t user_id);

 private:
  struct Entry {
    UserBudget budget;
    Timestamp fetched_at;
  };
  Directory& directory_;
  const Clock& clock_;
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<int64_t, Entry> entries_;
};

}  // namespace tollgate
