#include <gtest/gtest.h>

#include <thread>

#include "budget/fake_redis.h"
#include "budget/ledger.h"
#include "budget/migrations.h"
#include "budget/pg_directory.h"
#include "budget/pg_gate.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;

// Redis dies and comes back while Postgres stays: real Postgres, real Redis behind a
// switch that makes every command fail.
class GateFallback : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = testing::FreshMigratedPool(8);
    ASSERT_TRUE(pool_);
    directory_ = std::make_unique<PgDirectory>(*pool_);
    BudgetDefaults d;
    d.limit = Money::FromNanos(1'000'000);
    user_ = directory_->CreateUser({.name = "f"}, d, clock_.Now())->id;
    real_redis_ = testing::TestRedis(5, 16);
    ASSERT_TRUE(real_redis_);
    std::vector<std::string> del = RedisCounters::HoldKeys(user_);
    del.insert(del.begin(), {"DEL", RedisCounters::SpendKey(user_, clock_.Now())});
    real_redis_->Command(del);
    redis_ = std::make_unique<FaultyRedis>(*real_redis_);
    settings_ = std::make_unique<SettingsCache>(*directory_, clock_, 0ms);
    sums_ = std::make_unique<PgLedgerSums>(*pool_);
    counters_ = std::make_unique<RedisCounters>(*redis_, *sums_, clock_, metrics_, 0ms);
    ledger_ = std::make_unique<PgLedger>(*pool_, metrics_, counters_.get(), LedgerOptions{});
    redis_gate_ =
        std::make_unique<RedisGate>(*redis_, *settings_, *counters_, clock_, metrics_, 60s);
    pg_gate_ = std::make_unique<PgGate>(*pool_, *settings_, clock_, 60s);
  }
  ReserveRequest Request(std::string id) {
    return ReserveRequest{.user_id = user_,
                          .request_id = std::move(id),
                          .input_cost = Money::FromNanos(1000),
                          .output_rate = TokenRate::FromNanosPerMillion(1'000'000'000),
                          .max_output_tokens = 99};
  }
  // The request's ledger row, as the proxy writes it when the request ends.
  void Record(const std::string& id, Money cost, const Admission& a) {
    UsageRecord r;
    r.window = a.window;
    r.hold_id = a.hold_id;
    r.request_id = id;
    r.user_id = user_;
    r.provider = "deepseek";
    r.model = "m";
    r.started_at = clock_.Now();
    r.cost = cost;
    r.status = 200;
    ledger_->Append(r);
    ledger_->Flush();
  }

  ManualClock clock_{testing::At("2026-11-20T10:00:00Z")};
  Metrics metrics_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<PgDirectory> directory_;
  std::unique_ptr<HiredisPool> real_redis_;
  std::unique_ptr<FaultyRedis> redis_;
  std::unique_ptr<SettingsCache> settings_;
  std::unique_ptr<PgLedgerSums> sums_;
  std::unique_ptr<RedisCounters> counters_;
  std::unique_ptr<PgLedger> ledger_;
  std::unique_ptr<RedisGate> redis_gate_;
  std::unique_ptr<PgGate> pg_gate_;
  int64_t user_ = 0;
};

TEST_F(GateFallback, FailClosedRefusesWhileRedisIsDown) {
  FallbackGate gate(*redis_gate_, nullptr, *redis_, clock_);
  redis_->set_down(true);
  Admission a = gate.Reserve(Request("x"));
  EXPECT_EQ(a.refusal, Refusal::kUnavailable);
  EXPECT_NE(a.message.find("fail_closed"), std::string::npos);
}

TEST_F(GateFallback, PostgresKeepsTheSameInvariantUnderConcurrency) {
  FallbackGate gate(*redis_gate_, pg_gate_.get(), *redis_, clock_);
  redis_->set_down(true);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        Admission a = gate.Reserve(Request("p" + std::to_string(t) + "_" + std::to_string(i)));
        if (a.allowed()) {
          EXPECT_EQ(a.hold_id.rfind("pg/", 0), 0u);
          ++allowed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 10) << "1,000,000 / 100,000 per reservation";
}

TEST_F(GateFallback, SpendDuringTheOutageCountsWhenRedisReturns) {
  FallbackGate gate(*redis_gate_, pg_gate_.get(), *redis_, clock_);
  // Redis up: a counter exists and holds 0.
  Admission first = gate.Reserve(Request("r0"));
  ASSERT_TRUE(first.allowed());
  gate.Settle(user_, first.hold_id, Money());
  Record("r0", Money(), first);
  // Redis down: 600,000 spent through the Postgres gate and written to the ledger, whose
  // batch cannot reach the counter yet.
  redis_->set_down(true);
  Admission during = gate.Reserve(Request("r1"));
  ASSERT_TRUE(during.allowed());
  gate.Settle(user_, during.hold_id, Money::FromNanos(600'000));
  uint64_t applied = metrics_.Get(Counter::kLedgerBatchesApplied);
  Record("r1", Money::FromNanos(600'000), during);
  EXPECT_EQ(metrics_.Get(Counter::kLedgerBatchesApplied), applied);
  // Redis back (after the 1 s it is skipped): the ledger applies the batch it kept, and
  // the counter, stale by the outage, does not forget the 600,000.
  redis_->set_down(false);
  for (int i = 0; i < 100 && metrics_.Get(Counter::kLedgerBatchesApplied) == applied; ++i)
    std::this_thread::sleep_for(50ms);  // bounded: the writer retries every second
  clock_.Advance(1100ms);
  Admission after = gate.Reserve(Request("r2"));
  ASSERT_TRUE(after.allowed()) << "refusal " << static_cast<int>(after.refusal) << " "
                               << after.message << " spend " << after.spend.nanos();
  EXPECT_EQ(after.hold_id.find("pg/"), std::string::npos) << "served by Redis again";
  EXPECT_EQ(after.spend.nanos(), 600'000) << "the batch kept while Redis was down, applied";
  int more = 0;
  while (gate.Reserve(Request("m" + std::to_string(more))).allowed()) ++more;
  EXPECT_EQ(more, 3) << "600,000 spent + 4 holds of 100,000 fill 1,000,000";
}

}  // namespace
}  // namespace tollgate
