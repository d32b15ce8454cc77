// The Redis seam: one small interface, a pooled hiredis adapter, and (fake_redis.h)
// an in-memory fake beside it. Errors come back as values, never exceptions.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/status.h"

struct redisContext;

namespace tollgate {

struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kArray };
  Type type = Type::kNil;
  long long integer = 0;
  std::string str;  // kString and kStatus
  std::vector<RedisReply> elements;

  static RedisReply Nil() { return {}; }
  static RedisReply Integer(long long v) { return {Type::kInteger, v, {}, {}}; }
  static RedisReply String(std::string s) { return {Type::kString, 0, std::move(s), {}}; }
  static RedisReply StatusReply(std::string s) { return {Type::kStatus, 0, std::move(s), {}}; }
};

class Redis {
 public:
  virtual ~Redis() = default;
  // Runs one command. A Redis error reply becomes Status::Invalid with Redis's text;
  // an unreachable or broken connection becomes Status::Unavailable.
  virtual Result<RedisReply> Command(const std::vector<std::string>& argv) = 0;
};

struct RedisAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
};
// redis://[user:password@]host:port[/db] (a password is not supported yet).
Result<RedisAddress> ParseRedisUrl(const std::string& url);

// A bounded pool of hiredis connections, safe to share between threads. Connections
// open lazily, are re-used, and a broken one is dropped and replaced on next use.
class HiredisPool final : public Redis {
 public:
  HiredisPool(RedisAddress address, int max_connections, int timeout_ms);
  ~HiredisPool() override;
  Result<RedisReply> Command(const std::vector<std::string>& argv) override;

 private:
  redisContext* Acquire(std::string* error);
  void Release(redisContext* ctx, bool healthy);

  const RedisAddress address_;
  const int max_connections_;
  const int timeout_ms_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<redisContext*> idle_;
  int open_ = 0;
};

}  // namespace tollgate
