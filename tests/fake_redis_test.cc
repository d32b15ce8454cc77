#include "budget/fake_redis.h"

#include <gtest/gtest.h>

namespace tollgate {
namespace {

using namespace std::chrono_literals;

TEST(FakeRedis, ExpiresKeysOnTheInjectedClock) {
  ManualClock clock(Timestamp(1000s));
  FakeRedis redis(clock);
  ASSERT_TRUE(redis.Command({"SET", "k", "v", "EX", "10"}).ok());
  EXPECT_EQ(redis.Command({"GET", "k"})->str, "v");
  clock.Advance(9s);
  EXPECT_EQ(redis.Command({"GET", "k"})->type, RedisReply::Type::kString);
  clock.Advance(1s);
  EXPECT_EQ(redis.Command({"GET", "k"})->type, RedisReply::Type::kNil);
}

TEST(FakeRedis, CountsAndFailsLikeRedis) {
  ManualClock clock(Timestamp(0s));
  FakeRedis redis(clock);
  EXPECT_EQ(redis.Command({"INCRBY", "n", "5"})->integer, 5);
  EXPECT_EQ(redis.Command({"INCRBY", "n", "-2"})->integer, 3);
  redis.Command({"SET", "s", "text"});
  auto bad = redis.Command({"INCRBY", "s", "1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalid);
  redis.set_down(true);
  auto down = redis.Command({"PING"});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace tollgate
