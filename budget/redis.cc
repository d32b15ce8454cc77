#include "budget/redis.h"

#include <arpa/inet.h>
#include <async.h>
#include <hiredis.h>
#include <poll.h>
#include <netdb.h>
#include <sys/epoll.h>

#include <openssl/sha.h>

#include <charconv>
#include <utility>

#include "budget/keys.h"

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

// A command in Redis's wire form (RESP: an array of bulk strings), binary-safe. Written
// here with plain appends: hiredis's own formatter goes through printf-style sds calls
// that cost more than the gate's whole script takes Redis to run.
std::string Resp(const std::vector<std::string>& argv) {
  size_t size = 16;
  for (const std::string& a : argv) size += a.size() + 16;
  std::string out;
  out.reserve(size);
  auto number = [&out](char prefix, size_t n) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    out += prefix;
    out.append(digits, end);
    out += "\r\n";
  };
  number('*', argv.size());
  for (const std::string& a : argv) {
    number('$', a.size());
    out += a;
    out += "\r\n";
  }
  return out;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

}  // namespace

LuaScript::LuaScript(const char* text) : text_(text) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text), std::char_traits<char>::length(text), d);
  sha_ = HexEncode(d, sizeof d);
}

std::vector<std::string> LuaScript::Argv(const std::vector<std::string>& keys,
                                         const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"EVALSHA", sha_, std::to_string(keys.size())};
  argv.reserve(3 + keys.size() + args.size());
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Result<RedisReply> LuaScript::Run(Redis& redis, const std::vector<std::string>& keys,
                                  const std::vector<std::string>& args) const {
  std::vector<std::string> argv = Argv(keys, args);
  auto r = redis.Command(argv);
  if (!r.ok() && IsNoScript(r.status())) {
    argv[0] = "EVAL";
    argv[1] = text_;
    r = redis.Command(argv);
  }
  return r;
}

bool LuaScript::IsNoScript(const Status& s) {
  return s.message().find("NOSCRIPT") != std::string::npos;
}

Result<std::string> ResolveHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0)
    return Status::Unavailable("cannot resolve " + host + ": " + gai_strerror(rc));
  const addrinfo* pick = found;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  char text[INET6_ADDRSTRLEN] = "";
  const void* address =
      pick->ai_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr)
          : &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr;
  inet_ntop(pick->ai_family, address, text, sizeof(text));
  freeaddrinfo(found);
  return std::string(text);
}

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

