// The user half of the budget REST API on the side port, authenticated with the
// user's own tollgate key. A user only ever sees and changes their own budget.
#pragma once

#include "admin/api_support.h"

namespace tollgate {

// GET /api/v1/budget/status, GET|PUT /api/v1/budget/settings, POST /api/v1/budget/reset,
// GET /api/v1/budget/usage/breakdown, GET /api/v1/budget/usage/history.
void RegisterUserApi(EventServer& server, const BudgetApiDependencies& deps);

// The status document: every amount as *_usd and *_nanos.
nlohmann::json StatusJson(int64_t user_id, const BudgetSettings& s, const SpendState& state,
                          Timestamp now);
// One ledger row as the history shows it.
nlohmann::json HistoryJson(const LedgerRow& row);
// Spend and tokens by provider and model, with the totals.
nlohmann::json BreakdownJson(const std::vector<UsageGroup>& groups, Timestamp from, Timestamp to);

}  // namespace tollgate
