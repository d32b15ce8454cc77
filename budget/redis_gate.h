// The gate in Redis: one Lua script reserves atomically against
// limit - spend - outstanding holds, across any number of proxy instances. Holds
// expire (a crashed instance's holds are released by the account's next reservation).
// A request's hold lasts until its ledger row is durable: the ledger then applies the
// row to the counters (budget/counters.h), which adds its cost and releases the hold in
// one script, so Redis always counts spend + holds, never less than what may have been
// spent. Keys: counters.h.
// With a global cap, the same keys exist under {global}, reserved first and
// released when the user's own reservation fails.
//
// Budget leases (set_leases; gate.lease_requests): the event loop may reserve a slice
// of a user's budget as one hold ("tgl_<hex>", reserved by the same script and rules as
// a request's) and admit the user's next requests against it without asking Redis, as
// long as the ones admitted reserve no more than the slice together. Each of their
// ledger rows releases its own reservation from the lease's hold as it is applied; the
// part never used is released when the lease retires (after a second, when a request
// does not fit, or when the window or the limit changes). So Redis counts spend +
// every hold, leases whole, never less than what may still be spent: the limit holds
// across instances as with per-request holds. Far from the limit the next lease is
// asked for when three quarters of one are used (two are held for a round trip). A
// lease is at most 1/16 of what the user has left and is not taken when that is under
// four requests' worth (each request then reserves alone); while held it shows in the
// user's reserved amount. Not with a global cap. Reserve() on a worker (a stream) asks
// the loop first, so it is admitted against the same lease, unless the loop declined
// that request already (ReserveRequest::declined_on_loop).
#pragma once

#include <map>
#include <memory>
#include <set>

#include "budget/alerts.h"
#include "budget/gate.h"
#include "budget/counters.h"
#include "budget/redis.h"
#include "budget/settings_cache.h"
#include "net/metrics.h"

namespace tollgate {

struct GlobalCap {
  Money limit;
  Period period = Period::kMonthly;  // calendar windows in UTC
};

struct SpendState {
  Money spend;
  Money held;
  Window window;
};

class RedisGate final : public Gate {
 public:
  // Raises alerts as the counters grow (RedisCounters::set_on_applied).
  RedisGate(Redis& redis, SettingsCache& settings, RedisCounters& counters, const Clock& clock,
            Metrics& metrics, std::chrono::seconds hold_ttl,
            std::optional<GlobalCap> global_cap = std::nullopt, AlertSink* alerts = nullptr);

  Admission Reserve(const ReserveRequest& request) override;
  // Nothing to do: the ledger row releases the hold and adds the cost (see above).
  void Settle(int64_t, const std::string&, Money) override {}
  // Through `async` (set_async), when the user's settings are cached and there is
  // no global cap. The calls one user makes while the loop handles one batch of events
  // go to Redis as one call of the gate script, which decides each of them in order;
  // Reserve() sends it one operation at a time.
  bool ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) override;
  bool SettleNoWait(int64_t, const std::string&, Money) override { return true; }
  // The proxy event loop and its connection; before the loop starts. Null: no NoWait
  // calls.
  void set_async(AsyncRedis* async, EventLoop* loop);
  // Up to `requests` times a request's reservation per lease (see the top of this
  // file); 0 (the default) reserves each request on its own. Before set_async().
  void set_leases(int requests) { lease_requests_ = requests; }
  // At shutdown, once the loop has stopped: the unused part of every lease is released
  // now instead of lapsing (each holds part of a user's budget until hold_ttl); the
  // used part goes as the ledger applies its requests' rows.
  void ReleaseLeases();
  // Spend and holds in the user's current window (rebuilt from the ledger if missing).
  Result<SpendState> State(int64_t user_id);
  // The same in a given window (the admin list computes windows from its own read).
  Result<SpendState> State(int64_t user_id, const Window& window);


 private:
  struct ScriptResult {
    int64_t status = 0;  // 1 reserved, 0 refused, -1 counter missing
    Money spend, held;
  };
  Result<ScriptResult> RunReserve(int64_t account, const Window& w, Money amount, Money limit,
                                  const std::string& hold);
  // When a hold placed now expires (ms since the epoch).
  int64_t ExpiryMs() const;
  // A reservation's arguments after "now": amount, limit, hold id, expiry (ms).
  std::vector<std::string> ReserveArgs(Money amount, Money limit, const std::string& hold) const;
  void RaiseAlert(const CounterDelta& applied, Money spend);
  Window GlobalWindow() const;

  // One operation of the gate script: 'R' (reserve: the spend counter it names, then
  // ReserveArgs) or 'D' (release part of a hold: no counter, then id and amount).
  struct GateOp {
    char kind;
    std::string counter;
    std::vector<std::string> args;
  };
  // The script's KEYS and ARGV for `ops`, all of one account.
  void BatchCall(int64_t account, std::vector<GateOp> ops, std::vector<std::string>* keys,
                 std::vector<std::string>* args) const;
  // One operation, waited for: its part of the script's reply.
  Result<RedisReply> RunOne(int64_t account, GateOp op);
  // A NoWait operation waiting for its batch, and what it does with its part of the
  // reply (null: the batch failed).
  struct LoopOp {
    GateOp op;
    std::function<void(const RedisReply*)> done;
  };
  static constexpr size_t kMaxBatch = 256;
  void Enqueue(int64_t account, LoopOp op);
  void SendBatch(int64_t account, std::vector<LoopOp> waiting);

  Redis& redis_;
  SettingsCache& settings_;
  RedisCounters& counters_;
  const Clock& clock_;
  Metrics& metrics_;
  const std::chrono::seconds hold_ttl_;
  const std::optional<GlobalCap> global_cap_;
  AlertSink* const alerts_;  // may be null: no alerts
  AsyncRedis* async_ = nullptr;
  EventLoop* loop_ = nullptr;
  // Loop thread only: the NoWait calls of the batch being handled, by account (0: the
  // global cap's counters), sent by a task posted with the first of them.
  std::map<int64_t, std::vector<LoopOp>> batches_;
  bool batch_posted_ = false;

  // Loop thread only: the active leases, one per user at most.
  struct Lease {
    std::string id;  // "tgl_<hex>"
    int64_t user_id = 0;
    Timestamp window;
    Timestamp taken;
    Money limit;  // the enforced limit it was taken under; another one retires it
    Money amount;
    Money used;        // reserved by the requests admitted against it
    Money room_after;  // the limit less spend and holds, this one included, when taken
    bool renewing = false;  // the next lease has been asked for
  };
  // A hold id for `amount` against the user's lease, or nullopt (retiring a lease that
  // no longer serves).
  std::optional<std::string> AdmitOnLease(int64_t user_id, Timestamp window, Money limit,
                                          Money amount);
  // Asks for a lease sized on requests of `amount` and on `room`, what the user has left
  // (after the reservation alone that was just admitted, or after the lease in use);
  // none when one is being asked for or there is no room for four requests.
  void TakeLease(int64_t user_id, Timestamp window, Money limit, Money amount, Money room);
  std::optional<Admission> ReserveThroughLoop(const ReserveRequest& request);
  // The operation releasing what the lease's requests did not use (released from the
  // live holds now).
  GateOp ReleaseUnused(const Lease& lease);
  // Admits nothing more against it and releases its unused part.
  void Retire(int64_t user_id);
  void RetireOldLeases();
  int lease_requests_ = 0;
  std::map<int64_t, Lease> leases_;  // by user
  std::set<int64_t> leasing_;        // users with a lease being taken
};

}  // namespace tollgate