namespace {
// An idle connection has no reply to read: readable means Redis closed it (a restart),
// which the next command would otherwise fail on.
bool ClosedWhileIdle(redisContext* c) {
  pollfd p{c->fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}
}  // namespace

redisContext* HiredisPool::Acquire(std::string* error) {
  while (true) {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
    if (idle_.empty()) {
      ++open_;
      break;
    }
    redisContext* c = idle_.back();
    idle_.pop_back();
    if (!ClosedWhileIdle(c)) return c;
    redisFree(c);
    --open_;
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
  std::string command = Resp(argv);
  redisReply* r = nullptr;
  if (redisAppendFormattedCommand(c, command.data(), command.size()) != REDIS_OK ||
      redisGetReply(c, reinterpret_cast<void**>(&r)) != REDIS_OK || r == nullptr) {
    if (r != nullptr) freeReplyObject(r);
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

// ---- HiredisAsync ------------------------------------------------------------

struct HiredisAsync::Pending {
  HiredisAsync* owner;
  Callback done;
};

HiredisAsync::HiredisAsync(RedisAddress address, EventLoop& loop, std::chrono::milliseconds timeout,
                           HostResolver resolve)
    : address_(std::move(address)),
      loop_(loop),
      timeout_(timeout),
      resolve_(std::move(resolve)),
      by_name_(!IsIpAddress(address_.host)) {
  loop_.Post([this] { loop_.EverySecond([this] { Tick(); }); });
}

HiredisAsync::~HiredisAsync() {
  {
    std::lock_guard lock(resolver_mu_);
    stopped_ = true;  // a lookup that ends now posts nothing
  }
  if (resolver_.joinable()) resolver_.join();
  closing_ = true;  // the loop is gone: nothing to unwatch
  if (ac_ != nullptr) Fail("redis: shutting down");
  FailWaiting("redis: shutting down");
}

bool HiredisAsync::Connect(const std::string& ip, std::string* error) {
  redisAsyncContext* ac = redisAsyncConnect(ip.c_str(), address_.port);
  if (ac == nullptr || ac->err) {
    *error = ac ? ac->errstr : "cannot allocate redis context";
    if (ac) redisAsyncFree(ac);
    return false;
  }
  ac_ = ac;
  fd_ = ac->c.fd;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = AddRead;
  ac->ev.delRead = DelRead;
  ac->ev.addWrite = AddWrite;
  ac->ev.delWrite = DelWrite;
  ac->ev.cleanup = Cleanup;
  failure_.clear();
  if (address_.db != 0) {
    // A failed SELECT would send every later command to the wrong database: drop the
    // connection instead.
    Send({"SELECT", std::to_string(address_.db)}, [this](Result<RedisReply> r) {
      if (!r.ok() && ac_ != nullptr) redisAsyncDisconnect(ac_);
    });
  }
  return true;
}

void HiredisAsync::Command(const std::vector<std::string>& argv, Callback done) {
  if (ac_ == nullptr && by_name_) {
    waiting_.push_back({argv, std::move(done), std::chrono::steady_clock::now()});
    return LookUp();
  }
  std::string error;
  if (ac_ == nullptr && !Connect(address_.host, &error)) {
    loop_.Post([done = std::move(done), error] { done(Status::Unavailable("redis: " + error)); });
    return;
  }
  Send(argv, std::move(done));
}

void HiredisAsync::LookUp() {
  if (resolving_) return;
  resolving_ = true;
  if (resolver_.joinable()) resolver_.join();  // the last lookup's, over: its answer came
  resolver_ = std::thread([this] {
    Result<std::string> ip = resolve_(address_.host);
    std::lock_guard lock(resolver_mu_);
    if (!stopped_) loop_.Post([this, ip = std::move(ip)] { Resolved(ip); });
  });
}

void HiredisAsync::Resolved(Result<std::string> ip) {
  resolving_ = false;
  std::string error = ip.ok() ? "" : ip.status().message();
  if (error.empty() && ac_ == nullptr) Connect(*ip, &error);
  if (!error.empty()) return FailWaiting("redis: " + error);
  std::vector<Waiting> waiting = std::exchange(waiting_, {});
  for (Waiting& w : waiting) Send(w.argv, std::move(w.done));
}

void HiredisAsync::FailWaiting(const std::string& why) {
  std::vector<Waiting> waiting = std::exchange(waiting_, {});
  for (Waiting& w : waiting) w.done(Status::Unavailable(why));
}

void HiredisAsync::Send(const std::vector<std::string>& argv, Callback done) {
  std::string command = Resp(argv);
  auto* pending = new Pending{this, std::move(done)};
  sent_.push_back(std::chrono::steady_clock::now());
  if (redisAsyncFormattedCommand(ac_, OnReply, pending, command.data(), command.size()) !=
      REDIS_OK) {
    sent_.pop_back();
    loop_.Post([pending] {
      pending->done(Status::Unavailable("redis: connection is closing"));
      delete pending;
    });
  }
}

void HiredisAsync::Flush() {
  if (ac_ == nullptr) return;
  flushing_ = true;
  redisAsyncHandleWrite(ac_);  // asks for EPOLLOUT (AddWrite) only if the socket is full
  flushing_ = false;
}

void HiredisAsync::OnReply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* pending = static_cast<Pending*>(privdata);
  HiredisAsync* self = pending->owner;
  if (!self->sent_.empty()) self->sent_.pop_front();
  auto* r = static_cast<redisReply*>(reply);
  if (r == nullptr) {  // the context is going: why
    pending->done(Status::Unavailable(!self->failure_.empty() ? self->failure_
                                      : ac->err != 0          ? "redis: " + std::string(ac->errstr)
                                                              : "redis: connection lost"));
  } else if (r->type == REDIS_REPLY_ERROR) {
    pending->done(Status::Invalid("redis: " + std::string(r->str, r->len)));
  } else {
    pending->done(Convert(r));
  }
  delete pending;
}

void HiredisAsync::OnEvents(uint32_t events) {
  if (ac_ != nullptr && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(ac_);
  if (ac_ != nullptr && (events & EPOLLOUT)) redisAsyncHandleWrite(ac_);
}

void HiredisAsync::Tick() {
  auto now = std::chrono::steady_clock::now();
  if (!waiting_.empty() && now - waiting_.front().since >= timeout_) {
    // The lookup goes on; its answer serves the next command.
    FailWaiting("redis: looking up " + address_.host + " took longer than " +
                std::to_string(timeout_.count()) + " ms");
  }
  if (ac_ == nullptr || sent_.empty()) return;
  if (now - sent_.front() < timeout_) return;
  Fail("redis: no reply within " + std::to_string(timeout_.count()) + " ms");
}

void HiredisAsync::Fail(const std::string& why) {
  failure_ = why;
  // Every pending callback gets the failure (a command they issue meanwhile fails
  // too: the context is freeing), then Cleanup forgets the context.
  redisAsyncFree(ac_);
  sent_.clear();
}

void HiredisAsync::UpdateWatch() {
  if (closing_) return;
  uint32_t events = (reading_ ? uint32_t{EPOLLIN} : 0u) | (writing_ ? uint32_t{EPOLLOUT} : 0u);
  if (events == 0) {
    if (watched_) loop_.Unwatch(fd_);
    watched_ = false;
    return;
  }
  loop_.Watch(fd_, events, this);
  watched_ = true;
}

void HiredisAsync::Want(bool* flag, bool on) {
  if (*flag == on) return;
  *flag = on;
  UpdateWatch();
}

void HiredisAsync::AddRead(void* self) {
  auto* s = static_cast<HiredisAsync*>(self);
  s->Want(&s->reading_, true);
}
void HiredisAsync::DelRead(void* self) {
  auto* s = static_cast<HiredisAsync*>(self);
  s->Want(&s->reading_, false);
}
// Commands issued during one batch of events are written together right after it,
// without a round of EPOLLOUT; only a connect in progress or a full socket waits for
// the socket to be writable.
void HiredisAsync::AddWrite(void* self) {
  auto* s = static_cast<HiredisAsync*>(self);
  if (s->writing_) return;
  bool connected = s->ac_ != nullptr && (s->ac_->c.flags & REDIS_CONNECTED);
  if (s->flushing_ || !connected) {
    s->Want(&s->writing_, true);
  } else if (!s->flush_posted_) {
    s->flush_posted_ = true;
    s->loop_.Post([s] {
      s->flush_posted_ = false;
      s->Flush();
    });
  }
}
void HiredisAsync::DelWrite(void* self) {
  auto* s = static_cast<HiredisAsync*>(self);
  s->Want(&s->writing_, false);
}
// hiredis frees the context (a failure, or Fail()): after the pending callbacks ran.
void HiredisAsync::Cleanup(void* self) {
  auto* s = static_cast<HiredisAsync*>(self);
  s->ac_ = nullptr;
  s->reading_ = s->writing_ = false;
  s->UpdateWatch();
  s->sent_.clear();
}

}  // namespace tollgate
