#include "budget/redis_gate.h"

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
// The gate's one script: operations of one account, in the order asked, each decided
// atomically. The worker path sends one operation at a time; the event loop sends
// every operation of one account asked for while it handles one batch of events, so
// the shared reads (counter, held total) and writes (the total) are done once for all.
// A hold is a field of the account's hold-amt hash (id -> amount) with its expiry in the
// hold-exp sorted set; held is their sum, so a reservation costs the same whatever the
// number of holds in flight, and only holds past their expiry (an instance that
// crashed) are visited, by the first reservation of a call. held is deleted when it
// comes back to zero, so it needs no expiry of its own.
// KEYS: hold-sum, hold-exp, hold-amt, then the spend counters the operations name.
// ARGV[1]: now (ms); then each operation:
//   'R', counter (index into KEYS), amount, limit, hold id, expiry (ms); a hold id
//        already held is reserved already (RedisCounters placed it again after a
//        restart, or a worker asks again for what the loop reserved)
//   'D', hold id, amount (release up to that much of the hold)
// Returns, per operation: a reservation's {status (1 held, 0 refused, -1 counter
// missing), spend, held}; a release's amount released.
const LuaScript kGateScript(R"lua(
local total, changed, swept = nil, false, false
local function held()
  if not total then total = tonumber(redis.call('GET', KEYS[1]) or '0') end
  return total
end
local function sweep()
  if swept then return end
  swept = true
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 4000)
  if #lapsed == 0 then return end
  local freed = 0
  for _, a in ipairs(redis.call('HMGET', KEYS[3], unpack(lapsed))) do
    if a then freed = freed + tonumber(a) end
  end
  redis.call('HDEL', KEYS[3], unpack(lapsed))
  redis.call('ZREM', KEYS[2], unpack(lapsed))
  total, changed = held() - freed, true
end
local spends = {}
local function spend_of(k)
  if spends[k] == nil then
    local v = redis.call('GET', KEYS[k])
    spends[k] = v and tonumber(v) or false
  end
  return spends[k]
