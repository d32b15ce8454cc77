#include "budget/directory.h"

namespace tollgate {

BudgetSettings SettingsFromDefaults(const BudgetDefaults& d, int64_t user_id, Timestamp now) {
  BudgetSettings s;
  s.user_id = user_id;
  s.limit = d.limit;
  s.period = d.period;
  s.custom_period_days = d.custom_period_days;
  s.period_anchor = now;
  s.timezone = d.timezone;
  s.enforcement = d.enforcement;
  s.yellow = d.yellow;
  s.orange = d.orange;
  s.red = d.red;
  s.budget_visible = d.budget_visible;
  s.can_modify_limit = d.can_modify_limit;
  s.max_self_limit = d.max_self_limit;
  s.can_reset = d.can_reset;
  return s;
}

}  // namespace tollgate
