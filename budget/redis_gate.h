// The gate in Redis: one Lua script reserves atomically against
// limit - spend - outstanding holds, across any number of proxy instances. Holds
// expire (a crashed instance's holds are released); settle releases the hold and adds
// the real cost. Keys carry a per-user hash tag ({u:ID}) so Redis Cluster works:
//   tg:{u:ID}:spend:<window start, micros>   spend in the window, nano-dollars
//   tg:{u:ID}:hold-total                     sum of the amounts of the live holds
//   tg:{u:ID}:hold-index                     sorted set: "<amount>:<request id>" by
//                                            expiry (ms), one member per hold
// so a reservation costs the same with 1 or 2,000 requests of the user in flight.
// Both hold keys go when the last hold does (no expiry that could lapse under a live
// hold); a crashed instance's lapsed holds are cleared by the user's next reservation.
// With a global cap, the same keys exist under {global}, reserved first and
// released when the user's own reservation fails.
//
// Budget leases (set_leases; gate.lease_requests): the event loop may reserve a slice
// of a user's budget as one hold ("<amount>:tgl_<hex>", reserved by the same script and
// rules as a request's) and admit the user's next requests against it without asking
// Redis, as long as the ones admitted reserve no more than the slice together. Their
// costs go to the spend counter summed, within set_leased_cost_delay of settling and
// always before the lease's release; the lease's hold goes when
// it is retired (after a second, when full, or when the window or the limit changes)
// and its last request has settled. So Redis counts spend + every hold, leases whole,
// never less than what may still be spent: the limit holds across instances as with
// per-request holds. Far from the limit the next lease is asked for when three
// quarters of one are used (two are held for a round trip). A lease is at most 1/16 of
// what the user has left and is not
// taken when that is under four requests' worth (each request then reserves alone);
// while held it shows in the user's reserved amount. Not with a global cap. Reserve()
// on a worker (a stream) asks the loop first, so it is admitted against the same lease,
// unless the loop declined that request already (ReserveRequest::declined_on_loop).
#pragma once

#include <map>
#include <memory>
#include <set>