end
local out = {}
local i = 2
while i <= #ARGV do
  if ARGV[i] == 'R' then
    local spend = spend_of(tonumber(ARGV[i + 1]))
    if not spend then
      out[#out + 1] = {-1, 0, 0}
    else
      sweep()
      local h, amount = held(), tonumber(ARGV[i + 2])
      if redis.call('HEXISTS', KEYS[3], ARGV[i + 4]) == 1 then
        out[#out + 1] = {1, spend, h}  -- held already (placed again in a new dataset)
      elseif spend + h + amount > tonumber(ARGV[i + 3]) then
        out[#out + 1] = {0, spend, h}
      else
        out[#out + 1] = {1, spend, h}
        redis.call('HINCRBY', KEYS[3], ARGV[i + 4], ARGV[i + 2])
        redis.call('ZADD', KEYS[2], ARGV[i + 5], ARGV[i + 4])
        total, changed = h + amount, true
      end
    end
    i = i + 6
  else
    local cur = tonumber(redis.call('HGET', KEYS[3], ARGV[i + 1]) or '0')
    local d = math.min(cur, tonumber(ARGV[i + 2]))
    if d > 0 then
      if cur - d <= 0 then
        redis.call('HDEL', KEYS[3], ARGV[i + 1])
        redis.call('ZREM', KEYS[2], ARGV[i + 1])
      else
        redis.call('HSET', KEYS[3], ARGV[i + 1], string.format('%.0f', cur - d))
      end
      total, changed = held() - d, true
    end
    out[#out + 1] = d
    i = i + 3
  end
end
if changed then
  if total > 0 then
    redis.call('SET', KEYS[1], string.format('%.0f', total))
  else
    redis.call('DEL', KEYS[1])
  end
end
return out
)lua");

// Read-only: holds past their expiry are not counted (the next reservation clears them).
// KEYS: counter, hold-sum, hold-exp, hold-amt.
const LuaScript kStateScript(R"lua(
local spend = redis.call('GET', KEYS[1])
if not spend then return {-1, 0} end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, 4000)
if #lapsed > 0 then
  for _, a in ipairs(redis.call('HMGET', KEYS[4], unpack(lapsed))) do
    if a then held = held - tonumber(a) end
  end
end
return {tonumber(spend), held}
)lua");

constexpr int64_t kUnlimited = (int64_t{1} << 53) - 1;

Result<std::array<int64_t, 3>> ReserveReply(const RedisReply& r) {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 3)
    return Status::Internal("reserve: bad reply");
  return std::array<int64_t, 3>{r.elements[0].integer, r.elements[1].integer,
                                r.elements[2].integer};
}

// Leases (see redis_gate.h): a request admitted against one holds nothing of its own;
// its hold id names the lease, with its own reservation as the amount its row releases.
constexpr std::string_view kLeasePrefix = "tgl_";
constexpr auto kLeaseLife = std::chrono::seconds(1);
constexpr int64_t kLeaseShare = 16;   // at most 1/16 of what the user has left
constexpr int64_t kLeaseAtLeast = 4;  // and room for four requests, or no lease

// Only a hard limit refuses; soft and off still count, against no limit.
Money EnforcedLimit(const BudgetSettings& s) {
  return s.enforcement == Enforcement::kHard ? s.limit : Money::FromNanos(kUnlimited);
}

std::string SpendKey(int64_t account, Timestamp window_start) {
  return RedisCounters::SpendKey(account, window_start);
}

}  // namespace

RedisGate::RedisGate(Redis& redis, SettingsCache& settings, RedisCounters& counters,
                     const Clock& clock, Metrics& metrics, std::chrono::seconds hold_ttl,
                     std::optional<GlobalCap> global_cap, AlertSink* alerts)
    : redis_(redis),
      settings_(settings),
      counters_(counters),
      clock_(clock),
      metrics_(metrics),
      hold_ttl_(hold_ttl),
      global_cap_(global_cap),
      alerts_(alerts) {
  if (alerts_) {
    counters_.set_on_applied(
        [this](const CounterDelta& applied, Money spend) { RaiseAlert(applied, spend); });
  }
}

Window RedisGate::GlobalWindow() const {
  return CurrentWindow(global_cap_->period, 1, "UTC", Timestamp(), clock_.Now());
}

Result<RedisGate::ScriptResult> RedisGate::RunReserve(int64_t account, const Window& w,
                                                      Money amount, Money limit,
                                                      const std::string& hold) {
  LiveHolds& live = counters_.holds();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto args = ReserveArgs(amount, limit, hold);
    live.Add(account, hold, amount, ExpiryMs());  // before Redis may hold it
    auto r = RunOne(account, {'R', SpendKey(account, w.start), std::move(args)});
    auto reply = r.ok() ? ReserveReply(*r) : Result<std::array<int64_t, 3>>(r.status());
    if (!reply.ok() || (*reply)[0] != 1) live.Release(account, hold, amount);
    if (!reply.ok()) return reply.status();
    ScriptResult out{(*reply)[0], Money::FromNanos((*reply)[1]), Money::FromNanos((*reply)[2])};
    if (out.status != -1) return out;
    if (Status s = counters_.Build(account, w); !s.ok()) return s;
  }
  return Status::Unavailable("spend counter could not be built");
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
  if (!first) {  // past any amount: nothing could ever hold it
    a.refusal = Refusal::kBudget;
    a.message = "the request is too large to reserve";
    return a;
  }
  Money amount = first->amount;
  auto release_global = [&] {
    if (!gw) return;
    counters_.holds().Release(0, id, amount);
    RunOne(0, {'D', "", {id, std::to_string(amount.nanos())}});
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
  a.window = w;
  a.global_window = gw;
  return a;
}

void RedisGate::RaiseAlert(const CounterDelta& applied, Money spend) {
  if (applied.account == 0 || applied.cost <= Money()) return;
  auto budget = settings_.Peek(applied.account, true);
  if (!budget || budget->window.start != applied.window.start) return;
  const BudgetSettings& s = budget->settings;
  alerts_->Raise({applied.account, LevelOf(spend, s.limit, s.yellow, s.orange, s.red),
                  applied.window.start, spend, s.limit});
}

int64_t RedisGate::ExpiryMs() const {
  return Millis(clock_.Now()) +
         std::chrono::duration_cast<std::chrono::milliseconds>(hold_ttl_).count();
}

std::vector<std::string> RedisGate::ReserveArgs(Money amount, Money limit,
                                                const std::string& hold) const {
  return {std::to_string(amount.nanos()), std::to_string(limit.nanos()), hold,
          std::to_string(ExpiryMs())};
}

bool RedisGate::ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) {
  if (async_ == nullptr || global_cap_) return false;
  Admission a;
  auto budget = CachedBudgetForAdmission(settings_, request.user_id, &a);
  if (!budget) return false;
  Money limit = EnforcedLimit(budget->settings);
  auto plan = PlanReservation(request, Money::FromNanos(kUnlimited));
  if (!plan) return false;  // Reserve() words the refusal
  Money amount = plan->amount;
  Timestamp window = budget->window.start;
  a.held = amount;
  a.window = budget->window;
  if (auto leased = AdmitOnLease(request.user_id, window, limit, amount)) {
    a.hold_id = std::move(*leased);
    done(a);
    return true;
  }
  std::string hold = HoldId({window, std::nullopt, amount, Money(), request.request_id});
  counters_.holds().Add(request.user_id, request.request_id, amount, ExpiryMs());
  Enqueue(request.user_id,
          {{'R', SpendKey(request.user_id, window),
            ReserveArgs(amount, limit, request.request_id)},
           [this, a, hold, id = request.request_id, user = request.user_id, window, limit,
            done = std::move(done)](const RedisReply* r) mutable {
             // Refused (the cap may yet be clamped), a counter to build, or Redis
             // failing: Reserve() decides.
             auto reply = r ? ReserveReply(*r) : Result<std::array<int64_t, 3>>(Status::Ok());
             if (r == nullptr || !reply.ok() || (*reply)[0] != 1) {
               counters_.holds().Release(user, id, a.held);
               return done(std::nullopt);
             }
             a.spend = Money::FromNanos((*reply)[1]);
             a.hold_id = hold;
             if (!leases_.contains(user))
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
  auto active = leases_.find(user_id);
  if (active == leases_.end()) return std::nullopt;
  Lease& l = active->second;
  if (l.window != window || l.limit != limit || clock_.Now() - l.taken >= kLeaseLife ||
      amount > l.amount - l.used) {
    Retire(user_id);
    return std::nullopt;
  }
  l.used += amount;
  metrics_.Inc(Counter::kLeaseAdmissions);
  std::string hold = HoldId({l.window, std::nullopt, amount, Money(), l.id});
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
  counters_.holds().Add(user_id, id, lease, ExpiryMs());
  Enqueue(user_id, {{'R', SpendKey(user_id, window), ReserveArgs(lease, limit, id)},
                    [this, user_id, window, limit, lease, id](const RedisReply* r) {
                      leasing_.erase(user_id);
                      // Not taken (if taken after all, its hold lapses).
                      auto reply = r ? ReserveReply(*r) : Result<std::array<int64_t, 3>>(Status::Ok());
                      if (r == nullptr || !reply.ok() || (*reply)[0] != 1) {
                        counters_.holds().Release(user_id, id, lease);
                        return;
                      }
                      if (leases_.contains(user_id)) Retire(user_id);
                      Money before = Money::FromNanos((*reply)[1]) + Money::FromNanos((*reply)[2]);
                      leases_[user_id] = Lease{.id = id,
                                               .user_id = user_id,
                                               .window = window,
                                               .taken = clock_.Now(),
                                               .limit = limit,
                                               .amount = lease,
                                               .room_after = limit - before - lease};
                    }});
}

RedisGate::GateOp RedisGate::ReleaseUnused(const Lease& l) {
  counters_.holds().Release(l.user_id, l.id, l.amount - l.used);
  return {'D', "", {l.id, std::to_string((l.amount - l.used).nanos())}};
}

void RedisGate::Retire(int64_t user_id) {
  auto it = leases_.find(user_id);
  if (it == leases_.end()) return;
  if (it->second.used < it->second.amount)
    Enqueue(user_id, {ReleaseUnused(it->second), [](const RedisReply*) {}});
  leases_.erase(it);
}

void RedisGate::ReleaseLeases() {
  for (const auto& [user, l] : std::exchange(leases_, {})) {
    if (l.used < l.amount) RunOne(user, ReleaseUnused(l));
  }
}

void RedisGate::RetireOldLeases() {
  std::vector<int64_t> old;
  for (const auto& [user, l] : leases_) {
    if (clock_.Now() - l.taken >= kLeaseLife) old.push_back(user);
  }
  for (int64_t user : old) Retire(user);
}

void RedisGate::Enqueue(int64_t account, LoopOp op) {
  auto batch = batches_.try_emplace(account).first;
  batch->second.push_back(std::move(op));
  if (batch->second.size() >= kMaxBatch) {
    std::vector<LoopOp> full = std::move(batch->second);
    batches_.erase(batch);
    SendBatch(account, std::move(full));
    return async_->Flush();
  }
  if (batch_posted_) return;
  batch_posted_ = true;
  // Posted now, so it runs before whatever the caller posts next.
  loop_->Post([this] {
    batch_posted_ = false;
    for (auto& [owner, ops] : std::exchange(batches_, {})) SendBatch(owner, std::move(ops));
    async_->Flush();
  });
}

void RedisGate::BatchCall(int64_t account, std::vector<GateOp> ops,
                          std::vector<std::string>* keys, std::vector<std::string>* args) const {
  *keys = RedisCounters::HoldKeys(account);
  *args = {std::to_string(Millis(clock_.Now()))};
  for (GateOp& op : ops) {
    args->push_back(std::string(1, op.kind));
    if (op.kind == 'R') {
      auto counter = std::find(keys->begin() + 3, keys->end(), op.counter);
      if (counter == keys->end()) counter = keys->insert(keys->end(), std::move(op.counter));
      args->push_back(std::to_string(counter - keys->begin() + 1));
    }
    for (std::string& a : op.args) args->push_back(std::move(a));
  }
}

Result<RedisReply> RedisGate::RunOne(int64_t account, GateOp op) {
  std::vector<std::string> keys, args;
  BatchCall(account, {std::move(op)}, &keys, &args);
  auto r = kGateScript.Run(redis_, keys, args);
  if (!r.ok()) {
    metrics_.Inc(Counter::kRedisErrors);
    return r.status();
  }
  if (r->type != RedisReply::Type::kArray || r->elements.size() != 1) {
    metrics_.Inc(Counter::kRedisErrors);
    return Status::Internal("gate script: bad reply");
  }
  return std::move(r->elements[0]);
}

void RedisGate::SendBatch(int64_t account, std::vector<LoopOp> waiting) {
  std::vector<GateOp> ops;
  std::vector<std::function<void(const RedisReply*)>> dones;
  for (LoopOp& w : waiting) {
    ops.push_back(std::move(w.op));
    dones.push_back(std::move(w.done));
  }
  std::vector<std::string> keys, args;
  BatchCall(account, std::move(ops), &keys, &args);
  // Kept for the rare NOSCRIPT retry, shared rather than copied into the callback.
  auto argv = std::make_shared<std::vector<std::string>>(kGateScript.Argv(keys, args));
  auto finish = [this, dones = std::move(dones)](Result<RedisReply> r) {
    if (!r.ok()) metrics_.Inc(Counter::kRedisErrors);
    bool whole =
        r.ok() && r->type == RedisReply::Type::kArray && r->elements.size() == dones.size();
    if (r.ok() && !whole) metrics_.Inc(Counter::kRedisErrors);
    // Redis failing: no more admissions against leases (their holds lapse; the part
    // their requests use is still held, placed again should Redis come back empty).
    if (!whole) {
      for (const auto& [user, l] : std::exchange(leases_, {}))
        counters_.holds().Release(user, l.id, l.amount - l.used);
    }
    for (size_t i = 0; i < dones.size(); ++i) dones[i](whole ? &r->elements[i] : nullptr);
  };
  async_->Command(*argv, [this, argv, finish = std::move(finish)](Result<RedisReply> r) mutable {
    if (r.ok() || !LuaScript::IsNoScript(r.status())) return finish(std::move(r));
    (*argv)[0] = "EVAL";
    (*argv)[1] = kGateScript.text();
    async_->Command(*argv, std::move(finish));
  });
}

Result<SpendState> RedisGate::State(int64_t user_id) {
  auto budget = settings_.Get(user_id);
  if (!budget.ok()) return budget.status();
  return State(user_id, budget->window);
}

Result<SpendState> RedisGate::State(int64_t user_id, const Window& w) {
  std::vector<std::string> keys = RedisCounters::HoldKeys(user_id);
  keys.insert(keys.begin(), SpendKey(user_id, w.start));
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = kStateScript.Run(redis_, keys, {std::to_string(Millis(clock_.Now()))});
    if (!r.ok()) {
      metrics_.Inc(Counter::kRedisErrors);
      return r.status();
    }
    if (r->elements.size() == 2 && r->elements[0].integer >= 0) {
      return SpendState{Money::FromNanos(r->elements[0].integer),
                        Money::FromNanos(r->elements[1].integer), w};
    }
    if (Status s = counters_.Build(user_id, w); !s.ok()) return s;
  }
  return Status::Unavailable("spend counter could not be built");
}

}  // namespace tollgate
