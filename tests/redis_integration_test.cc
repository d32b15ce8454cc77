#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "budget/keys.h"
#include "budget/redis.h"
#include "net/event_server.h"
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

// HiredisAsync on a real event loop (an EventServer's) against the real Redis.
class AsyncRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(loop_.Start("127.0.0.1", 0), 0);
    auto address = ParseRedisUrl(testing::RequiredEnv("TOLLGATE_TEST_REDIS_URL"));
    ASSERT_TRUE(address.ok());
    address_ = *address;
    address_.db = 3;
    prefix_ = "test:" + RandomHex(4) + ":";
  }
  void TearDown() override { loop_.Stop(); }

  // Issues `commands` together on the loop (one batch) and waits for every reply
  // (10 s at most: a reply that never comes fails the test instead of hanging it).
  std::vector<Result<RedisReply>> Batch(AsyncRedis& redis,
                                        const std::vector<std::vector<std::string>>& commands) {
    struct State {
      std::vector<Result<RedisReply>> replies;
      size_t expected;
      std::promise<void> all;
    };
    auto state = std::make_shared<State>();
    state->expected = commands.size();
    auto done = state->all.get_future();
    loop_.Post([this, &redis, commands, state] {
      for (const auto& argv : commands) {
        redis.Command(argv, [this, state](Result<RedisReply> r) {
          EXPECT_TRUE(loop_.InLoopThread());
          state->replies.push_back(std::move(r));
          if (state->replies.size() == state->expected) state->all.set_value();
        });
      }
    });
    if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "replies missing";
      return std::vector<Result<RedisReply>>(commands.size(), Status::Internal("no reply"));
    }
    return state->replies;
  }

  EventServer loop_{ServerTuning{.worker_threads = 2}};
  RedisAddress address_;
  std::string prefix_;
};

TEST_F(AsyncRedisTest, PipelinedRepliesComeBackInOrderInTheSelectedDatabase) {
  HiredisAsync redis(address_, loop_, std::chrono::milliseconds(2000));
  std::vector<std::vector<std::string>> incr(200, {"INCR", prefix_ + "n"});
  auto replies = Batch(redis, incr);
  ASSERT_EQ(replies.size(), 200u);
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].ok()) << replies[i].status().message();
    EXPECT_EQ(replies[i]->integer, static_cast<long long>(i + 1));
  }
  // A Redis error is Invalid, with Redis's text; the connection goes on.
  auto mixed = Batch(redis, {{"INCRBY", prefix_ + "n", "x"}, {"GET", prefix_ + "n"}});
  EXPECT_EQ(mixed[0].status().code(), Status::Code::kInvalid);
  EXPECT_NE(mixed[0].status().message().find("not an integer"), std::string::npos);
  EXPECT_EQ(mixed[1]->str, "200");
  auto pool = testing::TestRedis(3, 1);
  EXPECT_EQ(pool->Command({"GET", prefix_ + "n"})->str, "200") << "SELECT 3 was not applied";
  loop_.Stop();  // before the connection goes: its loop must not call it any more
}

TEST_F(AsyncRedisTest, CommandsAreBinarySafeWhateverTheirArguments) {
  HiredisAsync redis(address_, loop_, std::chrono::milliseconds(2000));
  std::string odd("a\0b\r\n$3\r\n*", 11);  // bytes that mean something in the protocol
  std::string large(200000, 'x');
  auto replies = Batch(redis, {{"SET", prefix_ + "odd", odd},
                               {"SET", prefix_ + "empty", ""},
                               {"SET", prefix_ + "large", large},
                               {"MGET", prefix_ + "odd", prefix_ + "empty", prefix_ + "large"}});
  ASSERT_EQ(replies.size(), 4u);
  ASSERT_TRUE(replies[3].ok()) << replies[3].status().message();
  ASSERT_EQ(replies[3]->elements.size(), 3u);
  EXPECT_EQ(replies[3]->elements[0].str, odd);
  EXPECT_EQ(replies[3]->elements[1].str, "");
  EXPECT_EQ(replies[3]->elements[1].type, RedisReply::Type::kString);
  EXPECT_EQ(replies[3]->elements[2].str, large);
  loop_.Stop();
}

