// What the budget REST API needs, and what every endpoint shares: who is calling,
// JSON bodies, query parameters, money in JSON and the one error shape.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "budget/authenticator.h"
#include "budget/redis_gate.h"
#include "budget/settings_cache.h"
#include "budget/usage_queries.h"
#include "config/pricing.h"
#include "config/text.h"
#include "net/event_server.h"

namespace tollgate {

class PriceOverrides;

struct BudgetApiDependencies {
  const Config& config;
  const Clock& clock;
  Directory& directory;
  Authenticator& authenticator;
  SettingsCache& settings;
  // Spend and holds in flight for the user in the given window (the gate's counters).
  std::function<Result<SpendState>(int64_t user_id, const Window& window)> spend_state;
  UsageQueries* usage = nullptr;              // breakdown, history, overview, export
  const PricingTable* pricing = nullptr;      // the price list
  PriceOverrides* price_overrides = nullptr;  // admin price overrides
};

// Who is calling. `actor` is recorded with every change they make.
struct Caller {
  bool admin = false;
  std::optional<User> user;  // the key's owner; none for the bootstrap admin token
  std::string actor;         // "user:7", "admin:1" or "admin-token"
};

// Compares without leaking, through timing, how much of a token matched.
bool SameSecret(const std::string& a, const std::string& b);

// The caller, or nullopt with a 401/503 already written to `res`.
std::optional<Caller> Authenticate(const BudgetApiDependencies& deps, const httplib::Request& req,
                                   httplib::Response& res);
// As Authenticate, and 403 for anyone who is not an admin.
std::optional<Caller> AuthenticateAdmin(const BudgetApiDependencies& deps,
                                        const httplib::Request& req, httplib::Response& res);

// {"error":{"code","message"}} with the status that fits: kInvalid 400 (with "field"
// when the message starts with one), kForbidden 403, kNotFound 404, kConflict 409,
// kUnavailable 503, anything else 500.
void SendStatusError(httplib::Response& res, const Status& s);
void SendJson(httplib::Response& res, const nlohmann::json& j, int status = 200);

// The request body as a JSON object, or nullopt with a 400 already written.
std::optional<nlohmann::json> ReadJsonObject(const httplib::Request& req, httplib::Response& res);

// Query parameters: absent gives the default; a bad value is kInvalid naming the
// parameter and the rule.
Result<int64_t> IntParam(const httplib::Request& req, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max);
Result<std::optional<Timestamp>> TimeParam(const httplib::Request& req, const std::string& name);
// Valid UTF-8 without control characters (IsCleanText), at most `max_bytes`.
Result<std::string> TextParam(const httplib::Request& req, const std::string& name,
                              size_t max_bytes = 200);

// Every amount twice: name_usd (decimal string) and name_nanos (integer).
void PutMoney(nlohmann::json& j, const std::string& name, Money m);

}  // namespace tollgate
