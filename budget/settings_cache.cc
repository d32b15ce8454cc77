#include "budget/settings_cache.h"

namespace tollgate {

namespace {
// A rollover reloads at once.
bool WindowOpen(const UserBudget& b, Timestamp now) { return now < b.window.end; }
// What a refusal tells the caller: the limit and when it resets.
void FillAdmission(const UserBudget& b, Admission* a) {
  a->limit = b.settings.limit;
  a->next_reset = b.window.end;
}
}  // namespace

Result<UserBudget> SettingsCache::Get(int64_t user_id) {
  return cache_.Get(
      user_id,
      [&]() -> Result<UserBudget> {
        auto settings = directory_.GetSettings(user_id);
        if (!settings.ok()) return settings.status();
        return UserBudget{*settings,
                          CurrentWindow(settings->period, settings->custom_period_days,
                                        settings->timezone, settings->period_anchor, clock_.Now())};
      },
      WindowOpen);
}

std::optional<UserBudget> SettingsCache::Peek(int64_t user_id, bool stale_ok) {
  return cache_.Peek(user_id, WindowOpen, stale_ok);
}

void SettingsCache::Invalidate(int64_t user_id) { cache_.Erase(user_id); }

std::optional<UserBudget> BudgetForAdmission(SettingsCache& settings, int64_t user_id,
                                             Admission* a) {
  auto budget = settings.Get(user_id);
  if (!budget.ok()) {
    a->refusal = Refusal::kUnavailable;
    a->message = budget.status().message();
    return std::nullopt;
  }
  FillAdmission(*budget, a);
  return *budget;
}

std::optional<UserBudget> CachedBudgetForAdmission(SettingsCache& settings, int64_t user_id,
                                                   Admission* a) {
  auto budget = settings.Peek(user_id);
  if (budget) FillAdmission(*budget, a);
  return budget;
}

}  // namespace tollgate
