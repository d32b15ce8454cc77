#include "budget/redis_gate.h"

#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <future>

#include "budget/keys.h"

namespace tollgate {
namespace {

// Amounts are nano-dollars; Lua numbers are doubles, exact up to 2^53 nanos
// (about $9 million), far above any per-user window. Amounts going back to Redis are
// the caller's strings, or formatted with '%.0f' (a Lua number may print as 1e+17,
// which INCRBY refuses); so is an expiry, computed by the caller.
//
// The gate's one script: reservations and settlements of one user, in the order asked,
// each decided atomically. The worker path sends one operation at a time; the event
// loop sends every operation of one user asked for while it handles one batch of
// events, so the shared reads (counters, held total) and writes (the index's new
// members, the totals) are done once for all of them.
// A hold is one member of the hold index, "<amount>:<request id>", scored by its expiry
// (ms): a reservation costs the same whatever the number of holds in flight (the total
// is a counter), and only holds past their expiry (an instance that crashed) are
// visited, by the first reservation of a call. The total is deleted when it comes back
// to zero and the index when its last member goes, so neither needs an expiry of its
// own (one that could lapse while a hold is still counted in it).
// KEYS: held total, hold index, then the spend counters the operations name.
// ARGV[1]: now (ms); then each operation:
//   'R', counter (index into KEYS), amount, limit, member, expiry (ms)
//   'S', counter, member, amount, cost
// Returns, per operation: a reservation's {status (1 held, 0 refused, -1 counter
// missing), spend, held}; a settlement's counter after it (-1: missing, left so: the
// rebuild from the ledger will count this row).
const char* kBatchScript = R"lua(
local total, changed, swept = nil, false, false
local function held()
  if not total then total = tonumber(redis.call('GET', KEYS[1]) or '0') end
  return total
end
local function sweep()
  if swept then return end
  swept = true
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
  if #lapsed == 0 then return end
  local freed = 0
  for _, m in ipairs(lapsed) do
    freed = freed + tonumber(string.sub(m, 1, string.find(m, ':', 1, true) - 1))
    redis.call('ZREM', KEYS[2], m)
  end
  total, changed = math.max(held() - freed, 0), true
end
local spends, costs = {}, {}
local function spend_of(k)
  if spends[k] == nil then
    local v = redis.call('GET', KEYS[k])
    spends[k] = v and tonumber(v) or false
  end
  return spends[k]
end
local out, adds = {}, {}
local i = 2
while i <= #ARGV do
  local k = tonumber(ARGV[i + 1])
  if ARGV[i] == 'R' then
    local spend = spend_of(k)
    if not spend then
      out[#out + 1] = {-1, 0, 0}
    else
      sweep()
      local h, amount = held(), tonumber(ARGV[i + 2])
      if spend + h + amount > tonumber(ARGV[i + 3]) then
        out[#out + 1] = {0, spend, h}
      else
        out[#out + 1] = {1, spend, h}
        adds[#adds + 1] = ARGV[i + 5]
        adds[#adds + 1] = ARGV[i + 4]
        total, changed = h + amount, true
      end
    end
    i = i + 6
  else
    if ARGV[i + 2] ~= '' and redis.call('ZREM', KEYS[2], ARGV[i + 2]) == 1 then
      total, changed = math.max(held() - tonumber(ARGV[i + 3]), 0), true
    end
    local spend = spend_of(k)
    if spend then
      local cost = tonumber(ARGV[i + 4])
      spends[k], costs[k] = spend + cost, (costs[k] or 0) + cost
      out[#out + 1] = spend + cost
    else
      out[#out + 1] = -1
    end
    i = i + 5
  end
end
if #adds > 0 then redis.call('ZADD', KEYS[2], unpack(adds)) end
if changed then
  if total > 0 then
    redis.call('SET', KEYS[1], string.format('%.0f', total))
  else
    redis.call('DEL', KEYS[1])
  end
end
for k, c in pairs(costs) do
  if c ~= 0 then redis.call('INCRBY', KEYS[k], string.format('%.0f', c)) end
end
return out
)lua";

// Read-only: holds past their expiry are not counted (the next reservation clears them).
const char* kStateScript = R"lua(
local spend = redis.call('GET', KEYS[1])
if not spend then return {-1, 0} end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])) do
  held = held - tonumber(string.sub(m, 1, string.find(m, ':', 1, true) - 1))
end
return {tonumber(spend), held}
)lua";

std::string Sha1Hex(const std::string& s) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return HexEncode(d, sizeof d);
}

const std::string& BatchSha() {
  static const std::string sha = Sha1Hex(kBatchScript);
  return sha;
}
const std::string& StateSha() {
  static const std::string sha = Sha1Hex(kStateScript);
  return sha;
}

constexpr int64_t kUnlimited = (int64_t{1} << 53) - 1;

std::vector<std::string> EvalArgv(const std::string& sha, const std::vector<std::string>& keys,
                                  const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"EVALSHA", sha, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

bool IsNoScript(const Status& s) { return s.message().find("NOSCRIPT") != std::string::npos; }

Result<std::array<int64_t, 3>> ReserveReply(const RedisReply& r) {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 3)
    return Status::Internal("reserve: bad reply");
  return std::array<int64_t, 3>{r.elements[0].integer, r.elements[1].integer,
                                r.elements[2].integer};
}

// What settle needs of a hold, carried in its id:
// "<user window>/<global window or ->/<amount>/<global amount>/<request id>" (windows
// in micros since the epoch); the global amount may differ from the user's when the
// user's reservation was clamped after the global one was taken.
struct HoldRef {
  Timestamp user_window;
  std::optional<Timestamp> global_window;
  Money amount;
  Money global_amount;
  std::string request_id;
};

std::string HoldId(const HoldRef& h) {
  auto micros = [](Timestamp t) { return std::to_string(t.time_since_epoch().count()); };
  return micros(h.user_window) + "/" + (h.global_window ? micros(*h.global_window) : "-") + "/" +
         std::to_string(h.amount.nanos()) + "/" + std::to_string(h.global_amount.nanos()) + "/" +
         h.request_id;
}

HoldRef ParseHoldId(const std::string& id) {
  size_t at = 0;
  auto next = [&] {
    size_t slash = id.find('/', at);
    std::string field = id.substr(at, slash - at);
    at = slash + 1;
    return field;
  };
  auto micros = [](const std::string& f) {
    return Timestamp(std::chrono::microseconds(std::stoll(f)));
  };
  HoldRef h;
  h.user_window = micros(next());
  std::string global = next();
  if (global != "-") h.global_window = micros(global);
  h.amount = Money::FromNanos(std::stoll(next()));
  h.global_amount = Money::FromNanos(std::stoll(next()));
  h.request_id = id.substr(at);
  return h;
}

// A hold's member in the hold index: its amount first, for the scripts to read.
std::string Member(Money amount, const std::string& request_id) {
  return std::to_string(amount.nanos()) + ":" + request_id;
}

std::vector<std::string> SettleArgs(Money amount, const std::string& request_id, Money cost) {
  return {Member(amount, request_id), std::to_string(amount.nanos()), std::to_string(cost.nanos())};
}

// Leases (see redis_gate.h): a request admitted against one holds nothing of its own;
// its hold id names the lease instead of the request.
constexpr std::string_view kLeasePrefix = "tgl_";
constexpr auto kLeaseLife = std::chrono::seconds(1);
constexpr int64_t kLeaseShare = 16;   // at most 1/16 of what the user has left
constexpr int64_t kLeaseAtLeast = 4;  // and room for four requests, or no lease

bool Leased(const HoldRef& h) { return h.request_id.starts_with(kLeasePrefix); }

// A leased request's settlement: its cost, and no hold of its own to release (the
// empty member).
std::vector<std::string> LeasedCostArgs(Money cost) {
  return {"", "0", std::to_string(cost.nanos())};
}

std::vector<std::string> UserSettleArgs(const HoldRef& h, Money cost) {
  return Leased(h) ? LeasedCostArgs(cost) : SettleArgs(h.amount, h.request_id, cost);
}

// Only a hard limit refuses; soft and off still count, against no limit.
Money EnforcedLimit(const BudgetSettings& s) {
  return s.enforcement == Enforcement::kHard ? s.limit : Money::FromNanos(kUnlimited);
}

int64_t NowMs(Timestamp t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

RedisGate::RedisGate(Redis& redis, SettingsCache& settings, Ledger& ledger, const Clock& clock,
                     Metrics& metrics, std::chrono::seconds hold_ttl,
                     std::optional<GlobalCap> global_cap, AlertSink* alerts)
    : redis_(redis),
      settings_(settings),
      ledger_(ledger),
      clock_(clock),
      metrics_(metrics),
      hold_ttl_(hold_ttl),
      global_cap_(global_cap),
      alerts_(alerts) {}

namespace {
std::string Tag(int64_t user_id) {
  return user_id == 0 ? "tg:{global}" : "tg:{u:" + std::to_string(user_id) + "}";
}
}  // namespace

std::string RedisGate::SpendKey(int64_t user_id, Timestamp window_start) {
  return Tag(user_id) + ":spend:" + std::to_string(window_start.time_since_epoch().count());
}

std::vector<std::string> RedisGate::HoldKeys(int64_t user_id) {
  std::string tag = Tag(user_id);
  return {tag + ":hold-total", tag + ":hold-index"};
}

std::vector<std::string> RedisGate::ScriptKeys(int64_t user_id, Timestamp window_start) {
  std::vector<std::string> keys = HoldKeys(user_id);
  keys.insert(keys.begin(), SpendKey(user_id, window_start));
  return keys;
}

Window RedisGate::GlobalWindow() const {
  return CurrentWindow(global_cap_->period, 1, "UTC", Timestamp(), clock_.Now());
}

Result<RedisReply> RedisGate::Eval(const std::string& script, const std::string& sha,
                                   const std::vector<std::string>& keys,
                                   const std::vector<std::string>& args) {
  std::vector<std::string> argv = EvalArgv(sha, keys, args);
  auto r = redis_.Command(argv);
  if (!r.ok() && IsNoScript(r.status())) {
    argv[0] = "EVAL";
    argv[1] = script;
    r = redis_.Command(argv);
  }
  if (!r.ok()) metrics_.Inc(Counter::kRedisErrors);
  return r;
}

Status RedisGate::RebuildCounter(int64_t user_id, const Window& w) {
  auto spent = ledger_.SpendSince(user_id, w.start);
  if (!spent.ok()) return spent.status();
  auto ttl = std::chrono::duration_cast<std::chrono::seconds>(w.end - clock_.Now()) +
             std::chrono::hours(24);
  auto r = redis_.Command({"SET", SpendKey(user_id, w.start), std::to_string(spent->nanos()), "NX",
                           "EX", std::to_string(std::max<int64_t>(ttl.count(), 60))});
  return r.ok() ? Status::Ok() : r.status();
}

Result<RedisGate::ScriptResult> RedisGate::RunReserve(int64_t user_id, const Window& w,
                                                      Money amount, Money limit,
                                                      const std::string& request_id) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r =
        RunOne(user_id, {'R', SpendKey(user_id, w.start), ReserveArgs(amount, limit, request_id)});
    if (!r.ok()) return r.status();
    auto reply = ReserveReply(*r);
    if (!reply.ok()) return reply.status();
    ScriptResult out{(*reply)[0], Money::FromNanos((*reply)[1]), Money::FromNanos((*reply)[2])};
    if (out.status != -1) return out;
    if (Status s = RebuildCounter(user_id, w); !s.ok()) return s;
  }
  return Status::Unavailable("spend counter could not be rebuilt");
}

Admission RedisGate::Reserve(const ReserveRequest& request) {
  if (auto through_loop = ReserveThroughLoop(request)) return *std::move(through_loop);
  Admission a;
  auto budget = BudgetForAdmission(settings_, request.user_id, &a);
  if (!budget) return a;
  const Window& w = budget->window;
  Money limit = EnforcedLimit(budget->settings);
  std::optional<Window> gw;
  if (global_cap_) gw = GlobalWindow();
  const std::string& id = request.request_id;

  auto first = PlanReservation(request, Money::FromNanos(kUnlimited));
  Money amount = first ? first->amount : Money();
  auto release_global = [&] {
    if (gw) RunOne(0, {'S', SpendKey(0, gw->start), SettleArgs(amount, id, Money())});
  };
  if (gw) {
    auto g = RunReserve(0, *gw, amount, global_cap_->limit, id);
    if (!g.ok() || g->status != 1) {
      a.refusal = g.ok() ? Refusal::kGlobalCap : Refusal::kUnavailable;
      a.message = g.ok() ? "global cap $" + global_cap_->limit.ToUsdString() + ", spent $" +
                               g->spend.ToUsdString() + ", resets at " + FormatRfc3339(gw->end)
                         : g.status().message();
      return a;
    }
  }
  HoldRef hold{w.start, gw ? std::optional(gw->start) : std::nullopt, amount, amount, id};
  auto r = RunReserve(request.user_id, w, amount, limit, id);
  if (!r.ok()) {
    release_global();
    a.refusal = Refusal::kUnavailable;
    a.message = r.status().message();
    return a;
  }
  a.spend = r->spend;
  if (r->status == 0) {
    // Not enough for the full reservation: an unset cap may be clamped to what is left.
    auto plan = PlanReservation(request, limit - r->spend - r->held);
    if (plan) {
      r = RunReserve(request.user_id, w, plan->amount, limit, id);
      if (r.ok() && r->status == 1) {
        hold.amount = plan->amount;
        a.clamped_max_tokens = plan->clamped_max_tokens;
      }
    }
    if (!r.ok() || r->status != 1) {
      release_global();
      a.refusal = Refusal::kBudget;
      if (r.ok()) a.spend = r->spend;
      return a;
    }
  }
  a.hold_id = HoldId(hold);
  a.held = hold.amount;
  return a;
}

void RedisGate::Settle(int64_t user_id, const std::string& hold_id, Money cost) {
  if (hold_id.empty()) return;
  HoldRef h = ParseHoldId(hold_id);
  // A failed settle leaves the hold to expire; the cost is in the ledger row, which a
  // rebuilt counter includes.
  auto spent = RunOne(user_id, {'S', SpendKey(user_id, h.user_window), UserSettleArgs(h, cost)});
  if (Leased(h) && loop_) loop_->Post([this, lease = h.request_id] { LeaseSettled(lease); });
  if (alerts_ && spent.ok() && spent->integer >= 0 && cost > Money()) {
    auto budget = settings_.Get(user_id);
    RaiseAlert(user_id, h.user_window, cost, *spent,
               budget.ok() ? std::optional<UserBudget>(*budget) : std::nullopt);
  }
  if (h.global_window)
    RunOne(0,
           {'S', SpendKey(0, *h.global_window), SettleArgs(h.global_amount, h.request_id, cost)});
}

void RedisGate::RaiseAlert(int64_t user_id, Timestamp user_window, Money cost,
                           const RedisReply& spent, const std::optional<UserBudget>& budget) {
  if (!alerts_ || spent.integer < 0 || cost <= Money() || !budget ||
      budget->window.start != user_window)
    return;
  const BudgetSettings& s = budget->settings;
  Money spend = Money::FromNanos(spent.integer);
  alerts_->Raise(
      {user_id, LevelOf(spend, s.limit, s.yellow, s.orange, s.red), user_window, spend, s.limit});
}

std::vector<std::string> RedisGate::ReserveArgs(Money amount, Money limit,
                                                const std::string& request_id) const {
  int64_t expires = NowMs(clock_.Now()) +
                    std::chrono::duration_cast<std::chrono::milliseconds>(hold_ttl_).count();
  return {std::to_string(amount.nanos()), std::to_string(limit.nanos()), Member(amount, request_id),
          std::to_string(expires)};
}

void RedisGate::EvalNoWait(const char* script, const std::string& sha,
                           const std::vector<std::string>& keys,
                           const std::vector<std::string>& args, AsyncRedis::Callback done) {
  // Kept for the rare NOSCRIPT retry, shared rather than copied into the callback.
  auto argv = std::make_shared<std::vector<std::string>>(EvalArgv(sha, keys, args));
  async_->Command(
      *argv, [this, script, argv, done = std::move(done)](Result<RedisReply> r) mutable {
        if (r.ok() || !IsNoScript(r.status())) {
          if (!r.ok()) metrics_.Inc(Counter::kRedisErrors);
          return done(std::move(r));
        }
        (*argv)[0] = "EVAL";
        (*argv)[1] = script;
        async_->Command(*argv, [this, done = std::move(done)](Result<RedisReply> again) {
          if (!again.ok()) metrics_.Inc(Counter::kRedisErrors);
          done(std::move(again));
        });
      });
}

bool RedisGate::ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) {
  if (async_ == nullptr || global_cap_) return false;
  Admission a;
  auto budget = CachedBudgetForAdmission(settings_, request.user_id, &a);
  if (!budget) return false;
  Money limit = EnforcedLimit(budget->settings);
  auto plan = PlanReservation(request, Money::FromNanos(kUnlimited));
  Money amount = plan ? plan->amount : Money();
  Timestamp window = budget->window.start;
  a.held = amount;
  if (auto leased = AdmitOnLease(request.user_id, window, limit, amount)) {
    a.hold_id = std::move(*leased);
    done(a);
    return true;
  }
  std::string hold = HoldId({window, std::nullopt, amount, Money(), request.request_id});
  Enqueue(request.user_id,
          {{'R', SpendKey(request.user_id, window), ReserveArgs(amount, limit, request.request_id)},
           [this, a, hold, user = request.user_id, window, limit,
            done = std::move(done)](const RedisReply* r) mutable {
             // Refused (the cap may yet be clamped), a counter to rebuild, or Redis
             // failing: Reserve() decides.
             if (r == nullptr) return done(std::nullopt);
             auto reply = ReserveReply(*r);
             if (!reply.ok() || (*reply)[0] != 1) return done(std::nullopt);
             a.spend = Money::FromNanos((*reply)[1]);
             a.hold_id = hold;
             if (!active_lease_.contains(user))
               TakeLease(user, window, limit, a.held,
                         limit - a.spend - Money::FromNanos((*reply)[2]) - a.held);
             done(a);
           }});
  return true;
}

// A worker's reservation (a stream's) is asked of the loop first, where the user's
// lease may admit it without Redis, and where a reservation alone may take a lease.
std::optional<Admission> RedisGate::ReserveThroughLoop(const ReserveRequest& request) {
  if (lease_requests_ <= 0 || loop_ == nullptr || global_cap_ || request.declined_on_loop ||
      loop_->InLoopThread())
    return std::nullopt;
  auto answer = std::make_shared<std::promise<std::optional<Admission>>>();
  auto got = answer->get_future();
  loop_->Post([this, request, answer] {
    auto done = [answer](std::optional<Admission> a) { answer->set_value(std::move(a)); };
    if (!ReserveNoWait(request, done)) done(std::nullopt);
  });
  // The loop answers at once from a lease, or within a Redis round trip. One that does
  // not (stopped, or Redis hanging) is not waited for long: decide here, as before.
  // (Should it answer later, what it reserved lapses with hold_ttl.)
  if (got.wait_for(std::chrono::milliseconds(500)) != std::future_status::ready)
    return std::nullopt;
  return got.get();
}

void RedisGate::set_async(AsyncRedis* async, EventLoop* loop) {
  async_ = async;
  loop_ = loop;
  if (loop_ && lease_requests_ > 0)
    loop_->Post([this] { loop_->EverySecond([this] { RetireOldLeases(); }); });
}

std::optional<std::string> RedisGate::AdmitOnLease(int64_t user_id, Timestamp window, Money limit,
                                                   Money amount) {
  auto active = active_lease_.find(user_id);
  if (active == active_lease_.end()) return std::nullopt;
  Lease& l = leases_.at(active->second);
  if (l.window != window || l.limit != limit || clock_.Now() - l.taken >= kLeaseLife ||
      amount > l.amount - l.used) {
    Retire(l.id);
    return std::nullopt;
  }
  l.used += amount;
  ++l.in_flight;
  metrics_.Inc(Counter::kLeaseAdmissions);
  std::string hold = HoldId({l.window, std::nullopt, Money(), Money(), l.id});
  // Three quarters used: the next lease is asked for now, so the requests that come
  // while Redis answers are admitted against this one, not each sent alone. Sized on
  // what was left after this one, as though it were all spent. Only far from the limit
  // (a lease of full size): near it, two leases at once would hold more of what is left.
  bool full_size = l.amount.nanos() >= amount.nanos() * lease_requests_;
  if (full_size && !l.renewing && (l.amount - l.used).nanos() * 4 < l.amount.nanos()) {
    l.renewing = true;
    TakeLease(user_id, window, limit, amount, l.room_after);
  }
  return hold;
}

void RedisGate::TakeLease(int64_t user_id, Timestamp window, Money limit, Money amount,
                          Money room) {
  if (lease_requests_ <= 0 || amount <= Money() || leasing_.contains(user_id)) return;
  int64_t size = amount.nanos() * lease_requests_;
  if (limit.nanos() != kUnlimited) size = std::min(size, room.nanos() / kLeaseShare);
  if (size < amount.nanos() * kLeaseAtLeast) return;  // near the limit: requests alone
  Money lease = Money::FromNanos(size);
  std::string id = std::string(kLeasePrefix) + RandomHex(8);
  leasing_.insert(user_id);
  Enqueue(user_id, {{'R', SpendKey(user_id, window), ReserveArgs(lease, limit, id)},
                    [this, user_id, window, limit, lease, id](const RedisReply* r) {
                      leasing_.erase(user_id);
                      if (r == nullptr) return;  // if taken after all, its hold lapses
                      auto reply = ReserveReply(*r);
                      if (!reply.ok() || (*reply)[0] != 1) return;
                      if (auto old = active_lease_.find(user_id); old != active_lease_.end())
                        Retire(old->second);
                      Money before = Money::FromNanos((*reply)[1]) + Money::FromNanos((*reply)[2]);
                      leases_[id] = Lease{.id = id,
                                          .user_id = user_id,
                                          .window = window,
                                          .taken = clock_.Now(),
                                          .limit = limit,
                                          .amount = lease,
                                          .room_after = limit - before - lease};
                      active_lease_[user_id] = id;
                    }});
}

void RedisGate::LeaseSettled(const std::string& lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  if (--it->second.in_flight == 0 && it->second.retired) Retire(lease_id);
}

void RedisGate::Retire(const std::string& lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (!l.retired) {
    l.retired = true;
    active_lease_.erase(l.user_id);
  }
  if (l.in_flight > 0) return;
  SendLeasedCosts(l.user_id);  // the costs reach the counter before the hold goes
  Enqueue(l.user_id, {ReleaseOp(l), [](const RedisReply*) {}});
  leases_.erase(it);
}

// Its requests' costs are in the spend counter already: the hold goes, nothing added.
RedisGate::GateOp RedisGate::ReleaseOp(const Lease& l) {
  return {'S', SpendKey(l.user_id, l.window), SettleArgs(l.amount, l.id, Money())};
}

void RedisGate::ReleaseLeases() {
  for (auto& [user, costs] : std::exchange(leased_costs_, {}))
    RunOne(user, {'S', std::move(costs.counter), LeasedCostArgs(costs.sum)});
  for (const auto& [id, l] : leases_) {
    if (l.in_flight == 0) RunOne(l.user_id, ReleaseOp(l));
  }
  leases_.clear();
  active_lease_.clear();
}

void RedisGate::RetireOldLeases() {
  std::vector<std::string> old;
  for (const auto& [user, id] : active_lease_) {
    if (clock_.Now() - leases_.at(id).taken >= kLeaseLife) old.push_back(id);
  }
  for (const std::string& id : old) Retire(id);
}

bool RedisGate::SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) {
  if (async_ == nullptr) return false;
  if (hold_id.empty()) return true;
  HoldRef h = ParseHoldId(hold_id);
  if (Leased(h)) {
    AddLeasedCost(user_id, h.user_window, cost);
    LeaseSettled(h.request_id);
    return true;
  }
  Enqueue(user_id,
          {{'S', SpendKey(user_id, h.user_window), SettleArgs(h.amount, h.request_id, cost)},
           [this, user_id, user = h.user_window, cost](const RedisReply* spent) {
             // The settings as cached, even if due for a reload: an alert level
             // needs the limit, which a reload would rarely change.
             if (alerts_ && spent)
               RaiseAlert(user_id, user, cost, *spent, settings_.Peek(user_id, true));
           }});
  if (h.global_window)
    Enqueue(0,
            {{'S', SpendKey(0, *h.global_window), SettleArgs(h.global_amount, h.request_id, cost)},
             [](const RedisReply*) {}});
  return true;
}

