// The user half of the budget REST API on the side port, authenticated with the
// user's own tollgate key. A user only ever sees their own data.
#pragma once

#include <functional>

#include "budget/authenticator.h"
#include "budget/redis_gate.h"
#include "budget/settings_cache.h"
#include "net/http_server.h"

namespace tollgate {

struct UserApiDependencies {
  Authenticator& authenticator;
  SettingsCache& settings;
  std::function<Result<SpendState>(int64_t user_id)> spend_state;  // spend and holds now
  const Clock& clock;
};

// GET /api/v1/budget/status
void RegisterUserApi(httplib::Server& server, const UserApiDependencies& deps);

// The status document (exposed for tests): every amount as *_usd and *_nanos.
nlohmann::json StatusJson(int64_t user_id, const BudgetSettings& s, const SpendState& state,
                          Timestamp now);

}  // namespace tollgate
