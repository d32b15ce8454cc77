// One reservation rule, run against every place that decides it: PlanReservation (C++),
// the gate's Lua script on a real Redis (a worker's reservation, and the event loop's
// with budget leases on), and the Postgres fallback's SQL on a real Postgres. Each case
// gives the state (limit, spend, holds) and the request, and the decision and amounts
// every implementation must reach, so that they cannot drift apart.
#include <gtest/gtest.h>

#include <future>
#include <optional>

#include "budget/fake_directory.h"
#include "budget/ledger.h"
#include "budget/pg_directory.h"
#include "budget/pg_gate.h"
#include "budget/redis_gate.h"
#include "net/event_server.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kPerToken = 1'000;  // nanos per output token

struct RuleCase {
  const char* name;
  int64_t limit, spend, held, input_cost;
  std::optional<int64_t> max_tokens;  // none: the default cap, which may be clamped
  bool clamp;
  bool admitted;
  int64_t amount;                     // reserved, when admitted
  std::optional<int64_t> clamped;     // the cap sent upstream, when lowered
};

// Default cap 1,000 tokens, clamp floor 100.
const RuleCase kCases[] = {
    {"fits to the nano", 1'000'000, 0, 0, 1'000, 999, true, true, 1'000'000, {}},
    {"one nano over", 1'000'000, 0, 0, 1'001, 999, true, false, 0, {}},
    {"spend and holds count", 1'000'000, 400'000, 300'000, 1'000, 299, true, true, 300'000, {}},
    {"one token over with them", 1'000'000, 400'000, 300'000, 1'000, 300, true, false, 0, {}},
    {"an unset cap is clamped", 1'000'000, 300'000, 200'000, 1'000, {}, true, true, 500'000, 499},
    {"never below the floor", 1'000'000, 900'000, 50'000, 1'000, {}, true, false, 0, {}},
    {"no clamp when it is off", 1'000'000, 300'000, 200'000, 1'000, {}, false, false, 0, {}},
    {"no clamp when the request names a cap", 1'000'000, 300'000, 200'000, 1'000, 999, true,
     false, 0, {}},
    {"the default cap when it fits", 10'000'000, 0, 0, 1'000, {}, true, true, 1'001'000, {}},
    {"free fits an exhausted budget", 1'000'000, 1'000'000, 0, 0, 0, true, true, 0, {}},
    {"spend past a lowered limit", 1'000'000, 1'200'000, 0, 0, 1, true, false, 0, {}},
    {"a cap past any amount", 1'000'000, 0, 0, 1'000, 999'999'999'999'999'999, true, false, 0, {}},
    {"an input past any amount", 1'000'000, 0, 0, -1, 1, true, false, 0, {}},
};

ReserveRequest RequestOf(const RuleCase& c, int64_t user, const std::string& id) {
  return ReserveRequest{.user_id = user,
                        .request_id = id,
                        .input_cost = Money::FromNanos(c.input_cost),
                        .output_rate = TokenRate::FromNanosPerMillion(kPerToken * 1'000'000),
                        .max_output_tokens = c.max_tokens,
                        .default_output_cap = 1'000,
                        .clamp = c.clamp,
                        .min_output_tokens = 100};
}

void ExpectDecision(const RuleCase& c, bool admitted, int64_t amount,
                    std::optional<int64_t> clamped, const char* where) {
  EXPECT_EQ(admitted, c.admitted) << where << ": " << c.name;
  if (!c.admitted || !admitted) return;
  EXPECT_EQ(amount, c.amount) << where << ": " << c.name;
  EXPECT_EQ(clamped, c.clamped) << where << ": " << c.name;
}

TEST(ReservationRule, PlanReservation) {
  for (const RuleCase& c : kCases) {
    auto plan = PlanReservation(RequestOf(c, 1, "r"), Money::FromNanos(c.limit - c.spend - c.held));
    ExpectDecision(c, plan.has_value(), plan ? plan->amount.nanos() : 0,
                   plan ? plan->clamped_max_tokens : std::nullopt, "C++");
  }
}

// The Lua script, through RedisGate: the counter built from a ledger holding `spend`,
// `held` already reserved by another request.
class ReservationRuleInRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = testing::TestRedis(0, 8);
    ASSERT_TRUE(redis_);
    counters_ = std::make_unique<RedisCounters>(*redis_, ledger_, clock_, metrics_, 0ms);
  }
  // A user in the case's state; returns their id.
  int64_t UserIn(const RuleCase& c, RedisGate& gate, SettingsCache& settings) {
    BudgetDefaults d;
    d.limit = Money::FromNanos(c.limit);
    int64_t user = directory_.CreateUser({.name = "u" + RandomHex(4)}, d, clock_.Now())->id;
    Window w = settings.Get(user)->window;
    ledger_.Append({.request_id = "spent-" + RandomHex(6),
                    .user_id = user,
                    .started_at = clock_.Now(),
                    .cost = Money::FromNanos(c.spend),
                    .window = w});
    if (c.held > 0) {
      ReserveRequest other{.user_id = user,
                           .request_id = "other-" + RandomHex(6),
                           .input_cost = Money::FromNanos(c.held),
                           .max_output_tokens = 0};
      // Held whatever the limit says: reserved while the limit is out of the way.
      BudgetSettings s = *directory_.GetSettings(user);
      s.limit = Money::FromNanos(Money::kMaxNanos);
      directory_.PutSettings(s, "t");
      settings.Invalidate(user);
      EXPECT_TRUE(gate.Reserve(other).allowed()) << c.name;
      s.limit = Money::FromNanos(c.limit);
      directory_.PutSettings(s, "t");
      settings.Invalidate(user);
      EXPECT_TRUE(settings.Get(user).ok());
    }
    return user;
  }
  ManualClock clock_{testing::At("2026-11-20T10:00:00Z")};
  FakeDirectory directory_{static_cast<int64_t>(std::stoull(RandomHex(6), nullptr, 16)) + 1000};
  FakeLedger ledger_;
  Metrics metrics_;
  std::unique_ptr<HiredisPool> redis_;
  std::unique_ptr<RedisCounters> counters_;
};

TEST_F(ReservationRuleInRedis, AWorkersReservation) {
  SettingsCache settings(directory_, clock_, 0ms);
  RedisGate gate(*redis_, settings, *counters_, clock_, metrics_, 60s);
  for (const RuleCase& c : kCases) {
    int64_t user = UserIn(c, gate, settings);
    Admission a = gate.Reserve(RequestOf(c, user, "case"));
    ExpectDecision(c, a.allowed(), a.held.nanos(), a.clamped_max_tokens, "Lua (worker)");
    if (!a.allowed()) {
      EXPECT_EQ(a.refusal, Refusal::kBudget) << c.name;
    }
  }
}

TEST_F(ReservationRuleInRedis, TheEventLoopWithLeases) {
  EventServer loop(ServerTuning{.worker_threads = 2});
  ASSERT_GT(loop.Start("127.0.0.1", 0), 0);
  auto address = ParseRedisUrl(testing::RequiredEnv("TOLLGATE_TEST_REDIS_URL"));
  HiredisAsync async(*address, loop, 2000ms);
  SettingsCache settings(directory_, clock_, 1h);
  RedisGate gate(*redis_, settings, *counters_, clock_, metrics_, 60s);
  gate.set_leases(8);
  gate.set_async(&async, &loop);
  for (const RuleCase& c : kCases) {
    int64_t user = UserIn(c, gate, settings);
    // Asked of the loop first (ReserveThroughLoop), decided on this thread when the loop
    // leaves it (a counter to build, a cap to clamp, a refusal to word).
    Admission a = gate.Reserve(RequestOf(c, user, "case"));
    ExpectDecision(c, a.allowed(), a.held.nanos(), a.clamped_max_tokens, "Lua (loop)");
  }
  loop.Stop();
}

// The Postgres fallback: spend from ledger rows, holds from budget_holds.
TEST(ReservationRuleInPostgres, TheFallbacksSql) {
  auto pool = testing::FreshMigratedPool(4);
  ASSERT_TRUE(pool);
  PgDirectory directory(*pool);
  ManualClock clock(testing::At("2026-11-20T10:00:00Z"));
  SettingsCache settings(directory, clock, 0ms);
  PgGate gate(*pool, settings, clock, 60s);
  for (const RuleCase& c : kCases) {
    BudgetDefaults d;
    d.limit = Money::FromNanos(c.limit);
    int64_t user = directory.CreateUser({.name = "u" + RandomHex(4)}, d, clock.Now())->id;
    Window w = settings.Get(user)->window;
    ASSERT_TRUE(pool->Run([&](pqxx::connection& conn) {
                      pqxx::work t(conn);
                      testing::InsertLedgerRow(t, "spent-" + RandomHex(6), user, w.start,
                                               c.spend, w.start);
                      if (c.held > 0)
                        t.exec_params(
                            "INSERT INTO budget_holds (hold_id, user_id, amount_nanos,"
                            " expires_at) VALUES ($1, $2, $3, now() + interval '1 hour')",
                            "other-" + RandomHex(6), user, c.held);
                      t.commit();
                    }).ok());
    Admission a = gate.Reserve(RequestOf(c, user, "case-" + RandomHex(6)));
    ExpectDecision(c, a.allowed(), a.held.nanos(), a.clamped_max_tokens, "SQL");
  }
}

}  // namespace
}  // namespace tollgate
