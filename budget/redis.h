// The Redis seam: one small interface, a pooled hiredis adapter, and (fake_redis.h)
// an in-memory fake beside it. Errors come back as values, never exceptions.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/status.h"
#include "net/event_loop.h"

struct redisContext;
struct redisAsyncContext;

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

// A Lua script, run by EVALSHA and sent whole (EVAL) when Redis does not know it yet
// (after a restart or a SCRIPT FLUSH).
class LuaScript {
 public:
  explicit LuaScript(const char* text);
  const char* text() const { return text_; }
  const std::string& sha() const { return sha_; }
  // EVALSHA sha numkeys keys... args...
  std::vector<std::string> Argv(const std::vector<std::string>& keys,
                                const std::vector<std::string>& args) const;
  Result<RedisReply> Run(Redis& redis, const std::vector<std::string>& keys,
                         const std::vector<std::string>& args) const;
  // Whether a failed EVALSHA means "send the script itself".
  static bool IsNoScript(const Status& s);

 private:
  const char* text_;
  std::string sha_;
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

// Redis without waiting, for code on an event loop: commands are written when the
// socket is ready, so those issued while the loop handles one batch of events share
// one write (pipelined), and each reply comes back to its callback in order.
class AsyncRedis {
 public:
  using Callback = std::function<void(Result<RedisReply>)>;
  virtual ~AsyncRedis() = default;
  // Loop thread only. `done` runs later on the loop thread, exactly once, with the
  // reply or the failure (as Redis::Command's).
  virtual void Command(const std::vector<std::string>& argv, Callback done) = 0;
  // Writes the commands issued so far now, not after the loop's batch.
  virtual void Flush() = 0;
};

// A host name's address, as an IP literal (IPv4 first, as hiredis tries). Blocks on DNS:
// never on an event loop.
using HostResolver = std::function<Result<std::string>(const std::string& host)>;
Result<std::string> ResolveHost(const std::string& host);

// One hiredis connection driven by an EventLoop. Opened (without blocking) on first
// use and again after a failure; a command without its reply for `timeout` fails with
// every other command in flight, and the connection is dropped. A host name (not an IP
// address) is looked up by `resolve` on a thread of its own before each connect (a
// container's address may change when it restarts): the loop never waits for DNS, and
// the commands issued meanwhile wait for the connection (failing after `timeout`).
class HiredisAsync final : public AsyncRedis, private EventLoop::Watcher {
 public:
  HiredisAsync(RedisAddress address, EventLoop& loop, std::chrono::milliseconds timeout,
               HostResolver resolve = ResolveHost);
  // After the loop has stopped: callbacks still pending get Unavailable.
  ~HiredisAsync() override;
  HiredisAsync(const HiredisAsync&) = delete;
  HiredisAsync& operator=(const HiredisAsync&) = delete;

  // Commands issued while the loop handles one batch of events are written together,
  // by a task posted to run after the batch (tasks posted after them run later).
  void Command(const std::vector<std::string>& argv, Callback done) override;
  void Flush() override;

 private:
  struct Pending;
  struct Waiting {
    std::vector<std::string> argv;
    Callback done;
    std::chrono::steady_clock::time_point since;
  };
  void OnEvents(uint32_t events) override;
  // Connects to `ip` (an address, never a name: no lookup on the loop).
  bool Connect(const std::string& ip, std::string* error);
  // Looks the host name up on resolver_, then connects (Resolved, on the loop).
  void LookUp();
  void Resolved(Result<std::string> ip);
  void FailWaiting(const std::string& why);
  // Queues one command on the open context.
  void Send(const std::vector<std::string>& argv, Callback done);
  void UpdateWatch();
  // Sets reading_ or writing_, watching the socket for what is wanted.
  void Want(bool* flag, bool on);
  void Tick();
  void Fail(const std::string& why);
  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata);
  static void AddRead(void* self);
  static void DelRead(void* self);
  static void AddWrite(void* self);
  static void DelWrite(void* self);
  static void Cleanup(void* self);

  const RedisAddress address_;
  EventLoop& loop_;
  const std::chrono::milliseconds timeout_;
  redisAsyncContext* ac_ = nullptr;
  int fd_ = -1;
  bool reading_ = false;
  bool writing_ = false;
  bool watched_ = false;
  bool closing_ = false;
  bool flush_posted_ = false;  // a write of what is queued runs after this batch
  bool flushing_ = false;
  std::string failure_;  // why the callbacks hiredis ends with a null reply failed
  std::deque<std::chrono::steady_clock::time_point> sent_;  // in-flight commands, oldest first

  const HostResolver resolve_;
  const bool by_name_;            // address_.host is a name to look up
  bool resolving_ = false;        // loop thread only
  std::vector<Waiting> waiting_;  // commands issued while the name is looked up, oldest first
  std::thread resolver_;
  std::mutex resolver_mu_;  // makes the resolver's Post and the destructor exclusive
  bool stopped_ = false;    // guarded by resolver_mu_
};

}  // namespace tollgate