#include "budget/alerts.h"
#include "budget/gate.h"
#include "budget/ledger.h"
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
  RedisGate(Redis& redis, SettingsCache& settings, Ledger& ledger, const Clock& clock,
            Metrics& metrics, std::chrono::seconds hold_ttl,
            std::optional<GlobalCap> global_cap = std::nullopt, AlertSink* alerts = nullptr);

  Admission Reserve(const ReserveRequest& request) override;
  void Settle(int64_t user_id, const std::string& hold_id, Money cost) override;
  // Through `async` (set_async), when the user's settings are cached and there is
  // no global cap. The calls one user makes while the loop handles one batch of events
  // go to Redis as one call of the gate script, which decides each of them in order;
  // Reserve() and Settle() send it one operation at a time.
  bool ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) override;
  bool SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) override;
  // The proxy event loop and its connection; before the loop starts. Null: no NoWait
  // calls.
  void set_async(AsyncRedis* async, EventLoop* loop);
  // Up to `requests` times a request's reservation per lease (see the top of this
  // file); 0 (the default) reserves each request on its own. Before set_async().
  void set_leases(int requests) { lease_requests_ = requests; }
  // How long leased requests' costs may wait to be summed into one operation on the
  // spend counter (default 10 ms). The lease holds their reservations meanwhile, so
  // Redis never counts less than what may be spent; `spent` catches up within it.
  void set_leased_cost_delay(std::chrono::milliseconds delay) { leased_cost_delay_ = delay; }
  // Loop thread: sends the leased costs waiting now (tests; the delay's task).
  void FlushLeasedCosts();
  // At shutdown, once the loop has stopped: leases whose requests have all settled are
  // released now instead of lapsing (each holds part of a user's budget until
  // hold_ttl); one with requests unsettled is left to lapse, as their own holds would.
  void ReleaseLeases();
  // Spend and holds in the user's current window (rebuilt from the ledger if missing).
  Result<SpendState> State(int64_t user_id);
  // The same in a given window (the admin list computes windows from its own read).
  Result<SpendState> State(int64_t user_id, const Window& window);

  // user_id 0 names the global counter.
  static std::string SpendKey(int64_t user_id, Timestamp window_start);
  // The keys holding a user's holds (see the top of this file).
  static std::vector<std::string> HoldKeys(int64_t user_id);

 private:
  struct ScriptResult {
    int64_t status = 0;  // 1 reserved, 0 refused, -1 counter missing
    Money spend, held;
  };
  Result<ScriptResult> RunReserve(int64_t user_id, const Window& w, Money amount, Money limit,
                                  const std::string& request_id);
  // A reservation's arguments after "now": amount, limit, member, expiry (ms).
  std::vector<std::string> ReserveArgs(Money amount, Money limit,
                                       const std::string& request_id) const;
  void RaiseAlert(int64_t user_id, Timestamp user_window, Money cost, const RedisReply& spent,
                  const std::optional<UserBudget>& budget);
  // EVALSHA, or EVAL when Redis does not know the script yet, without waiting.
  void EvalNoWait(const char* script, const std::string& sha, const std::vector<std::string>& keys,
                  const std::vector<std::string>& args, AsyncRedis::Callback done);
  Status RebuildCounter(int64_t user_id, const Window& w);
  // The state script's keys: spend counter, then HoldKeys().
  static std::vector<std::string> ScriptKeys(int64_t user_id, Timestamp window_start);
  Window GlobalWindow() const;
  Result<RedisReply> Eval(const std::string& script, const std::string& sha,
                          const std::vector<std::string>& keys,
                          const std::vector<std::string>& args);

  // One operation of the gate script: 'R' or 'S', the spend counter it names, and its
  // arguments after those (see kBatchScript in the .cc).
  struct GateOp {
    char kind;
    std::string counter;
    std::vector<std::string> args;
  };
  // The script's KEYS and ARGV for `ops`, all of one user.
  void BatchCall(int64_t user_id, std::vector<GateOp> ops, std::vector<std::string>* keys,
                 std::vector<std::string>* args) const;
  // One operation, waited for: its part of the script's reply.
  Result<RedisReply> RunOne(int64_t user_id, GateOp op);
  // A NoWait operation waiting for its batch, and what it does with its part of the
  // reply (null: the batch failed).
  struct LoopOp {
    GateOp op;
    std::function<void(const RedisReply*)> done;
  };
  static constexpr size_t kMaxBatch = 256;
  void Enqueue(int64_t user_id, LoopOp op);
  void SendBatch(int64_t user_id, std::vector<LoopOp> waiting);

  Redis& redis_;
  SettingsCache& settings_;
  Ledger& ledger_;
  const Clock& clock_;
  Metrics& metrics_;
  const std::chrono::seconds hold_ttl_;
  const std::optional<GlobalCap> global_cap_;
  AlertSink* const alerts_;  // may be null: no alerts
  AsyncRedis* async_ = nullptr;
  EventLoop* loop_ = nullptr;
  // Loop thread only: the NoWait calls of the batch being handled, by user (0: the
  // global cap's counters), sent by a task posted with the first of them.
  std::map<int64_t, std::vector<LoopOp>> batches_;
  bool batch_posted_ = false;

  // Loop thread only: the leases, active (one per user at most) and retired ones whose
  // requests have not all settled.
  struct Lease {
    std::string id;  // "tgl_<hex>"
    int64_t user_id = 0;
    Timestamp window;
    Timestamp taken;
    Money limit;  // the enforced limit it was taken under; another one retires it
    Money amount;
    Money used;        // reserved by the requests admitted against it
    Money room_after;  // the limit less spend and holds, this one included, when taken
    int in_flight = 0;
    bool retired = false;
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
  void LeaseSettled(const std::string& lease_id);
  static GateOp ReleaseOp(const Lease& lease);
  // A leased request's cost, added to the user's sum waiting for the counter: sent
  // within leased_cost_delay_, before the user's lease is released, or when the window
  // turns (see set_leased_cost_delay).
  void AddLeasedCost(int64_t user_id, Timestamp window, Money cost);
  void SendLeasedCosts(int64_t user_id);
  // Admits nothing more against it; releases its hold once its requests have settled.
  void Retire(const std::string& lease_id);
  void RetireOldLeases();
  int lease_requests_ = 0;
  std::map<std::string, Lease> leases_;
  std::map<int64_t, std::string> active_lease_;  // by user
  std::set<int64_t> leasing_;                    // users with a lease being taken
  struct LeasedCosts {
    std::string counter;
    Timestamp window;
    Money sum;
  };
  std::map<int64_t, LeasedCosts> leased_costs_;  // by user, not yet sent
  bool costs_due_ = false;                       // a flush is set to run
  std::chrono::milliseconds leased_cost_delay_{10};
};

}  // namespace tollgate
