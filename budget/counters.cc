#include "budget/counters.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "budget/keys.h"
#include "budget/ledger.h"

namespace tollgate {
namespace {

// Amounts are nano-dollars; Lua numbers are doubles, exact up to 2^53 nanos (about
// $9 million), far above any account's window. Amounts going back to Redis are the
// caller's strings, or formatted with '%.0f' (a Lua number may print as 1e+17).
//
// Adds a committed batch to the counters, once per dataset: KEYS[1] the epoch,
// KEYS[2] the batch's applied marker, then the counters, then (hold-sum, hold-exp,
// hold-amt) per account whose holds the rows release. ARGV[1] the marker's life (s),
// ARGV[2] the number of counters, their costs, then the number of accounts releasing,
// and for each: how many releases, then (hold id, amount) pairs. Nothing is written
// when a counter to add to is missing: {'missing', epoch, indexes}; the caller builds
// them and calls again. Otherwise {'ok' or 'dup', epoch, counters after}.
const LuaScript kApplyScript(R"lua(
local epoch = redis.call('GET', KEYS[1]) or ''
if redis.call('EXISTS', KEYS[2]) == 1 then return {'dup', epoch, {}} end
local nc = tonumber(ARGV[2])
local missing = {}
for i = 1, nc do
  if ARGV[2 + i] ~= '0' and redis.call('EXISTS', KEYS[2 + i]) == 0 then
    missing[#missing + 1] = i
  end
end
if #missing > 0 then return {'missing', epoch, missing} end
local after = {}
for i = 1, nc do
  if ARGV[2 + i] ~= '0' then
    after[i] = redis.call('INCRBY', KEYS[2 + i], ARGV[2 + i])
  else
    after[i] = tonumber(redis.call('GET', KEYS[2 + i]) or '-1')
  end
end
local a, k = 3 + nc, 3 + nc
local accounts = tonumber(ARGV[a])
a = a + 1
for _ = 1, accounts do
  local held, exp, amt = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local n = tonumber(ARGV[a])
  a = a + 1
  local freed = 0
  for _ = 1, n do
    local id, want = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    local cur = tonumber(redis.call('HGET', amt, id) or '0')
    if cur > 0 then
      local d = math.min(cur, want)
      if cur - d <= 0 then
        redis.call('HDEL', amt, id)
        redis.call('ZREM', exp, id)
      else
        redis.call('HSET', amt, id, string.format('%.0f', cur - d))
      end
      freed = freed + d
    end
  end
  if freed > 0 then
    local total = tonumber(redis.call('GET', held) or '0') - freed
    if total > 0 then
      redis.call('SET', held, string.format('%.0f', total))
    else
      redis.call('DEL', held)
    end
  end
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return {'ok', epoch, after}
)lua");

// The dataset's epoch, made when missing: KEYS[1] the epoch, ARGV[1] a fresh id.
// Returns {epoch, now (ms, Redis's clock)}.
const LuaScript kEpochScript(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if not v then
  v = ARGV[1] .. ':' .. string.format('%.0f', now)
  redis.call('SET', KEYS[1], v)
end
return {v, now}
)lua");

// A counter built from the ledger, if the dataset is still the one it was summed for
// and no other instance has built it meanwhile, with a hold for each batch pending at
// the sum: KEYS epoch, counter, hold-sum, hold-exp, hold-amt; ARGV epoch, sum, life (s),
// the holds' expiry (ms), then (hold id, amount) pairs. No batch can have been applied
// to this dataset's counter before it exists (Apply refuses a missing counter), so each
// hold covers a batch still to come. Returns 1 when the counter exists after it, 0 when
// the epoch changed.
const LuaScript kInstallScript(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
local added = 0
for i = 5, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[4], ARGV[4], ARGV[i])
    added = added + tonumber(ARGV[i + 1])
  end
end
if added > 0 then
  local total = tonumber(redis.call('GET', KEYS[3]) or '0') + added
  redis.call('SET', KEYS[3], string.format('%.0f', total))
end
return 1
)lua");

// Places holds in a new dataset, each only if it is not there yet (a request reserving
// in it meanwhile placed it itself): KEYS[1] the epoch, then (hold-sum, hold-exp,
// hold-amt) per account; ARGV[1] the epoch they are meant for, then per account the
// number of holds and (id, amount, expiry ms) for each. Returns the holds placed, or -1
// when the dataset is not that one any more.
const LuaScript kRepublishScript(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local a, placed = 2, 0
for k = 2, #KEYS, 3 do
  local n, added = tonumber(ARGV[a]), 0
  a = a + 1
  for _ = 1, n do
    if redis.call('HSETNX', KEYS[k + 2], ARGV[a], ARGV[a + 1]) == 1 then
      redis.call('ZADD', KEYS[k + 1], ARGV[a + 2], ARGV[a])
      added = added + tonumber(ARGV[a + 1])
      placed = placed + 1
    end
    a = a + 3
  end
  if added > 0 then
    local total = tonumber(redis.call('GET', KEYS[k]) or '0') + added
    redis.call('SET', KEYS[k], string.format('%.0f', total))
  end
end
return placed
)lua");

constexpr const char* kEpochKey = "tg:epoch";
constexpr size_t kRepublishBatch = 1000;  // holds per script call
// A pending batch's hold lasts as a request's (gate.hold_ttl_seconds' default): its
// apply releases it long before, by its writer or the orphan pass.
constexpr int64_t kPendingHoldMs = 15 * 60 * 1000;
constexpr int64_t kAppliedMarkerSeconds = 86400;

int64_t EpochBirthMs(const std::string& epoch) {
  size_t colon = epoch.rfind(':');
  if (colon == std::string::npos) return 0;
  try {
    return std::stoll(epoch.substr(colon + 1));
  } catch (const std::exception&) {
    return 0;
  }
}

std::string Nanos(Money m) { return std::to_string(m.nanos()); }


}  // namespace

std::vector<CounterDelta> CounterDeltas(const std::vector<UsageRecord>& rows) {
  std::map<std::pair<int64_t, int64_t>, CounterDelta> sums;
  auto add = [&](int64_t account, const Window& w, Money cost) {
    auto [it, fresh] = sums.try_emplace({account, Micros(w.start)}, CounterDelta{account, w});
    it->second.cost += cost;
  };
  for (const UsageRecord& r : rows) {
    if (r.cost == Money()) continue;
    if (r.window) add(r.user_id, *r.window, r.cost);
    if (r.global_window) add(0, *r.global_window, r.cost);
  }
  std::vector<CounterDelta> out;
  out.reserve(sums.size());
  for (auto& [key, d] : sums) out.push_back(d);
  return out;
}

std::string DeltasToJson(const std::vector<CounterDelta>& deltas) {
  nlohmann::json j = nlohmann::json::array();
  for (const CounterDelta& d : deltas)
    j.push_back({d.account, Micros(d.window.start), Micros(d.window.end), d.cost.nanos()});
  return j.dump();
}

std::optional<std::vector<CounterDelta>> DeltasFromJson(const std::string& json) {
  // Each number an integer within int64 (get<> would cast a float past it: undefined).
  auto integer = [](const nlohmann::json& v) -> std::optional<int64_t> {
    if (!v.is_number_integer()) return std::nullopt;
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}) return std::nullopt;
    return v.get<int64_t>();
  };
  try {
    std::vector<CounterDelta> out;
    for (const auto& e : nlohmann::json::parse(json)) {
      auto account = integer(e.at(0)), start = integer(e.at(1)), end = integer(e.at(2)),
           cost = integer(e.at(3));
      if (!account || !start || !end || !cost) return std::nullopt;
      out.push_back({*account, Window{FromMicros(*start), FromMicros(*end)},
                     Money::FromNanos(*cost)});
    }
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string HoldId(const HoldRef& h) {
  auto micros = [](Timestamp t) { return std::to_string(Micros(t)); };
  return micros(h.user_window) + "/" + (h.global_window ? micros(*h.global_window) : "-") + "/" +
         Nanos(h.amount) + "/" + Nanos(h.global_amount) + "/" + h.id;
}

std::optional<HoldRef> ParseHoldId(const std::string& id) {
  std::vector<std::string> fields;
  size_t at = 0;
  for (int i = 0; i < 4; ++i) {
    size_t slash = id.find('/', at);
    if (slash == std::string::npos) return std::nullopt;
    fields.push_back(id.substr(at, slash - at));
    at = slash + 1;
  }
  auto number = [](const std::string& f) -> std::optional<int64_t> {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
    if (ec != std::errc() || end != f.data() + f.size()) return std::nullopt;
    return v;
  };
  auto user = number(fields[0]), amount = number(fields[2]), global_amount = number(fields[3]);
  std::optional<int64_t> global;
  if (fields[1] != "-" && !(global = number(fields[1]))) return std::nullopt;
  if (!user || !amount || !global_amount || at >= id.size()) return std::nullopt;
  HoldRef h{FromMicros(*user), std::nullopt, Money::FromNanos(*amount),
            Money::FromNanos(*global_amount), id.substr(at)};
  if (global) h.global_window = FromMicros(*global);
  return h;
}

std::string WindowRowsSql(int64_t account) {
  // A row charged to a window started at most a day before it (a request admitted under
  // a window that began while it was read): the (user, started_at) index, or the BRIN
  // on started_at for the global cap, narrows the scan. Rows from before migration 4
  // name no window; they count by their start.
  if (account != 0) {
    return "user_id = $1 AND started_at >= " + SqlFromMicros(2) +
           " - interval '1 day' AND (window_start = " + SqlFromMicros(2) +
           " OR (window_start IS NULL AND started_at >= " + SqlFromMicros(2) +
           " AND started_at < " + SqlFromMicros(3) + "))";
  }
  return "started_at >= " + SqlFromMicros(1) + " - interval '1 day' AND (global_window_start = " +
         SqlFromMicros(1) + " OR (global_window_start IS NULL AND window_start IS NULL" +
         " AND started_at >= " + SqlFromMicros(1) + " AND started_at < " + SqlFromMicros(2) + "))";
}

RedisCounters::RedisCounters(Redis& redis, LedgerSums& sums, const Clock& clock, Metrics& metrics,
                             std::chrono::milliseconds quarantine)
    : redis_(redis), sums_(sums), clock_(clock), metrics_(metrics), quarantine_(quarantine) {}

RedisCounters::~RedisCounters() { StopWatch(); }

void RedisCounters::Watch(std::chrono::milliseconds every) {
  watch_ = std::thread([this, every] {
    std::unique_lock lock(watch_mu_);
    for (int64_t tick = 1; !watch_wake_.wait_for(lock, every, [&] { return watch_stopping_; });
         ++tick) {
      lock.unlock();
      auto placed = RepublishIfNewEpoch();
      if (placed.ok() && *placed > 0)
        std::fprintf(stderr, "tollgate: Redis holds a new dataset: %zu live holds placed in it\n",
                     *placed);
      if (tick % 64 == 0) holds_.Prune(Millis(clock_.Now()));
      lock.lock();
    }
  });
}

void RedisCounters::StopWatch() {
  {
    std::lock_guard lock(watch_mu_);
    watch_stopping_ = true;
  }
  watch_wake_.notify_all();
  if (watch_.joinable()) watch_.join();
}

Result<size_t> RedisCounters::RepublishIfNewEpoch() {
  auto e = kEpochScript.Run(redis_, {kEpochKey}, {RandomHex(8)});
  if (!e.ok() || e->elements.size() != 2) {
    metrics_.Inc(Counter::kRedisErrors);
    return e.ok() ? Status::Internal("epoch: bad reply") : e.status();
  }
  const std::string epoch = e->elements[0].str;
  if (epoch == seen_epoch_) return size_t{0};
  std::vector<LiveHolds::Hold> live = holds_.Live(Millis(clock_.Now()));
  std::sort(live.begin(), live.end(),
            [](const LiveHolds::Hold& a, const LiveHolds::Hold& b) { return a.account < b.account; });
  size_t placed = 0;
  for (size_t from = 0; from < live.size(); from += kRepublishBatch) {
    size_t to = std::min(live.size(), from + kRepublishBatch);
    std::vector<std::string> keys = {kEpochKey}, args = {epoch};
    for (size_t i = from; i < to;) {
      size_t j = i;
      while (j < to && live[j].account == live[i].account) ++j;
      for (std::string& k : HoldKeys(live[i].account)) keys.push_back(std::move(k));
      args.push_back(std::to_string(j - i));
      for (; i < j; ++i) {
        args.push_back(live[i].id);
        args.push_back(Nanos(live[i].amount));
        args.push_back(std::to_string(live[i].expires_ms));
      }
    }
    auto r = kRepublishScript.Run(redis_, keys, args);
    if (!r.ok()) {
      metrics_.Inc(Counter::kRedisErrors);
      return r.status();  // the next look tries again
    }
    if (r->integer < 0) return size_t{0};  // another new dataset already: the next look
    placed += static_cast<size_t>(r->integer);
  }
  seen_epoch_ = epoch;
  return placed;
}

std::string RedisCounters::Tag(int64_t account) {
  return account == 0 ? "tg:{global}" : "tg:{u:" + std::to_string(account) + "}";
}

std::string RedisCounters::SpendKey(int64_t account, Timestamp window_start) {
  return Tag(account) + ":spend:" + std::to_string(Micros(window_start));
}

std::vector<std::string> RedisCounters::HoldKeys(int64_t account) {
  std::string tag = Tag(account);
  return {tag + ":hold-sum", tag + ":hold-exp", tag + ":hold-amt"};
}

int64_t RedisCounters::CounterTtlSeconds(const Window& w, Timestamp now) {
  constexpr int64_t kDay = 86400, kMax = 400 * kDay;
  if (w.end <= now) return kDay;
  auto left = std::chrono::duration_cast<std::chrono::seconds>(w.end - now).count();
  return std::min(left, kMax) + kDay;
}

Result<std::string> RedisCounters::Epoch() {
  auto r = redis_.Command({"GET", kEpochKey});
  if (!r.ok()) {
    metrics_.Inc(Counter::kRedisErrors);
    return r.status();
  }
  return r->type == RedisReply::Type::kString ? r->str : std::string();
}

namespace {
// The cost of the account's rows in `w`, pending batches left out unless `pending_too`.
template <typename Transaction>
Money SumIn(Transaction& t, int64_t account, const Window& w, bool pending_too) {
  std::string sql = "SELECT coalesce(sum(cost_nanos), 0)::bigint FROM usage_ledger WHERE " +
                    WindowRowsSql(account);
  if (!pending_too) {
    sql += " AND (batch IS NULL OR NOT EXISTS (SELECT 1 FROM ledger_pending p"
           " WHERE p.token = usage_ledger.batch))";
  }
  pqxx::result r = account != 0 ? t.exec_params(sql, account, Micros(w.start), Micros(w.end))
                                : t.exec_params(sql, Micros(w.start), Micros(w.end));
  return Money::FromNanos(r[0][0].as<int64_t>());
}
}  // namespace

Result<Money> PgLedgerSums::Sum(int64_t account, const Window& w, bool pending_too) {
  return pool_.Get<Money>([&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    return SumIn(t, account, w, pending_too);
  });
}

Result<CounterBasis> LedgerSums::Basis(int64_t account, const Window& w) {
  auto sum = Sum(account, w, false);
  if (!sum.ok()) return sum.status();
  return CounterBasis{*sum, {}};
}

Result<CounterBasis> PgLedgerSums::Basis(int64_t account, const Window& w) {
  return pool_.Get<CounterBasis>([&](pqxx::connection& c) {
    // One snapshot: a batch leaving ledger_pending between the two reads would be in
    // neither.
    pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::readwrite_policy::read_only> t(c);
    CounterBasis basis{SumIn(t, account, w, false), {}};
    for (const auto& row : t.exec("SELECT token, deltas::text FROM ledger_pending")) {
      auto deltas = DeltasFromJson(row[1].as<std::string>());
      if (!deltas) continue;
      for (const CounterDelta& d : *deltas) {
        if (d.account == account && d.window.start == w.start && d.cost > Money())
          basis.pending.emplace_back(row[0].as<std::string>(), d.cost);
      }
    }
    return basis;
  });
}

Status RedisCounters::Build(int64_t account, const Window& w) {
  const std::string key = SpendKey(account, w.start);
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto e = kEpochScript.Run(redis_, {kEpochKey}, {RandomHex(8)});
    if (!e.ok() || e->elements.size() != 2) {
      metrics_.Inc(Counter::kRedisErrors);
      return e.ok() ? Status::Internal("epoch: bad reply") : e.status();
    }
    const std::string epoch = e->elements[0].str;
    auto age = std::chrono::milliseconds(e->elements[1].integer - EpochBirthMs(epoch));
    if (age < quarantine_) {
      std::this_thread::sleep_for(quarantine_ - age);
      continue;
    }
    auto exists = redis_.Command({"EXISTS", key});
    if (!exists.ok()) {
      metrics_.Inc(Counter::kRedisErrors);
      return exists.status();
    }
    if (exists->integer == 1) return Status::Ok();
    auto basis = sums_.Basis(account, w);
    if (!basis.ok()) {
      metrics_.Inc(Counter::kPostgresErrors);
      return basis.status();
    }
    auto ttl = CounterTtlSeconds(w, clock_.Now());
    std::vector<std::string> keys = {kEpochKey, key};
    for (std::string& k : HoldKeys(account)) keys.push_back(std::move(k));
    std::vector<std::string> args = {epoch, Nanos(basis->sum), std::to_string(ttl),
                                     std::to_string(Millis(clock_.Now()) + kPendingHoldMs)};
    for (const auto& [token, cost] : basis->pending) {
      args.push_back(PendingHoldId(token, w.start));
      args.push_back(Nanos(cost));
    }
    auto installed = kInstallScript.Run(redis_, keys, args);
    if (!installed.ok()) {
      metrics_.Inc(Counter::kRedisErrors);
      return installed.status();
    }
    if (installed->integer == 1) {
      metrics_.Inc(Counter::kCounterRebuilds);
      return Status::Ok();
    }
  }
  return Status::Unavailable("the spend counter could not be built (Redis changing)");
}

