#include "budget/redis_gate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <optional>
#include <thread>

#include "budget/fake_directory.h"
#include "budget/ledger.h"
#include "net/event_server.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;

// The gate against a real Redis (scripts/test starts one).
class RedisGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = testing::TestRedis(0, 64);
    ASSERT_TRUE(redis_);
    BudgetDefaults d;
    d.limit = Money::FromNanos(1'000'000);
    auto u = directory_.CreateUser({.name = "u"}, d, clock_.Now());
    user_ = u->id;
    settings_ = std::make_unique<SettingsCache>(directory_, clock_, 0ms);
    counters_ = std::make_unique<RedisCounters>(*redis_, ledger_, clock_, metrics_, 0ms);
    ledger_.set_counters(counters_.get());
    gate_ = std::make_unique<RedisGate>(*redis_, *settings_, *counters_, clock_, metrics_, 60s);
  }
  // What the proxy does when a request it admitted ends: its ledger row, which (the
  // ledger applying it at once here) adds the cost and releases the hold.
  void Settle(const Admission& a, int64_t cost, int64_t user = 0) {
    ledger_.Append({.request_id = "row-" + RandomHex(6),
                    .user_id = user ? user : user_,
                    .started_at = clock_.Now(),
                    .cost = Money::FromNanos(cost),
                    .window = a.window,
                    .global_window = a.global_window,
                    .hold_id = a.hold_id});
  }
  ReserveRequest Request(int64_t max_output, std::string id) {
    return ReserveRequest{
        .user_id = user_,
        .request_id = std::move(id),
        .input_cost = Money::FromNanos(1000),
        .output_rate = TokenRate::FromNanosPerMillion(1'000'000'000),  // 1,000 nanos per token
        .max_output_tokens = max_output};
  }
  // The gate as the proxy's event loop has it: its own Redis connection on a running
  // loop, the fixture's user's settings cached; `leases` as set_leases takes it.
  struct LoopGate {
    EventServer loop{ServerTuning{.worker_threads = 2}};
    std::optional<HiredisAsync> async;
    std::optional<SettingsCache> cached;
    std::optional<RedisGate> gate;
    ~LoopGate() { loop.Stop(); }
  };
  std::unique_ptr<LoopGate> StartLoopGate(int leases = 0) {
    auto g = std::make_unique<LoopGate>();
    EXPECT_GT(g->loop.Start("127.0.0.1", 0), 0);
    auto address = ParseRedisUrl(testing::RequiredEnv("TOLLGATE_TEST_REDIS_URL"));
    g->async.emplace(*address, g->loop, 2000ms);
    g->cached.emplace(directory_, clock_, 1h);
    g->gate.emplace(*redis_, *g->cached, *counters_, clock_, metrics_, 60s);
    g->gate->set_leases(leases);
    g->gate->set_async(&*g->async, &g->loop);
    EXPECT_TRUE(g->cached->Get(user_).ok());
    return g;
  }
  // The answers to reservations made in one loop task; `sync` counts those given before
  // their call returned (admitted against a lease, without Redis).
  struct Batch {
    std::vector<std::optional<Admission>> answers;
    size_t sync = 0;
  };
  // Reserves Request(9, id) for each id in one loop task, then waits for every answer
  // and for Redis to have done what the batch asked, and a lease taken on its reply.
  Batch ReserveBatch(LoopGate& g, std::vector<std::string> ids) {
    auto out = std::make_shared<Batch>();
    out->answers.resize(ids.size());
    auto left = std::make_shared<size_t>(ids.size() + 1);
    auto all = std::make_shared<std::promise<void>>();
    auto done = all->get_future();
    auto one_done = [left, all] {
      if (--*left == 0) all->set_value();
    };
    g.loop.Post([&, ids, out, one_done] {
      for (size_t i = 0; i < ids.size(); ++i) {
        auto returned = std::make_shared<bool>(false);
        ASSERT_TRUE(g.gate->ReserveNoWait(Request(9, ids[i]), [returned, out, i, one_done](auto a) {
          out->answers[i] = std::move(a);
          if (!*returned) ++out->sync;
          one_done();
        }));
        *returned = true;
      }
      g.loop.Post([&g, one_done] { RoundTrip(g, [&g, one_done] { RoundTrip(g, one_done); }); });
    });
    EXPECT_EQ(done.wait_for(10s), std::future_status::ready);
    return *out;
  }
  // Settles each of `admitted` at `cost`.
  void SettleAll(const std::vector<Admission>& admitted, int64_t cost) {
    for (const Admission& a : admitted) Settle(a, cost);
  }
  // On the loop: `then` runs on it once Redis has answered what was sent before.
  static void RoundTrip(LoopGate& g, std::function<void()> then) {
    g.async->Command({"PING"}, [&g, then](Result<RedisReply>) { g.loop.Post(then); });
    g.async->Flush();
  }
  ManualClock clock_{Timestamp(std::chrono::microseconds(1'794'830'400'000'000)) +
                     std::chrono::hours(24 * 365 * 3)};
  // Test processes share one Redis: a random id space per test keeps their keys apart.
  FakeDirectory directory_{static_cast<int64_t>(std::stoull(RandomHex(6), nullptr, 16)) + 1000};
  FakeLedger ledger_;
  Metrics metrics_;
  std::unique_ptr<HiredisPool> redis_;
  std::unique_ptr<RedisCounters> counters_;
  std::unique_ptr<SettingsCache> settings_;
  std::unique_ptr<RedisGate> gate_;
  int64_t user_ = 0;
};

TEST_F(RedisGateTest, ReservesUntilTheLimitAndSettlesTheRealCost) {
  // Each request reserves 1,000 + 99 x 1,000 = 100,000 of 1,000,000.
  std::vector<Admission> held;
  for (int i = 0; i < 10; ++i) {
    Admission a = gate_->Reserve(Request(99, "r" + std::to_string(i)));
    ASSERT_TRUE(a.allowed()) << i << " " << a.message;
    held.push_back(a);
  }
  EXPECT_EQ(gate_->Reserve(Request(99, "r10")).refusal, Refusal::kBudget);
  Settle(held[0], 30'000);
  auto state = gate_->State(user_);
  ASSERT_TRUE(state.ok()) << state.status().message();
  EXPECT_EQ(state->spend.nanos(), 30'000);
  EXPECT_EQ(state->held.nanos(), 900'000);
  Admission after = gate_->Reserve(Request(99, "r11"));
  EXPECT_FALSE(after.allowed()) << "70,000 left is less than 100,000";
  Admission small = gate_->Reserve(Request(50, "r12"));
  EXPECT_TRUE(small.allowed()) << "51,000 fits in 70,000";
}

TEST_F(RedisGateTest, ConcurrentReservationsNeverPassTheLimit) {
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        if (gate_->Reserve(Request(99, "c" + std::to_string(t) + "_" + std::to_string(i)))
                .allowed())
          ++allowed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 10);
}

TEST_F(RedisGateTest, HoldsOfACrashedInstanceExpire) {
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(gate_->Reserve(Request(99, "h" + std::to_string(i))).allowed());
  EXPECT_FALSE(gate_->Reserve(Request(99, "h10")).allowed());
  clock_.Advance(61s);  // nobody settled: the holds lapse
  EXPECT_TRUE(gate_->Reserve(Request(99, "h11")).allowed());
}

TEST_F(RedisGateTest, TheHeldTotalStaysExactThroughSettlesExpiriesAndLateSettles) {
  // Each reservation holds 100,000 (see above).
  Admission early = gate_->Reserve(Request(99, "early"));
  ASSERT_TRUE(early.allowed());
  clock_.Advance(30s);
  std::vector<Admission> live;
  for (int i = 0; i < 3; ++i) live.push_back(gate_->Reserve(Request(99, "l" + std::to_string(i))));
  EXPECT_EQ(gate_->State(user_)->held.nanos(), 400'000);
  clock_.Advance(31s);  // "early" lapses, the others do not
  EXPECT_EQ(gate_->State(user_)->held.nanos(), 300'000) << "a lapsed hold is not counted";
  Admission next = gate_->Reserve(Request(99, "next"));  // clears the lapsed hold
  ASSERT_TRUE(next.allowed());
  auto keys = RedisCounters::HoldKeys(user_);
  EXPECT_EQ(redis_->Command({"GET", keys[0]})->str, "400000");
  EXPECT_EQ(redis_->Command({"ZCARD", keys[1]})->integer, 4);
  // Its owner settling late must not take it off the total a second time.
  Settle(early, 5'000);
  EXPECT_EQ(gate_->State(user_)->held.nanos(), 400'000);
  for (const Admission& a : live) Settle(a, 1'000);
  Settle(next, 1'000);
  auto state = gate_->State(user_);
  EXPECT_EQ(state->held.nanos(), 0);
  EXPECT_EQ(state->spend.nanos(), 5'000 + 4 * 1'000);
  // Nothing left behind, and nothing with an expiry that could lapse under a live hold.
  EXPECT_EQ(redis_->Command({"EXISTS", keys[0], keys[1], keys[2]})->integer, 0);
}

TEST_F(RedisGateTest, ClampsAnUnsetCapAndRebuildsALostCounterFromTheLedger) {
  UsageRecord past;
  past.request_id = "old";
  past.user_id = user_;
  past.started_at = clock_.Now();  // the window starts at the user's creation
  past.cost = Money::FromNanos(600'000);
  ledger_.Append(past);
  redis_->Command({"DEL", RedisCounters::SpendKey(user_, settings_->Get(user_)->window.start)});
  ReserveRequest r = Request(0, "clamp");
  r.max_output_tokens.reset();
  r.default_output_cap = 4096;
  r.min_output_tokens = 100;
  Admission a = gate_->Reserve(r);
  ASSERT_TRUE(a.allowed()) << a.message;
  ASSERT_TRUE(a.clamped_max_tokens.has_value());
  EXPECT_EQ(*a.clamped_max_tokens, 399);  // (1,000,000 - 600,000 - 1,000) / 1,000
  EXPECT_EQ(gate_->State(user_)->spend.nanos(), 600'000);
}

// Found by tests/fuzz/fuzz_spool: a number past int64 (a float) in a pending batch's
// deltas was cast by get<int64_t>(), undefined behaviour; it is no deltas now.
TEST(CounterDeltas, ReadBackAsWrittenAndRefuseNumbersThatAreNotInt64) {
  std::vector<CounterDelta> d = {{7, Window{FromMicros(1), FromMicros(2)}, Money::FromNanos(3)}};
  auto back = DeltasFromJson(DeltasToJson(d));
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ((*back)[0].account, 7);
  EXPECT_EQ((*back)[0].cost.nanos(), 3);
  EXPECT_FALSE(DeltasFromJson("[[7,173300000000001733000000000],[0,1,2,-3]]"));
  EXPECT_FALSE(DeltasFromJson("[[7,1,2,1.5]]"));
  EXPECT_FALSE(DeltasFromJson("[[7,1,2,9223372036854775808]]"));
  EXPECT_TRUE(DeltasFromJson("[[7,1,2,9223372036854775807]]"));
}

// As Redis holds them: an id once, released in parts, gone once released or expired.
TEST(LiveHolds, AnIdIsHeldOnceReleasedInPartsAndForgottenWhenExpired) {
  LiveHolds holds;
  holds.Add(7, "lease", Money::FromNanos(900), 5'000);
  holds.Add(7, "lease", Money::FromNanos(900), 9'000);  // held already: no change
  holds.Add(0, "lease", Money::FromNanos(50), 9'000);   // the global cap's, apart
  holds.Add(7, "nothing", Money(), 9'000);
  holds.Release(7, "lease", Money::FromNanos(300));
  auto live = holds.Live(1'000);
  ASSERT_EQ(live.size(), 2u);
  auto user = std::find_if(live.begin(), live.end(), [](const auto& h) { return h.account == 7; });
  ASSERT_NE(user, live.end());
  EXPECT_EQ(user->amount.nanos(), 600);
  EXPECT_EQ(user->expires_ms, 5'000);
  holds.Release(7, "lease", Money::FromNanos(600));
  holds.Release(7, "unknown", Money::FromNanos(600));
  EXPECT_EQ(holds.size(), 1u);
  holds.Prune(8'999);
  EXPECT_EQ(holds.size(), 1u);
  EXPECT_TRUE(holds.Live(9'000).empty()) << "expired at 9,000";
  EXPECT_EQ(holds.size(), 0u);
}

// Redis restarted empty while requests are in flight: their holds are gone with it, and
// a counter rebuilt from the ledger (which has none of their rows yet) shows room that
// is already promised. The instance places its live holds in the new dataset first.
TEST_F(RedisGateTest, HoldsInFlightArePlacedAgainInARedisRestartedEmpty) {
  auto redis = testing::TestRedis(12, 4);  // a database of this test's own, flushed below
  ASSERT_TRUE(redis);
  redis->Command({"FLUSHDB"});
  RedisCounters counters(*redis, ledger_, clock_, metrics_, 0ms);
  ledger_.set_counters(&counters);
  RedisGate gate(*redis, *settings_, counters, clock_, metrics_, 60s);
  ASSERT_TRUE(counters.RepublishIfNewEpoch().ok());  // the watch's first look: nothing
  // Each holds 1,000 + 499 x 1,000 = 500,000 of 1,000,000.
  Admission a = gate.Reserve(Request(499, "a")), b = gate.Reserve(Request(499, "b"));
  ASSERT_TRUE(a.allowed() && b.allowed());
  ASSERT_FALSE(gate.Reserve(Request(499, "c")).allowed());
  EXPECT_EQ(counters.holds().size(), 2u) << "a refusal leaves no live hold";

  redis->Command({"FLUSHDB"});  // restarted empty: the epoch is gone too
  auto placed = counters.RepublishIfNewEpoch();
  ASSERT_TRUE(placed.ok()) << placed.status().message();
  EXPECT_EQ(*placed, 2u);
  EXPECT_EQ(*counters.RepublishIfNewEpoch(), 0u) << "once per dataset";
  EXPECT_EQ(gate.State(user_)->held.nanos(), 1'000'000);
  EXPECT_FALSE(gate.Reserve(Request(499, "d")).allowed()) << "the room is still promised";

  // A row releases its hold as before, in Redis and here; the room comes back.
  Settle(a, 400'000);
  EXPECT_EQ(counters.holds().size(), 1u);
  auto state = gate.State(user_);
  EXPECT_EQ(state->spend.nanos(), 400'000);
  EXPECT_EQ(state->held.nanos(), 500'000);
  EXPECT_TRUE(gate.Reserve(Request(99, "e")).allowed()) << "100,000 fits in what is left";
  // A hold placed again that its request then reserves anew is held once.
  redis->Command({"FLUSHDB"});
  ASSERT_EQ(*counters.RepublishIfNewEpoch(), 2u);  // b and e
  EXPECT_TRUE(gate.Reserve(Request(99, "e")).allowed());
  EXPECT_EQ(gate.State(user_)->held.nanos(), 600'000);
  ledger_.set_counters(counters_.get());
}

struct RecordingAlerts : AlertSink {
  void Raise(const AlertEvent& e) override { events.push_back(e); }
  std::vector<AlertEvent> events;
};

TEST_F(RedisGateTest, SettlingPastAThresholdRaisesAnAlert) {
  RecordingAlerts alerts;
  RedisGate gate(*redis_, *settings_, *counters_, clock_, metrics_, std::chrono::seconds(60),
                 std::nullopt, &alerts);
  Admission a = gate.Reserve(Request(99, "al1"));
  Settle(a, 400'000);  // 40 % of 1,000,000: GREEN
  Admission b = gate.Reserve(Request(99, "al2"));
  Settle(b, 380'000);  // 78 %: ORANGE
  ASSERT_EQ(alerts.events.size(), 2u);
  EXPECT_EQ(alerts.events[0].level, AlertLevel::kGreen);
  EXPECT_EQ(alerts.events[1].level, AlertLevel::kOrange);
  EXPECT_EQ(alerts.events[1].spend.nanos(), 780'000);
}

TEST_F(RedisGateTest, SoftAndOffEnforcementAllowPastTheLimitAndStillCount) {
  for (Enforcement e : {Enforcement::kSoft, Enforcement::kOff}) {
    BudgetSettings s = *directory_.GetSettings(user_);
    s.enforcement = e;
    directory_.PutSettings(s, "t");
    std::string tag = EnforcementName(e);
    for (int i = 0; i < 20; ++i) {
      Admission a = gate_->Reserve(Request(99, tag + std::to_string(i)));
      ASSERT_TRUE(a.allowed()) << tag;
      Settle(a, 100'000);
    }
  }
  EXPECT_EQ(gate_->State(user_)->spend.nanos(), 40 * 100'000)
      << "spend past the limit is still recorded";
  BudgetSettings s = *directory_.GetSettings(user_);
  s.enforcement = Enforcement::kHard;
  directory_.PutSettings(s, "t");
  EXPECT_EQ(gate_->Reserve(Request(99, "hard")).refusal, Refusal::kBudget);
}

TEST(RedisGateDown, FailsClosedWithUnavailable) {
  ManualClock clock(Timestamp(std::chrono::microseconds(1'794'830'400'000'000)));
  FakeDirectory dir;
  auto u = dir.CreateUser({.name = "x"}, BudgetDefaults{}, clock.Now());
  HiredisPool redis({"127.0.0.1", 1, 0}, 2, 200);
  SettingsCache settings(dir, clock);
  FakeLedger ledger;
  Metrics metrics;
  RedisCounters counters(redis, ledger, clock, metrics, 0ms);
  RedisGate gate(redis, settings, counters, clock, metrics, std::chrono::seconds(60));
  Admission a = gate.Reserve({.user_id = u->id, .request_id = "x", .max_output_tokens = 1});
  EXPECT_EQ(a.refusal, Refusal::kUnavailable);
  EXPECT_GE(metrics.Get(Counter::kRedisErrors), 1u);
}

}  // namespace
}  // namespace tollgate

namespace tollgate {
namespace {

TEST(RedisGateGlobalCap, StopsEveryoneAndReleasesItsHoldWhenAUserIsRefused) {
  // The {global} keys are shared: this test has a database of its own.
  auto redis_pool = testing::TestRedis(3, 8);
  ASSERT_TRUE(redis_pool);
  HiredisPool& redis = *redis_pool;
  redis.Command({"FLUSHDB"});
  ManualClock clock(Timestamp(std::chrono::microseconds(1'794'830'400'000'000)));
  FakeDirectory dir;
  BudgetDefaults rich;
  rich.limit = Money::FromNanos(1'000'000'000);
  BudgetDefaults poor;
  poor.limit = Money::FromNanos(50'000);
  int64_t a = dir.CreateUser({.name = "a"}, rich, clock.Now())->id;
  int64_t b = dir.CreateUser({.name = "b"}, rich, clock.Now())->id;
  int64_t c = dir.CreateUser({.name = "c"}, poor, clock.Now())->id;
  SettingsCache settings(dir, clock, std::chrono::milliseconds(0));
  FakeLedger ledger;
  Metrics metrics;
  RedisCounters counters(redis, ledger, clock, metrics, std::chrono::milliseconds(0));
  ledger.set_counters(&counters);
  RedisGate gate(redis, settings, counters, clock, metrics, std::chrono::seconds(60),
                 GlobalCap{Money::FromNanos(300'000), Period::kDaily});
  auto settle = [&](int64_t user, const Admission& admitted, int64_t cost) {
    ledger.Append({.request_id = "row-" + RandomHex(6),
                   .user_id = user,
                   .started_at = clock.Now(),
                   .cost = Money::FromNanos(cost),
                   .window = admitted.window,
                   .global_window = admitted.global_window,
                   .hold_id = admitted.hold_id});
  };
  auto request = [](int64_t user, std::string id) {
    return ReserveRequest{.user_id = user,
                          .request_id = std::move(id),
                          .input_cost = Money::FromNanos(1000),
                          .output_rate = TokenRate::FromNanosPerMillion(1'000'000'000),
                          .max_output_tokens = 99};
  };
  // The poor user is refused by their own budget: the global hold is given back.
  EXPECT_EQ(gate.Reserve(request(c, "c1")).refusal, Refusal::kBudget);
  Admission a1 = gate.Reserve(request(a, "a1"));
  Admission b1 = gate.Reserve(request(b, "b1"));
  Admission a2 = gate.Reserve(request(a, "a2"));
  EXPECT_TRUE(a1.allowed() && b1.allowed() && a2.allowed());  // 3 x 100,000 = the cap
  Admission b2 = gate.Reserve(request(b, "b2"));
  EXPECT_EQ(b2.refusal, Refusal::kGlobalCap);
  EXPECT_NE(b2.message.find("global cap $0.000300000"), std::string::npos) << b2.message;
  settle(a, a1, 10'000);  // frees 90,000 of the cap: not enough
  EXPECT_EQ(gate.Reserve(request(b, "b3")).refusal, Refusal::kGlobalCap);
  settle(b, b1, 10'000);  // 20,000 spent + 100,000 held
  Admission b4 = gate.Reserve(request(b, "b4"));
  EXPECT_TRUE(b4.allowed());
  EXPECT_EQ(gate.State(a)->spend.nanos(), 10'000);

  // Clamped to the user's own budget after the cap took the full amount: each hold is
  // given back in its own amount.
  settle(a, a2, 0);
  settle(b, b4, 0);
  ReserveRequest clamp = request(c, "c2");
  clamp.max_output_tokens.reset();
  clamp.default_output_cap = 100;  // 1,000 + 100 x 1,000 = 101,000 held against the cap
  clamp.min_output_tokens = 10;
  Admission c2 = gate.Reserve(clamp);
  ASSERT_TRUE(c2.allowed()) << c2.message;
  EXPECT_EQ(c2.clamped_max_tokens, 49);  // (50,000 - 1,000) / 1,000: 50,000 held for c
  auto global = RedisCounters::HoldKeys(0), own = RedisCounters::HoldKeys(c);
  EXPECT_EQ(redis.Command({"GET", global[0]})->str, "101000");
  EXPECT_EQ(redis.Command({"GET", own[0]})->str, "50000");
  settle(c, c2, 7'000);
  EXPECT_EQ(redis.Command({"EXISTS", global[0], global[1], global[2], own[0], own[1], own[2]})
                ->integer,
            0);
  EXPECT_EQ(gate.State(c)->spend.nanos(), 7'000);
}

TEST_F(RedisGateTest, ReservesAndSettlesWithoutBlockingOnAnEventLoop) {
  EventServer loop(ServerTuning{.worker_threads = 2});
  ASSERT_GT(loop.Start("127.0.0.1", 0), 0);
  auto address = ParseRedisUrl(testing::RequiredEnv("TOLLGATE_TEST_REDIS_URL"));
  HiredisAsync async(*address, loop, 2000ms);
  // The fixture's settings are never cached: the loop cannot decide, a worker must.
  gate_->set_async(&async, &loop);
  // Runs `work` on the loop and waits (10 s at most) for what it hands to `result`.
  using Answer = std::shared_ptr<std::promise<std::optional<Admission>>>;
  auto on_loop = [&](std::function<void(Answer)> work) -> std::optional<Admission> {
    auto result = std::make_shared<std::promise<std::optional<Admission>>>();
    auto got = result->get_future();
    loop.Post([work, result] { work(result); });
    if (got.wait_for(10s) == std::future_status::ready) return got.get();
    ADD_FAILURE() << "the loop never answered";
    return Admission{.refusal = Refusal::kUnavailable, .message = "no answer"};
  };
  auto reserve = [&](const ReserveRequest& r, RedisGate& gate) {
    return on_loop([r, &gate](Answer result) {
      if (!gate.ReserveNoWait(r, [result](std::optional<Admission> a) { result->set_value(a); }))
        result->set_value(Admission{.refusal = Refusal::kUnavailable, .message = "not started"});
    });
  };
  EXPECT_EQ(reserve(Request(99, "n0"), *gate_)->message, "not started");

  SettingsCache cached(directory_, clock_, 1h);
  RedisGate gate(*redis_, cached, *counters_, clock_, metrics_, 60s);
  gate.set_async(&async, &loop);
  ASSERT_TRUE(cached.Get(user_).ok());
  // The counter does not exist yet: rebuilding it from the ledger is Reserve()'s job.
  EXPECT_FALSE(reserve(Request(99, "n1"), gate).has_value());
  ASSERT_TRUE(gate.Reserve(Request(99, "w1")).allowed());

  std::vector<Admission> held;
  for (int i = 0; i < 9; ++i) {
    auto a = reserve(Request(99, "n" + std::to_string(i + 2)), gate);
    ASSERT_TRUE(a && a->allowed()) << i;
    EXPECT_EQ(a->held.nanos(), 100'000);
    held.push_back(*a);
  }
  // 10 x 100,000 of 1,000,000 held: the next is not admitted on the loop (Reserve()
  // words the refusal).
  EXPECT_FALSE(reserve(Request(99, "n11"), gate).has_value());
  EXPECT_EQ(gate.Reserve(Request(99, "w2")).refusal, Refusal::kBudget);

  Settle(held[0], 30'000);
  auto state = gate.State(user_);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->spend.nanos(), 30'000);
  EXPECT_EQ(state->held.nanos(), 900'000);
  loop.Stop();
}

// Calls made while the loop handles one batch go to Redis together, and each is
// decided in the order it was made, seeing the ones before it.
TEST_F(RedisGateTest, CallsOfOneLoopBatchAreDecidedInTheOrderMade) {
  auto on_loop = StartLoopGate();
  EventServer& loop = on_loop->loop;
  HiredisAsync& async = *on_loop->async;
  RedisGate& gate = *on_loop->gate;
  Admission first = gate.Reserve(Request(99, "w"));  // builds the counter; holds 100,000
  ASSERT_TRUE(first.allowed());

  // Runs `calls` in one loop task and waits for the `n` answers they give.
  using Answers = std::vector<std::optional<Admission>>;
  auto in_one_batch =
      [&](size_t n,
          std::function<void(std::function<void(size_t, std::optional<Admission>)>)> calls) {
        auto answers = std::make_shared<Answers>(n);
        auto left = std::make_shared<size_t>(n);
        auto all = std::make_shared<std::promise<void>>();
        auto done = all->get_future();
        loop.Post([=] {
          calls([=](size_t i, std::optional<Admission> a) {
            (*answers)[i] = std::move(a);
            if (--*left == 0) all->set_value();
          });
        });
        EXPECT_EQ(done.wait_for(10s), std::future_status::ready);
        return *answers;
      };
  // Twelve reservations of 100,000 with 900,000 of 1,000,000 left: the first nine.
  Answers a = in_one_batch(12, [&](auto answer) {
    for (size_t i = 0; i < 12; ++i) {
      ASSERT_TRUE(
          gate.ReserveNoWait(Request(99, "b" + std::to_string(i)),
                             [answer, i](std::optional<Admission> got) { answer(i, got); }));
    }
  });
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(a[i].has_value(), i < 9) << i;
  // Two rows applied free room for one more: 1,000,000 - 30,000 spent - 800,000 held
  // leaves 170,000.
  Settle(*a[0], 10'000);
  Settle(*a[1], 20'000);
  Answers b = in_one_batch(2, [&](auto answer) {
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(
          gate.ReserveNoWait(Request(99, "c" + std::to_string(i)),
                             [answer, i](std::optional<Admission> got) { answer(i, got); }));
    }
  });
  ASSERT_TRUE(b[0].has_value());
  EXPECT_FALSE(b[1].has_value());
  auto state = gate.State(user_);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->spend.nanos(), 30'000);
  EXPECT_EQ(state->held.nanos(), 900'000);
  // Every row applied brings the total back to nothing.
  Settle(first, 1'000);
  for (size_t i = 2; i < 9; ++i) Settle(*a[i], 1'000);
  Settle(*b[0], 1'000);
  state = gate.State(user_);
  EXPECT_EQ(state->spend.nanos(), 30'000 + 9 * 1'000);
  EXPECT_EQ(state->held.nanos(), 0);
  auto keys = RedisCounters::HoldKeys(user_);
  EXPECT_EQ(redis_->Command({"EXISTS", keys[0], keys[1], keys[2]})->integer, 0);

  // Holds that lapsed are cleared by a batch's reservation, and the late row of one of
  // them does not take it off the total a second time.
  Answers d = in_one_batch(2, [&](auto answer) {
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(
          gate.ReserveNoWait(Request(99, "d" + std::to_string(i)),
                             [answer, i](std::optional<Admission> got) { answer(i, got); }));
    }
  });
  ASSERT_TRUE(d[0] && d[1]);
  clock_.Advance(61s);
  Answers e = in_one_batch(1, [&](auto answer) {
    ASSERT_TRUE(gate.ReserveNoWait(Request(99, "e"),
                                   [answer](std::optional<Admission> got) { answer(0, got); }));
  });
  ASSERT_TRUE(e[0].has_value());
  Settle(*d[0], 5'000);
  state = gate.State(user_);
  EXPECT_EQ(state->held.nanos(), 100'000) << "only the new hold";
  EXPECT_EQ(state->spend.nanos(), 39'000 + 5'000);
  EXPECT_EQ(redis_->Command({"GET", keys[0]})->str, "100000");
  (void)async;
}

// Leases: the loop admits a user's requests against a slice of the budget held in
// Redis as one hold, answering at once; the limit holds as with per-request holds.
TEST_F(RedisGateTest, LeasesAdmitAtOnceAndNeverLetRequestsPassTheLimit) {
  auto on_loop = StartLoopGate(8);
  SettingsCache& cached = *on_loop->cached;
  RedisGate& gate = *on_loop->gate;
  ASSERT_TRUE(gate.Reserve(Request(9, "w")).allowed());  // builds the counter; holds 10,000

  auto held = [&] { return gate.State(user_)->held.nanos(); };
  auto spend = [&] { return gate.State(user_)->spend.nanos(); };

  // The first reservation goes to Redis alone; its reply takes a lease of
  // min(8 x 10,000, (1,000,000 - 0 - 10,000 - 10,000) / 16) = 61,250.
  Batch first = ReserveBatch(*on_loop, {"a"});
  ASSERT_TRUE(first.answers[0] && first.answers[0]->allowed());
  EXPECT_EQ(first.sync, 0u);
  EXPECT_EQ(held(), 10'000 + 10'000 + 61'250);

  // Six of 10,000 fit the lease and are answered at once; the seventh retires it (its
  // unused 1,250 go back) and goes to Redis alone, whose reply takes the next lease:
  // (1,000,000 - 80,000 - 10,000) / 16 = 56,875.
  Batch second = ReserveBatch(*on_loop, {"b0", "b1", "b2", "b3", "b4", "b5", "b6"});
  EXPECT_EQ(second.sync, 6u);
  for (size_t i = 0; i < 7; ++i) {
    ASSERT_TRUE(second.answers[i] && second.answers[i]->allowed()) << i;
    EXPECT_EQ(second.answers[i]->held.nanos(), 10'000);
    EXPECT_EQ(second.answers[i]->hold_id.find("tgl_") != std::string::npos, i < 6) << i;
  }
  EXPECT_EQ(held(), 80'000 + 10'000 + 56'875);

  // Each row adds its cost and takes its own reservation off the retired lease's hold,
  // which goes with the last.
  SettleAll({*second.answers[0], *second.answers[1]}, 1'000);
  EXPECT_EQ(spend(), 2'000);
  EXPECT_EQ(held(), 60'000 + 10'000 + 56'875);
  SettleAll({*second.answers[2], *second.answers[3], *second.answers[4], *second.answers[5]},
            1'000);
  EXPECT_EQ(spend(), 6'000);
  EXPECT_EQ(held(), 20'000 + 10'000 + 56'875);

  // A lease taken under another limit admits nothing: the next request goes to Redis
  // alone (and takes a lease under the new limit); the old one's unused part goes back.
  auto settings = directory_.GetSettings(user_);
  settings->limit = Money::FromNanos(900'000);
  ASSERT_TRUE(directory_.PutSettingsMany({*settings}, "test").ok());
  cached.Invalidate(user_);
  ASSERT_TRUE(cached.Get(user_).ok());
  Batch changed = ReserveBatch(*on_loop, {"l0"});
  ASSERT_TRUE(changed.answers[0] && changed.answers[0]->allowed());
  EXPECT_EQ(changed.sync, 0u);
  EXPECT_EQ(ReserveBatch(*on_loop, {"l1"}).sync, 1u);
  // Nor does a lease older than a second.
  clock_.Advance(2s);
  EXPECT_EQ(ReserveBatch(*on_loop, {"l2"}).sync, 0u);

  // Redis losing the user's keys: the row applied next finds no counter, which is built
  // from the ledger (its own batch left out, then added): the counter is the ledger.
  Batch l3 = ReserveBatch(*on_loop, {"l3"});
  ASSERT_EQ(l3.sync, 1u);
  Timestamp window = cached.Get(user_)->window.start;
  auto keys = RedisCounters::HoldKeys(user_);
  ASSERT_TRUE(redis_->Command({"DEL", RedisCounters::SpendKey(user_, window), keys[0], keys[1],
                               keys[2]})
                  .ok());
  Settle(*l3.answers[0], 1'000);
  EXPECT_EQ(spend(), 7'000);
  ledger_.Append({.request_id = "spent",
                  .user_id = user_,
                  .started_at = clock_.Now(),
                  .cost = Money::FromNanos(7'000),
                  .window = Window{window, window + 24h}});
  EXPECT_EQ(spend(), 14'000);
  EXPECT_EQ(spend(), ledger_.Sum(user_, cached.Get(user_)->window, true)->nanos());

  // Reserving until refused, nothing settled: what was admitted stays within the limit.
  clock_.Advance(2s);  // the lease in use retires
  ASSERT_TRUE(ReserveBatch(*on_loop, {"m"}).answers[0].has_value());  // alone, then a lease
  std::vector<std::string> many;
  for (int i = 0; i < 120; ++i) many.push_back("m" + std::to_string(i));
  Batch third = ReserveBatch(*on_loop, many);
  int64_t admitted = 0;
  for (const auto& a : third.answers) admitted += a ? a->held.nanos() : 0;
  EXPECT_GT(third.sync, 0u);
  EXPECT_LE(spend() + held(), 900'000);
  EXPECT_GE(admitted, 750'000) << "leases shrink near the limit: little is refused early";

  // Leases of an instance that stopped lapse like any hold.
  clock_.Advance(61s);
  EXPECT_EQ(held(), 0);
}

// Far from the limit, the next lease is asked for when three quarters of one are used:
// the requests that come meanwhile are admitted against the old one, none sent alone.
TEST_F(RedisGateTest, TheNextLeaseIsAskedForBeforeTheLastRunsOut) {
  auto on_loop = StartLoopGate(8);
  RedisGate& gate = *on_loop->gate;
  auto settings = directory_.GetSettings(user_);
  settings->limit = Money::FromNanos(100'000'000);
  ASSERT_TRUE(directory_.PutSettingsMany({*settings}, "test").ok());
  on_loop->cached->Invalidate(user_);
  ASSERT_TRUE(on_loop->cached->Get(user_).ok());
  auto held = [&] { return gate.State(user_)->held.nanos(); };
  ASSERT_TRUE(gate.Reserve(Request(9, "w")).allowed());  // builds the counter; holds 10,000
  ASSERT_TRUE(ReserveBatch(*on_loop, {"a"}).answers[0].has_value());  // alone; a lease of 80,000
  // The seventh leaves a quarter or less: the next lease is asked for with it.
  Batch b = ReserveBatch(*on_loop, {"b0", "b1", "b2", "b3", "b4", "b5", "b6"});
  EXPECT_EQ(b.sync, 7u);
  EXPECT_EQ(held(), 10'000 + 10'000 + 70'000 + 80'000)
      << "two leases, the old one down to what its requests use";
  Batch c = ReserveBatch(*on_loop, {"c0", "c1", "c2"});
  EXPECT_EQ(c.sync, 3u) << "the new lease admits them all";
  std::vector<Admission> old;
  for (const auto& a : b.answers) old.push_back(*a);
  SettleAll(old, 1'000);
  EXPECT_EQ(held(), 10'000 + 10'000 + 80'000) << "the old lease goes with its last request";
}

// A stopping instance gives back what its leases did not use rather than leaving it to
// lapse; what requests in flight hold goes as their rows are applied.
TEST_F(RedisGateTest, LeasesGoBackAtShutdown) {
  auto on_loop = StartLoopGate(8);
  RedisGate& gate = *on_loop->gate;
  ASSERT_TRUE(gate.Reserve(Request(9, "w")).allowed());  // builds the counter; holds 10,000
  Batch first = ReserveBatch(*on_loop, {"a"});           // alone, then a lease of 61,250
  ASSERT_TRUE(first.answers[0] && first.answers[0]->allowed());
  Batch leased = ReserveBatch(*on_loop, {"b", "c"});
  ASSERT_EQ(leased.sync, 2u);
  Settle(*leased.answers[0], 1'000);
  EXPECT_EQ(gate.State(user_)->held.nanos(), 20'000 + 61'250 - 10'000);
  on_loop->loop.Stop();
  gate.ReleaseLeases();
  EXPECT_EQ(gate.State(user_)->held.nanos(), 20'000 + 10'000) << "c is still in flight";
  Settle(*leased.answers[1], 1'000);
  EXPECT_EQ(gate.State(user_)->held.nanos(), 20'000);
  EXPECT_EQ(gate.State(user_)->spend.nanos(), 2'000);
}

// A worker's reservation (a stream's) goes through the loop, so the user's lease admits
// it without a Redis round trip of its own.
TEST_F(RedisGateTest, AWorkersReservationIsAdmittedAgainstTheLoopsLease) {
  auto on_loop = StartLoopGate(8);
  RedisGate& gate = *on_loop->gate;
  Admission w = gate.Reserve(Request(9, "w"));  // here: the counter is built
  Admission x = gate.Reserve(Request(9, "x"));  // on the loop, alone: takes a lease
  ASSERT_TRUE(w.allowed() && x.allowed());
  ReserveBatch(*on_loop, {});  // the lease's reply has come
  Admission y = gate.Reserve(Request(9, "y"));
  ASSERT_TRUE(y.allowed());
  EXPECT_EQ(x.hold_id.find("tgl_"), std::string::npos);
  EXPECT_NE(y.hold_id.find("tgl_"), std::string::npos);
  EXPECT_EQ(y.held.nanos(), 10'000);
  EXPECT_EQ(gate.State(user_)->held.nanos(), 20'000 + 61'250);
  // One the loop has already declined (a refusal to word, a cap to clamp) is decided
  // here at once, not asked of the loop a second time.
  ReserveRequest declined = Request(9, "z");
  declined.declined_on_loop = true;
  Admission z = gate.Reserve(declined);
  ASSERT_TRUE(z.allowed());
  EXPECT_EQ(z.hold_id.find("tgl_"), std::string::npos);
  Settle(y, 2'000);
  EXPECT_EQ(gate.State(user_)->spend.nanos(), 2'000);
  EXPECT_EQ(gate.State(user_)->held.nanos(), 30'000 + 61'250 - 10'000);
}

}  // namespace
}  // namespace tollgate
