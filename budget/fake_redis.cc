#include "budget/fake_redis.h"

#include <algorithm>

namespace tollgate {

FakeRedis::Entry* FakeRedis::Live(const std::string& key) {
  auto it = data_.find(key);
  if (it == data_.end()) return nullptr;
  if (it->second.expires_at <= clock_.Now()) {
    data_.erase(it);
    return nullptr;
  }
  return &it->second;
}

Result<RedisReply> FakeRedis::Command(const std::vector<std::string>& argv) {
  std::lock_guard lock(mu_);
  ++commands_;
  if (down_) return Status::Unavailable("redis: connection refused (fake down)");
  if (argv.empty()) return Status::Invalid("redis: empty command");
  std::string cmd = argv[0];
  std::transform(cmd.begin(), cmd.end(), cmd.begin(), ::toupper);
  auto need = [&](size_t n) { return argv.size() >= n; };
  auto parse_int = [](const std::string& s, long long* v) {
    try {
      size_t used = 0;
      *v = std::stoll(s, &used);
      return used == s.size();
    } catch (...) {
      return false;
    }
  };
  if (cmd == "PING") return RedisReply::StatusReply("PONG");
  if (cmd == "GET" && need(2)) {
    Entry* e = Live(argv[1]);
    return e ? RedisReply::String(e->value) : RedisReply::Nil();
  }
  if (cmd == "SET" && need(3)) {
    bool nx = false;
    Timestamp expires = Timestamp::max();
    for (size_t i = 3; i < argv.size(); ++i) {
      std::string opt = argv[i];
      std::transform(opt.begin(), opt.end(), opt.begin(), ::toupper);
      long long n = 0;
      if (opt == "NX")
        nx = true;
      else if ((opt == "EX" || opt == "PX") && i + 1 < argv.size() && parse_int(argv[++i], &n))
        expires = clock_.Now() + (opt == "EX" ? std::chrono::microseconds(n * 1000000)
                                              : std::chrono::microseconds(n * 1000));
      else
        return Status::Invalid("redis: ERR syntax error");
    }
    if (nx && Live(argv[1])) return RedisReply::Nil();
    data_[argv[1]] = Entry{argv[2], {}, false, expires};
    return RedisReply::StatusReply("OK");
  }
  if (cmd == "DEL" && need(2)) {
    long long n = 0;
    for (size_t i = 1; i < argv.size(); ++i) n += Live(argv[i]) ? (data_.erase(argv[i]), 1) : 0;
    return RedisReply::Integer(n);
  }
  if (cmd == "EXISTS" && need(2)) return RedisReply::Integer(Live(argv[1]) ? 1 : 0);
  if ((cmd == "INCRBY" && need(3)) || (cmd == "INCR" && need(2))) {
    long long by = 1, cur = 0;
    if (cmd == "INCRBY" && !parse_int(argv[2], &by))
      return Status::Invalid("redis: ERR value is not an integer");
    Entry* e = Live(argv[1]);
    if (e && !parse_int(e->value, &cur))
      return Status::Invalid("redis: ERR value is not an integer");
    if (!e) e = &(data_[argv[1]] = Entry{});
    e->value = std::to_string(cur + by);
    return RedisReply::Integer(cur + by);
  }
  if ((cmd == "EXPIRE" || cmd == "PEXPIRE") && need(3)) {
    long long n = 0;
    if (!parse_int(argv[2], &n)) return Status::Invalid("redis: ERR value is not an integer");
    Entry* e = Live(argv[1]);
    if (!e) return RedisReply::Integer(0);
    e->expires_at =
        clock_.Now() + std::chrono::microseconds(cmd == "EXPIRE" ? n * 1000000 : n * 1000);
    return RedisReply::Integer(1);
  }
  if (cmd == "HSET" && need(4) && argv.size() % 2 == 0) {
    Entry* e = Live(argv[1]);
    if (!e) e = &(data_[argv[1]] = Entry{});
    e->is_hash = true;
    long long added = 0;
    for (size_t i = 2; i + 1 < argv.size(); i += 2)
      added += e->hash.insert_or_assign(argv[i], argv[i + 1]).second;
    return RedisReply::Integer(added);
  }
  if (cmd == "HGET" && need(3)) {
    Entry* e = Live(argv[1]);
    if (!e || !e->hash.count(argv[2])) return RedisReply::Nil();
    return RedisReply::String(e->hash[argv[2]]);
  }
  if (cmd == "HGETALL" && need(2)) {
    RedisReply out;
    out.type = RedisReply::Type::kArray;
    if (Entry* e = Live(argv[1])) {
      for (const auto& [k, v] : e->hash) {
        out.elements.push_back(RedisReply::String(k));
        out.elements.push_back(RedisReply::String(v));
      }
    }
    return out;
  }
  return Status::Invalid("redis: ERR unknown command '" + argv[0] + "' (fake)");
}

}  // namespace tollgate
