// An in-memory Redis for unit tests: strings, integers, hashes and expiry on an
// injected clock, plus a switch that makes every command fail as if Redis were down.
#pragma once

#include <atomic>
#include <map>
#include <mutex>

#include "budget/redis.h"
#include "config/clock.h"

namespace tollgate {

class FakeRedis final : public Redis {
 public:
  explicit FakeRedis(const Clock& clock) : clock_(clock) {}
  Result<RedisReply> Command(const std::vector<std::string>& argv) override;

  void set_down(bool down) {
    std::lock_guard lock(mu_);
    down_ = down;
  }
  void FlushAll() {
    std::lock_guard lock(mu_);
    data_.clear();
  }
  size_t commands_run() const { return commands_; }

 private:
  struct Entry {
    std::string value;
    std::map<std::string, std::string> hash;
    bool is_hash = false;
    Timestamp expires_at = Timestamp::max();
  };
  Entry* Live(const std::string& key);

  const Clock& clock_;
  std::mutex mu_;
  std::map<std::string, Entry> data_;
  bool down_ = false;
  size_t commands_ = 0;
};

// Wraps a real Redis and fails every command while `down` is set: "Redis died
// mid-request" as an ordinary test.
class FaultyRedis final : public Redis {
 public:
  explicit FaultyRedis(Redis& inner) : inner_(inner) {}
  Result<RedisReply> Command(const std::vector<std::string>& argv) override {
    if (down_.load()) return Status::Unavailable("redis: connection refused (injected)");
    return inner_.Command(argv);
  }
  void set_down(bool down) { down_.store(down); }

 private:
  Redis& inner_;
  std::atomic<bool> down_{false};
};

}  // namespace tollgate