// Summed with the user's others until leased_cost_delay_ has passed (one timer for all
// users), or until sent earlier: the window turning, the lease's release (Retire),
// shutdown (ReleaseLeases). The lease's hold covers them meanwhile.
void RedisGate::AddLeasedCost(int64_t user_id, Timestamp window, Money cost) {
  std::string counter = SpendKey(user_id, window);
  auto pending = leased_costs_.find(user_id);
  if (pending != leased_costs_.end() && pending->second.counter != counter) {
    SendLeasedCosts(user_id);  // the window turned: the old counter's sum goes first
    pending = leased_costs_.end();
  }
  if (pending == leased_costs_.end())
    pending = leased_costs_.emplace(user_id, LeasedCosts{std::move(counter), window}).first;
  pending->second.sum += cost;
  if (costs_due_) return;
  costs_due_ = true;
  loop_->RunAfter(leased_cost_delay_, [this] {
    costs_due_ = false;
    FlushLeasedCosts();
  });
}

void RedisGate::FlushLeasedCosts() {
  while (!leased_costs_.empty()) SendLeasedCosts(leased_costs_.begin()->first);
}

void RedisGate::SendLeasedCosts(int64_t user_id) {
  auto pending = leased_costs_.find(user_id);
  if (pending == leased_costs_.end()) return;
  LeasedCosts costs = std::move(pending->second);
  leased_costs_.erase(pending);
  Enqueue(user_id,
          {{'S', std::move(costs.counter), LeasedCostArgs(costs.sum)},
           [this, user_id, window = costs.window, sum = costs.sum](const RedisReply* spent) {
             // The counter is gone (Redis lost it, with the lease's hold): no
             // more admissions against the lease; a reservation rebuilds it.
             if (spent && spent->integer < 0) {
               if (auto lease = active_lease_.find(user_id); lease != active_lease_.end())
                 Retire(lease->second);
             }
             if (alerts_ && spent)
               RaiseAlert(user_id, window, sum, *spent, settings_.Peek(user_id, true));
           }});
}

