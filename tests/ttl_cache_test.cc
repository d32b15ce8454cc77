#include "budget/ttl_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace tollgate {
namespace {

using namespace std::chrono_literals;

TEST(TtlCache, ConcurrentMissesLoadOnce) {
  ManualClock clock(Timestamp(100s));
  TtlCache<int, int> cache(clock, 1000ms);
  std::atomic<int> loads{0};
  std::atomic<bool> release{false};
  auto load = [&]() -> Result<int> {
    ++loads;
    while (!release) std::this_thread::yield();  // hold the load open while others arrive
    return 42;
  };
  std::vector<std::thread> threads;
  std::atomic<int> got{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      if (cache.Get(7, load).value() == 42) ++got;
    });
  }
  while (loads == 0) std::this_thread::yield();
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(got.load(), 16);
}

TEST(TtlCache, AnExpiredValueServesWhileOneCallerReloadsIt) {
  ManualClock clock(Timestamp(100s));
  TtlCache<int, int> cache(clock, 1000ms);
  ASSERT_EQ(cache.Get(7, [] { return Result<int>(1); }).value(), 1);
  clock.Advance(1500ms);
  std::atomic<bool> loading{false}, release{false};
  std::thread reloader([&] {
    auto v = cache.Get(7, [&]() -> Result<int> {
      loading = true;
      while (!release) std::this_thread::yield();
      return 2;
    });
    EXPECT_EQ(v.value(), 2);
  });
  while (!loading) std::this_thread::yield();
  // Meanwhile others are answered with the old value, and none of them loads. The reload
  // is held until they are done, so callers that waited for it would never finish here.
  auto others = std::async(std::launch::async, [&] {
    int old_values = 0;
    for (int i = 0; i < 5; ++i) {
      auto v = cache.Get(7, []() -> Result<int> { return Status::Internal("no second load"); });
      if (v.ok() && *v == 1) ++old_values;
    }
    return old_values;
  });
  bool answered = others.wait_for(30s) == std::future_status::ready;
  release = true;  // on failure too, so the test ends instead of hanging
  reloader.join();
  EXPECT_TRUE(answered) << "callers queued behind the reload";
  EXPECT_EQ(others.get(), 5);
  EXPECT_EQ(cache.Get(7, [] { return Result<int>(3); }).value(), 2);
  // A value vetoed by `fresh` is never served stale.
  clock.Advance(1500ms);
  EXPECT_EQ(cache
                .Get(
                    7, [] { return Result<int>(4); }, [](const int&, Timestamp) { return false; })
                .value(),
            4);
}

TEST(TtlCache, PeekNeverLoadsAndGivesOnlyWhatGetWouldServeAtOnce) {
  ManualClock clock(Timestamp(100s));
  TtlCache<int, int> cache(clock, 1000ms);
  EXPECT_FALSE(cache.Peek(7).has_value()) << "nothing cached";
  ASSERT_EQ(cache.Get(7, [] { return Result<int>(42); }).value(), 42);
  EXPECT_EQ(cache.Peek(7), 42);
  auto odd = [](const int& v, Timestamp) { return v % 2 == 1; };
  EXPECT_FALSE(cache.Peek(7, odd).has_value()) << "vetoed by `fresh`";
  clock.Advance(1000ms);
  EXPECT_FALSE(cache.Peek(7).has_value()) << "due for a reload: Get would load";
  EXPECT_EQ(cache.Peek(7, nullptr, true), 42) << "unless a stale value will do";
}

TEST(TtlCache, ExpiresAfterTtlAndNeverCachesFailures) {
  ManualClock clock(Timestamp(100s));
  TtlCache<int, int> cache(clock, 1000ms);
  int loads = 0;
  auto load = [&]() -> Result<int> { return ++loads; };
  EXPECT_EQ(cache.Get(1, load).value(), 1);
  clock.Advance(999ms);
  EXPECT_EQ(cache.Get(1, load).value(), 1);
  clock.Advance(1ms);
  EXPECT_EQ(cache.Get(1, load).value(), 2);
  auto failing = [&]() -> Result<int> { return Status::Unavailable("down"); };
  EXPECT_FALSE(cache.Get(2, failing).ok());
  EXPECT_EQ(cache.Get(2, load).value(), 3);
  EXPECT_EQ(cache.Get(1, load, [](const int&, Timestamp) { return false; }).value(),
            4);  // vetoed as stale
}

TEST(TtlCache, ServesTheLastGoodValueWhileTheSourceIsUnavailable) {
  ManualClock clock(Timestamp(100s));
  TtlCache<int, int> cache(clock, 1000ms, 60s);
  EXPECT_EQ(cache.Get(1, [] { return Result<int>(7); }).value(), 7);
  clock.Advance(30s);
  auto down = [] { return Result<int>(Status::Unavailable("postgres down")); };
  EXPECT_EQ(cache.Get(1, down).value(), 7) << "stale but served";
  auto missing = [] { return Result<int>(Status::NotFound("gone")); };
  EXPECT_FALSE(cache.Get(1, missing).ok()) << "only an outage serves stale values";
  clock.Advance(31s);
  EXPECT_FALSE(cache.Get(1, down).ok()) << "not beyond max_stale";
}

}  // namespace
}  // namespace tollgate
