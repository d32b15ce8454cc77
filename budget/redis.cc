#include "budget/redis.h"

#include <hiredis.h>

namespace tollgate {
namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out = RedisReply::Integer(r->integer);
      break;
    case REDIS_REPLY_STRING:
      out = RedisReply::String(std::string(r->str, r->len));
      break;
    case REDIS_REPLY_STATUS:
      out = RedisReply::StatusReply(std::string(r->str, r->len));
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      break;  // nil
  }
  return out;
}

}  // namespace

Result<RedisAddress> ParseRedisUrl(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) return Status::Invalid("redis url must start with redis://");
  std::string rest = url.substr(scheme.size());
  if (rest.find('@') != std::string::npos)
    return Status::Invalid("redis url: credentials are not supported");
  RedisAddress a;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      if (db.find_first_not_of("0123456789") != std::string::npos || db.size() > 4)
        return Status::Invalid("redis url: database must be a number");
      a.db = std::stoi(db);
    }
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    std::string port = rest.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
        port.size() > 5)
      return Status::Invalid("redis url: port must be a number");
    a.port = std::stoi(port);
    rest = rest.substr(0, colon);
  }
  if (!rest.empty()) a.host = rest;
  return a;
}

HiredisPool::HiredisPool(RedisAddress address, int max_connections, int timeout_ms)
    : address_(std::move(address)), max_connections_(max_connections), timeout_ms_(timeout_ms) {}

HiredisPool::~HiredisPool() {
  for (redisContext* c : idle_) redisFree(c);
}

redisContext* HiredisPool::Acquire(std::string* error) {
  {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
    if (!idle_.empty()) {
      redisContext* c = idle_.back();
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  redisContext* c = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
  if (c && !c->err) {
    redisSetTimeout(c, tv);
    if (address_.db != 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "SELECT %d", address_.db));
      bool ok = r && r->type != REDIS_REPLY_ERROR;
      if (r) freeReplyObject(r);
      if (ok) return c;
    } else {
      return c;
    }
  }
  *error = c ? c->errstr : "cannot allocate redis context";
  if (c) redisFree(c);
  Release(nullptr, false);
  return nullptr;
}

void HiredisPool::Release(redisContext* ctx, bool healthy) {
  {
    std::lock_guard lock(mu_);
    if (ctx && healthy) {
      idle_.push_back(ctx);
    } else {
      if (ctx) redisFree(ctx);
      --open_;
    }
  }
  available_.notify_one();
}

Result<RedisReply> HiredisPool::Command(const std::vector<std::string>& argv) {
  std::string error;
  redisContext* c = Acquire(&error);
  if (!c) return Status::Unavailable("redis: " + error);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
  if (!r) {
    std::string why = c->errstr;
    Release(c, false);
    return Status::Unavailable("redis: " + why);
  }
  if (r->type == REDIS_REPLY_ERROR) {
    std::string why(r->str, r->len);
    freeReplyObject(r);
    Release(c, true);
    return Status::Invalid("redis: " + why);
  }
  RedisReply out = Convert(r);
  freeReplyObject(r);
  Release(c, true);
  return out;
}

}  // namespace tollgate
