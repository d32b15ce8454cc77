#include <gtest/gtest.h>

#include <thread>

#include "budget/keys.h"
#include "budget/redis.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

class RedisIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = testing::TestRedis(0, 8);
    ASSERT_TRUE(redis_);
    prefix_ = "test:" + RandomHex(4) + ":";
  }
  std::unique_ptr<HiredisPool> redis_;
  std::string prefix_;
};

TEST_F(RedisIntegration, RoundTripsBinarySafeValues) {
  std::string value("a\0b\r\n", 5);
  ASSERT_TRUE(redis_->Command({"SET", prefix_ + "k", value}).ok());
  auto got = redis_->Command({"GET", prefix_ + "k"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->str, value);
  EXPECT_EQ(redis_->Command({"GET", prefix_ + "missing"})->type, RedisReply::Type::kNil);
  EXPECT_EQ(redis_->Command({"PING"})->str, "PONG");
}

TEST_F(RedisIntegration, PoolIsSafeUnderManyThreads) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        ASSERT_TRUE(redis_->Command({"INCRBY", prefix_ + "n", "1"}).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(redis_->Command({"GET", prefix_ + "n"})->str, "3200");
}

TEST_F(RedisIntegration, ErrorReplyIsAValueNotAnException) {
  redis_->Command({"SET", prefix_ + "s", "text"});
  auto r = redis_->Command({"INCRBY", prefix_ + "s", "1"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalid);
  EXPECT_NE(r.status().message().find("not an integer"), std::string::npos);
  // The connection stays usable after an error reply.
  EXPECT_TRUE(redis_->Command({"PING"}).ok());
}

TEST_F(RedisIntegration, ArraysAndEval) {
  auto r = redis_->Command({"EVAL", "return {1, 'two', redis.call('INCRBY', KEYS[1], ARGV[1])}",
                            "1", prefix_ + "e", "7"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->type, RedisReply::Type::kArray);
  ASSERT_EQ(r->elements.size(), 3u);
  EXPECT_EQ(r->elements[0].integer, 1);
  EXPECT_EQ(r->elements[1].str, "two");
  EXPECT_EQ(r->elements[2].integer, 7);
}

TEST(RedisUnreachable, IsUnavailable) {
  HiredisPool redis({"127.0.0.1", 1, 0}, 2, 500);
  auto r = redis.Command({"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
}

TEST(RedisUrl, Parses) {
  auto a = ParseRedisUrl("redis://cache:6380/3");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "cache");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 3);
  EXPECT_EQ(ParseRedisUrl("redis://127.0.0.1")->port, 6379);
  EXPECT_FALSE(ParseRedisUrl("http://x").ok());
  EXPECT_FALSE(ParseRedisUrl("redis://h:port/0").ok());
}

}  // namespace
}  // namespace tollgate
