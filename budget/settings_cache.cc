#include "budget/settings_cache.h"

namespace tollgate {

Result<UserBudget> SettingsCache::Get(int64_t user_id) {
  Timestamp now = clock_.Now();
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(user_id);
    if (it != entries_.end() && now - it->second.fetched_at < ttl_ && now < it->second.budget.window.end) {
      return it->second.budget;
    }
  }
  auto settings = directory_.GetSettings(user_id);
  if (!settings.ok()) return settings.status();
  UserBudget b{*settings, CurrentWindow(settings->period, settings->custom_period_days, settings->timezone,
                                        settings->period_anchor, now)};
  std::lock_guard lock(mu_);
  entries_.insert_or_assign(user_id, Entry{b, now});
  return b;
}

void SettingsCache::Invalidate(int64_t user_id) {
  std::lock_guard lock(mu_);
  entries_.erase(user_id);
}

}  // namespace tollgate