TEST_F(AsyncRedisTest, AnUnreachableOrSilentRedisFailsEveryCommandAsUnavailable) {
  int refused_port = 0;
  int refused = testing::LoopbackSocket(&refused_port, false);
  HiredisAsync down({.host = "127.0.0.1", .port = refused_port, .db = 0}, loop_,
                    std::chrono::milliseconds(2000));
  auto replies = Batch(down, {{"PING"}, {"PING"}});
  for (const auto& r : replies) EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  close(refused);

  // Accepts (the kernel's backlog) and never answers: the timeout ends the wait.
  int silent_port = 0;
  int silent = testing::LoopbackSocket(&silent_port, true);
  HiredisAsync mute({.host = "127.0.0.1", .port = silent_port, .db = 0}, loop_,
                    std::chrono::milliseconds(500));
  replies = Batch(mute, {{"PING"}, {"PING"}});
  for (const auto& r : replies) {
    EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
    EXPECT_NE(r.status().message().find("no reply within 500 ms"), std::string::npos)
        << r.status().message();
  }
  close(silent);
  // The real one still works after a failure on another connection.
  HiredisAsync redis(address_, loop_, std::chrono::milliseconds(2000));
  EXPECT_EQ(Batch(redis, {{"PING"}})[0]->str, "PONG");
  loop_.Stop();
}

// A Redis named by host (docker-compose's redis://redis:6379) is looked up off the loop:
// here the lookup waits until the test lets it go, and the loop must still run tasks
// meanwhile. A lookup on the loop thread would hold the probe until the release.
TEST_F(AsyncRedisTest, AHostNameIsLookedUpOffTheLoopWhichGoesOnMeanwhile) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<bool> looked_up_on_loop;
  auto on_loop = looked_up_on_loop.get_future();
  RedisAddress named = address_;
  named.host = "redis.test";
  HiredisAsync redis(named, loop_, std::chrono::milliseconds(10'000),
                     [&](const std::string& host) -> Result<std::string> {
                       EXPECT_EQ(host, "redis.test");
                       looked_up_on_loop.set_value(loop_.InLoopThread());
                       released.wait();
                       return address_.host;
                     });
  std::promise<Result<RedisReply>> pong;
  auto reply = pong.get_future();
  loop_.Post([&] { redis.Command({"PING"}, [&](Result<RedisReply> r) { pong.set_value(r); }); });
  ASSERT_EQ(on_loop.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(on_loop.get()) << "the lookup ran on the loop thread";
  std::promise<void> probe;
  auto probed = probe.get_future();
  loop_.Post([&] { probe.set_value(); });
  bool loop_ran = probed.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  release.set_value();
  EXPECT_TRUE(loop_ran) << "the loop waited for the lookup";
  ASSERT_EQ(reply.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Result<RedisReply> r = reply.get();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->str, "PONG");
  loop_.Stop();
}

TEST_F(AsyncRedisTest, AHostNameThatDoesNotResolveOrResolvesTooSlowlyFailsItsCommands) {
  RedisAddress named = address_;
  named.host = "nowhere.invalid";
  HiredisAsync unknown(named, loop_, std::chrono::milliseconds(2000), [](const std::string&) {
    return Result<std::string>(Status::Unavailable("cannot resolve nowhere.invalid: no such host"));
  });
  auto replies = Batch(unknown, {{"PING"}, {"PING"}});
  for (const auto& r : replies) {
    EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
    EXPECT_NE(r.status().message().find("cannot resolve nowhere.invalid"), std::string::npos)
        << r.status().message();
  }
  // A lookup slower than the command timeout: the commands fail at the timeout, not
  // when the lookup ends.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  HiredisAsync slow(named, loop_, std::chrono::milliseconds(500), [&](const std::string&) {
    released.wait();
    return Result<std::string>(address_.host);
  });
  replies = Batch(slow, {{"PING"}});
  release.set_value();
  EXPECT_NE(replies[0].status().message().find("looking up nowhere.invalid took longer than 500"),
            std::string::npos)
      << replies[0].status().message();
  // The lookup went on, and its answer serves the next command.
  replies = Batch(slow, {{"PING"}});
  ASSERT_TRUE(replies[0].ok()) << replies[0].status().message();
  EXPECT_EQ(replies[0]->str, "PONG");
  loop_.Stop();
}

// The real lookup (getaddrinfo on its own thread) against the real Redis.
TEST_F(AsyncRedisTest, ConnectsToARedisNamedByHost) {
  RedisAddress named = address_;
  named.host = "localhost";
  HiredisAsync redis(named, loop_, std::chrono::milliseconds(5000));
  auto replies = Batch(redis, {{"SET", prefix_ + "named", "yes"}, {"GET", prefix_ + "named"}});
  ASSERT_TRUE(replies[1].ok()) << replies[1].status().message();
  EXPECT_EQ(replies[1]->str, "yes");
  loop_.Stop();
}

}  // namespace
}  // namespace tollgate
