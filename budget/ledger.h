// The usage ledger: one row per forwarded request, append-only, idempotent by
// request id. Append() never blocks the request path; rows are written in batches.
#pragma once

#include <condition_variable>
#include <memory>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "budget/counters.h"
#include "budget/keys.h"
#include "budget/pg_pool.h"
#include "budget/spool.h"
#include "budget/window.h"
#include "config/money.h"
#include "net/metrics.h"
#include "providers/provider.h"

namespace tollgate {

struct UsageRecord {
  std::string request_id;
  int64_t user_id = 0;
  int64_t key_id = 0;
  std::string provider;
  std::string model;
  std::string price_id;
  Timestamp started_at;
  Usage usage;
  Money cost;
  int status = 0;
  bool streamed = false;
  bool estimated = false;
  int64_t latency_ms = 0;
  // What the row does to the spend counters once it is durable (budget/counters.h):
  // the windows its cost counts in (none when no gate admitted it), and the hold its
  // admission took, released then.
  std::optional<Window> window;
  std::optional<Window> global_window;
  std::string hold_id;
  std::chrono::steady_clock::time_point appended;  // set by Append; not stored
};

class Ledger {
 public:
  virtual ~Ledger() = default;
  // Takes the row; it is durable (in the spool) when this returns, and reaches Postgres,
  // then the spend counters, soon after.
  virtual void Append(UsageRecord record) = 0;
  // Blocks until every row appended so far is in Postgres and its batch has been
  // offered to the counters (tests, shutdown).
  virtual void Flush() = 0;
  // False while no more rows can be taken safely (no spool and the queue full): the
  // proxy then refuses new requests rather than answer one it could not record.
  virtual bool Accepting() { return true; }
};

// Rows in memory. With counters (set_counters), each row is applied to them at once,
// as though its batch had just committed (and is pending until then).
class FakeLedger final : public Ledger, public LedgerSums {
 public:
  void set_counters(CounterStore* counters) { counters_ = counters; }
  void Append(UsageRecord record) override {
    size_t at;
    {
      std::lock_guard lock(mu_);
      at = rows_.size();
      rows_.push_back({record, counters_ != nullptr});
    }
    if (!counters_) return;
    std::vector<UsageRecord> one = {std::move(record)};
    counters_->Apply("fake-" + RandomHex(8), CounterDeltas(one), &one);
    std::lock_guard lock(mu_);
    rows_[at].pending = false;
  }
  void Flush() override {}
  Result<Money> Sum(int64_t account, const Window& w, bool pending_too) override {
    std::lock_guard lock(mu_);
    Money total;
    for (const auto& [r, pending] : rows_) {
      const std::optional<Window>& charged = account == 0 ? r.global_window : r.window;
      bool in = charged ? charged->start == w.start
                        : !r.window && r.started_at >= w.start && r.started_at < w.end;
      if ((account == 0 || r.user_id == account) && in && (pending_too || !pending))
        total += r.cost;
    }
    return total;
  }
  void Clear() {
    std::lock_guard lock(mu_);
    rows_.clear();
  }
  std::vector<UsageRecord> rows() {
    std::lock_guard lock(mu_);
    std::vector<UsageRecord> out;
    for (const auto& [r, pending] : rows_) out.push_back(r);
    return out;
  }

 private:
  struct Row {
    UsageRecord record;
    bool pending;
  };
  CounterStore* counters_ = nullptr;
  std::mutex mu_;
  std::vector<Row> rows_;
};

struct LedgerOptions {
  std::string spool_dir;  // "" = no spool: rows wait in memory only (not crash-safe)
  std::chrono::milliseconds linger{20};  // a batch gathers rows this long after its first
  size_t max_queued_rows = 100000;       // in memory; past it rows wait in the spool only
  // A batch another instance committed but did not apply (it stopped or crashed) is
  // applied by any instance after this.
  std::chrono::milliseconds orphan_batch_after{10000};
};

// Writes rows in batches on its own thread; a duplicate request id is ignored. A batch
// gathers rows for up to `linger` after its first (or until it holds kBatchRows), so a
// busy proxy commits a few large batches a second rather than hundreds of tiny ones.
// Each batch commits with a ledger_pending row saying what it adds to which counter;
// once committed it is applied to the counters (CounterStore::Apply), then its pending
// row goes. A batch that cannot be applied (Redis down) is retried; one whose writer
// has gone is applied by another instance. Rows are in the spool (spool.h) from Append
// until their batch commits.
class PgLedger final : public Ledger {
 public:
  static constexpr size_t kBatchRows = 500;
  // Rows per COPY (or INSERT) statement within a batch's one transaction. With one
  // statement per batch, one connection through the proxy saw p99 3.4 ms; with 32,
  // 1.5 ms (bench/RESULTS.md; 128 gained nothing with COPY either).
  static constexpr size_t kStatementRows = 32;
  PgLedger(PgPool& pool, Metrics& metrics, CounterStore* counters, LedgerOptions options);
  ~PgLedger() override;
  void Append(UsageRecord record) override;
  void Flush() override;
  bool Accepting() override;
  // Stops the writer within `grace`: what is not in Postgres by then stays in the spool
  // for the next start (or another instance on the same directory). True when nothing
  // was left behind.
  bool Stop(std::chrono::milliseconds grace);
  size_t queued();

 private:
  struct Queued {
    UsageRecord row;
    uint64_t segment = 0;  // the spool segment holding it (0: none)
  };
  // A committed batch whose costs have not reached the counters yet.
  struct Unapplied {
    std::string token;
    std::vector<CounterDelta> deltas;
    std::vector<UsageRecord> rows;  // for the holds they release; may be empty
  };
  void Run();
  // Writes the rows as one batch (COPY, or INSERT skipping request ids already stored
  // when `replayed`) and applies it. An error: nothing was written.
  Status WriteAndApply(std::vector<UsageRecord> rows, bool replayed);
  Status WriteEachAlone(std::vector<UsageRecord> rows, bool replayed);
  // Rows read back from the spool, written; false when Postgres is away.
  bool WriteOrSetAside(std::vector<UsageRecord> rows);
  Result<std::vector<UsageRecord>> Commit(const std::string& token,
                                          std::vector<UsageRecord> rows, bool replayed);
  // Applies a committed batch and deletes its pending row; false when Redis failed.
  bool ApplyCommitted(const Unapplied& b);
  void RetryUnapplied();
  void ApplyOrphanBatches();
  void ReplayOrphanFiles();
  void ReplaySpilled();

  PgPool& pool_;
  Metrics& metrics_;
  CounterStore* const counters_;
  const LedgerOptions options_;
  std::unique_ptr<LedgerSpool> spool_;
  std::mutex mu_;
  std::condition_variable wake_, drained_;
  std::deque<Queued> queue_;
  size_t in_flight_ = 0;
  int flushing_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point stop_by_;
  bool stopped_clean_ = true;
  // Past max_queued_rows, rows go to the spool only; these closed segments hold them.
  bool spilling_ = false;
  uint64_t spill_first_ = 0;       // the first segment of the spill going on
  std::vector<uint64_t> spilled_;  // closed spill segments, to be read back
  std::deque<Unapplied> unapplied_;  // writer thread only
  std::thread writer_;
};

}  // namespace tollgate