void RedisGate::Enqueue(int64_t user_id, LoopOp op) {
  auto batch = batches_.try_emplace(user_id).first;
  batch->second.push_back(std::move(op));
  if (batch->second.size() >= kMaxBatch) {
    std::vector<LoopOp> full = std::move(batch->second);
    batches_.erase(batch);
    SendBatch(user_id, std::move(full));
    return async_->Flush();
  }
  if (batch_posted_) return;
  batch_posted_ = true;
  // Posted now, so it runs before whatever the caller posts next (an answer goes out
  // after the settlement it bills has been written to Redis).
  loop_->Post([this] {
    batch_posted_ = false;
    for (auto& [user, ops] : std::exchange(batches_, {})) SendBatch(user, std::move(ops));
    async_->Flush();
  });
}

void RedisGate::BatchCall(int64_t user_id, std::vector<GateOp> ops, std::vector<std::string>* keys,
                          std::vector<std::string>* args) const {
  *keys = HoldKeys(user_id);
  *args = {std::to_string(NowMs(clock_.Now()))};
  for (GateOp& op : ops) {
    auto counter = std::find(keys->begin() + 2, keys->end(), op.counter);
    if (counter == keys->end()) counter = keys->insert(keys->end(), std::move(op.counter));
    args->push_back(std::string(1, op.kind));
    args->push_back(std::to_string(counter - keys->begin() + 1));
    for (std::string& a : op.args) args->push_back(std::move(a));
  }
}

