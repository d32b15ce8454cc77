// The spend counters in Redis and how they stay equal to the ledger (docs/ARCHITECTURE.md,
// "Money"). A counter is the sum of the ledger rows charged to one account's window:
// rows reach it only after their batch has committed, by Apply, once per Redis dataset
// (a token per batch); the request's hold in Redis covers its cost until then. A
// counter that is missing (a new window, Redis restarted empty) is built by Build from
// the ledger, leaving out the batches still pending (table ledger_pending), which Apply
// adds later. Nothing else writes a counter, so no settlement is lost or counted twice.
//
// Keys, with a hash tag per account ({u:ID}, {global} for the global cap):
//   tg:{u:ID}:spend:<window start, micros>   the counter (nano-dollars)
//   tg:{u:ID}:hold-sum                       the sum of the live holds
//   tg:{u:ID}:hold-exp                       sorted set: hold id by expiry (ms)
//   tg:{u:ID}:hold-amt                       hash: hold id -> amount still held
//   tg:epoch                                 the dataset's id and birth: "<hex>:<ms>"
//   tg:applied:<token>                       a batch applied in this dataset (1 day)
// Apply touches several accounts in one script, so tollgate needs a single Redis (or
// Sentinel's primary), not a Redis Cluster.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "budget/live_holds.h"
#include "budget/pg_pool.h"
#include "budget/redis.h"
#include "budget/window.h"
#include "config/clock.h"
#include "config/money.h"
#include "net/metrics.h"

namespace tollgate {

struct UsageRecord;

// What a batch adds to one account's counter for one window (account 0: the global cap).
struct CounterDelta {
  int64_t account = 0;
  Window window;
  Money cost;
};
// The rows' costs summed per account and window; rows without a window add nothing.
std::vector<CounterDelta> CounterDeltas(const std::vector<UsageRecord>& rows);
std::string DeltasToJson(const std::vector<CounterDelta>& deltas);
std::optional<std::vector<CounterDelta>> DeltasFromJson(const std::string& json);

// A hold as its id carries it (the admission's hold_id):
// "<user window>/<global window or ->/<amount>/<global amount>/<request or lease id>",
// windows in micros since the epoch. A request admitted against a budget lease names
// the lease, with its own reservation as the amount.
struct HoldRef {
  Timestamp user_window;
  std::optional<Timestamp> global_window;
  Money amount;
  Money global_amount;
  std::string id;
};
std::string HoldId(const HoldRef& h);
std::optional<HoldRef> ParseHoldId(const std::string& id);

// What a counter is built from, read at one moment: the cost of the rows charged to
// the account's window, the batches still pending left out, and what each pending batch
// adds to that counter (by token).
struct CounterBasis {
  Money sum;
  std::vector<std::pair<std::string, Money>> pending;
};

// The ledger's sums, as the counters are built from them: Postgres (PgLedgerSums), or
// FakeLedger in tests.
class LedgerSums {
 public:
  virtual ~LedgerSums() = default;
  // The cost of the rows charged to the account's window (account 0: the global cap's),
  // leaving out the batches still pending unless `pending_too`.
  virtual Result<Money> Sum(int64_t account, const Window& w, bool pending_too) = 0;
  // Sum(account, w, false) and the pending batches' part, in one snapshot. By default
  // (a ledger whose batches are never seen pending), no pending part.
  virtual Result<CounterBasis> Basis(int64_t account, const Window& w);
};

class PgLedgerSums final : public LedgerSums {
 public:
  explicit PgLedgerSums(PgPool& pool) : pool_(pool) {}
  Result<Money> Sum(int64_t account, const Window& w, bool pending_too) override;
  Result<CounterBasis> Basis(int64_t account, const Window& w) override;

 private:
  PgPool& pool_;
};

// The ledger's view of the counters.
class CounterStore {
 public:
  virtual ~CounterStore() = default;
  // Adds a committed batch's deltas to the counters and releases the holds its `rows`
  // name (may be null: the holds lapse). Idempotent per token within a Redis dataset.
  // Returns the dataset's epoch it was applied in.
  virtual Result<std::string> Apply(const std::string& token,
                                    const std::vector<CounterDelta>& deltas,
                                    const std::vector<UsageRecord>* rows) = 0;
  // The dataset's epoch now ("" when Redis holds none yet).
  virtual Result<std::string> Epoch() = 0;
};

class RedisCounters final : public CounterStore {
 public:
  // `quarantine`: how long a new dataset (Redis restarted empty) waits before its first
  // counter is built, so that a batch applied in the old one just before has left
  // ledger_pending by then (and is in the sum), and every instance's watch has placed
  // its live holds in it.
  RedisCounters(Redis& redis, LedgerSums& sums, const Clock& clock, Metrics& metrics,
                std::chrono::milliseconds quarantine = std::chrono::seconds(3));
  ~RedisCounters();
  // Called (on the applying thread) with each delta applied and its counter after it;
  // before the ledger starts. Alerts are raised from here.
  using AppliedCallback = std::function<void(const CounterDelta&, Money after)>;
  void set_on_applied(AppliedCallback cb) { on_applied_ = std::move(cb); }

  Result<std::string> Apply(const std::string& token, const std::vector<CounterDelta>& deltas,
                            const std::vector<UsageRecord>* rows) override;
  Result<std::string> Epoch() override;
  // The holds this instance has placed and not yet seen released (live_holds.h): the
  // gate adds and releases them as it reserves and releases, Apply as it releases.
  LiveHolds& holds() { return holds_; }
  // Notices a new dataset (Redis restarted empty, tg:epoch gone) and places this
  // instance's live holds in it, within its quarantine, before any counter is built
  // there. Runs every `every` on a thread of its own until StopWatch().
  void Watch(std::chrono::milliseconds every);
  void StopWatch();
  // One look at the epoch, placing the holds when it changed (what Watch does each
  // time). Returns the number of holds placed.
  Result<size_t> RepublishIfNewEpoch();
  // Creates the account's counter for `w` from the ledger if it is missing. Blocks (a
  // worker's or the ledger writer's call): Postgres, and the quarantine of a new dataset.
  // The batches pending then are left out of the sum and held instead (a hold
  // "pending:<token>:<window>" of what each adds), until their apply adds them and releases it:
  // a batch whose writer is gone, or was applied to a dataset Redis has lost, counts
  // from the counter's first moment.
  Status Build(int64_t account, const Window& w);
  static std::string PendingHoldId(const std::string& token, Timestamp window_start) {
    return "pending:" + token + ":" + std::to_string(Micros(window_start));
  }

  static std::string Tag(int64_t account);
  static std::string SpendKey(int64_t account, Timestamp window_start);
  // hold-sum, hold-exp, hold-amt.
  static std::vector<std::string> HoldKeys(int64_t account);
  // Seconds a counter for `w` lives: past its end by a day.
  static int64_t CounterTtlSeconds(const Window& w, Timestamp now);

 private:
  Redis& redis_;
  LedgerSums& sums_;
  const Clock& clock_;
  Metrics& metrics_;
  const std::chrono::milliseconds quarantine_;
  AppliedCallback on_applied_;
  LiveHolds holds_;
  std::string seen_epoch_;  // the watch's thread only
  std::mutex watch_mu_;
  std::condition_variable watch_wake_;
  bool watch_stopping_ = false;
  std::thread watch_;
};

// Where a row of the ledger counts: the SQL condition on usage_ledger for one account's
// window, with $1 the user id (absent for the global cap), then the window's start and
// end in micros. Shared by the counters' rebuild, the Postgres gate and the audit.
std::string WindowRowsSql(int64_t account);

}  // namespace tollgate