Result<std::string> RedisCounters::Apply(const std::string& token,
                                         const std::vector<CounterDelta>& deltas,
                                         const std::vector<UsageRecord>* rows) {
  // The holds the rows release, summed per account and hold (a lease is released by
  // each of its requests' reservations).
  std::map<int64_t, std::map<std::string, Money>> releases;
  // A counter built while this batch was pending holds its part (Build).
  for (const CounterDelta& d : deltas)
    releases[d.account][PendingHoldId(token, d.window.start)] += d.cost;
  if (rows) {
    for (const UsageRecord& r : *rows) {
      auto h = ParseHoldId(r.hold_id);
      if (!h) continue;
      releases[r.user_id][h->id] += h->amount;
      if (h->global_window) releases[0][h->id] += h->global_amount;
    }
  }
  std::vector<std::string> keys = {kEpochKey, "tg:applied:" + token};
  std::vector<std::string> args = {std::to_string(kAppliedMarkerSeconds),
                                   std::to_string(deltas.size())};
  for (const CounterDelta& d : deltas) {
    keys.push_back(SpendKey(d.account, d.window.start));
    args.push_back(Nanos(d.cost));
  }
  args.push_back(std::to_string(releases.size()));
  for (const auto& [account, holds] : releases) {
    for (std::string& k : HoldKeys(account)) keys.push_back(std::move(k));
    args.push_back(std::to_string(holds.size()));
    for (const auto& [id, amount] : holds) {
      args.push_back(id);
      args.push_back(Nanos(amount));
    }
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto r = kApplyScript.Run(redis_, keys, args);
    if (!r.ok()) {
      metrics_.Inc(Counter::kRedisErrors);
      return r.status();
    }
    if (r->type != RedisReply::Type::kArray || r->elements.size() != 3) {
      metrics_.Inc(Counter::kRedisErrors);
      return Status::Internal("apply: bad reply");
    }
    if (r->elements[0].str != "missing") {
      for (const auto& [account, holds] : releases) {
        for (const auto& [id, amount] : holds) holds_.Release(account, id, amount);
      }
    }
    if (r->elements[0].str == "ok" && on_applied_) {
      const auto& after = r->elements[2].elements;
      for (size_t i = 0; i < deltas.size() && i < after.size(); ++i)
        on_applied_(deltas[i], Money::FromNanos(after[i].integer));
    }
    if (r->elements[0].str != "missing") return r->elements[1].str;
    for (const RedisReply& i : r->elements[2].elements) {
      const CounterDelta& d = deltas.at(static_cast<size_t>(i.integer - 1));
      if (Status s = Build(d.account, d.window); !s.ok()) return s;
    }
  }
  return Status::Unavailable("apply: counters keep disappearing");
}

}  // namespace tollgate