Result<RedisReply> RedisGate::RunOne(int64_t user_id, GateOp op) {
  std::vector<std::string> keys, args;
  BatchCall(user_id, {std::move(op)}, &keys, &args);
  auto r = Eval(kBatchScript, BatchSha(), keys, args);
  if (!r.ok()) return r.status();
  if (r->type != RedisReply::Type::kArray || r->elements.size() != 1) {
    metrics_.Inc(Counter::kRedisErrors);
    return Status::Internal("gate script: bad reply");
  }
  return std::move(r->elements[0]);
}

void RedisGate::SendBatch(int64_t user_id, std::vector<LoopOp> waiting) {
  std::vector<GateOp> ops;
  std::vector<std::function<void(const RedisReply*)>> dones;
  for (LoopOp& w : waiting) {
    ops.push_back(std::move(w.op));
    dones.push_back(std::move(w.done));
  }
  std::vector<std::string> keys, args;
  BatchCall(user_id, std::move(ops), &keys, &args);
  EvalNoWait(
      kBatchScript, BatchSha(), keys, args, [this, dones = std::move(dones)](Result<RedisReply> r) {
        bool whole =
            r.ok() && r->type == RedisReply::Type::kArray && r->elements.size() == dones.size();
        if (r.ok() && !whole) metrics_.Inc(Counter::kRedisErrors);
        if (!whole) {
          // Redis failing: no more admissions against leases (their holds lapse).
          leases_.clear();
          active_lease_.clear();
        }
        for (size_t i = 0; i < dones.size(); ++i) dones[i](whole ? &r->elements[i] : nullptr);
      });
}

Result<SpendState> RedisGate::State(int64_t user_id) {
  auto budget = settings_.Get(user_id);
  if (!budget.ok()) return budget.status();
  return State(user_id, budget->window);
}

Result<SpendState> RedisGate::State(int64_t user_id, const Window& w) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = Eval(kStateScript, StateSha(), ScriptKeys(user_id, w.start),
                  {std::to_string(NowMs(clock_.Now()))});
    if (!r.ok()) return r.status();
    if (r->elements.size() == 2 && r->elements[0].integer >= 0) {
      return SpendState{Money::FromNanos(r->elements[0].integer),
                        Money::FromNanos(r->elements[1].integer), w};
    }
    if (Status s = RebuildCounter(user_id, w); !s.ok()) return s;
  }
  return Status::Unavailable("spend counter could not be rebuilt");
}

}  // namespace tollgate
