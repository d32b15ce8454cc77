// The usage ledger: one row per forwarded request, append-only, idempotent by
// request id. Append() never blocks the request path; rows are written in batches.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "budget/pg_pool.h"
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
  std::chrono::steady_clock::time_point appended;  // set by Append; not stored
};

class Ledger {
 public:
  virtual ~Ledger() = default;
  virtual void Append(UsageRecord record) = 0;
  // Blocks until every row appended so far is durable (tests, shutdown).
  virtual void Flush() = 0;
  // Total cost of the user's rows started at or after `from` (rebuilds counters);
  // user_id 0 sums every user's (the global cap).
  virtual Result<Money> SpendSince(int64_t user_id, Timestamp from) = 0;
};

class FakeLedger final : public Ledger {
 public:
  void Append(UsageRecord record) override {
    std::lock_guard lock(mu_);
    rows_.push_back(std::move(record));
  }
  void Flush() override {}
  Result<Money> SpendSince(int64_t user_id, Timestamp from) override {
    std::lock_guard lock(mu_);
    Money total;
    for (const UsageRecord& r : rows_) {
      if ((user_id == 0 || r.user_id == user_id) && r.started_at >= from) total += r.cost;
    }
    return total;
  }
  void Clear() {
    std::lock_guard lock(mu_);
    rows_.clear();
  }
  std::vector<UsageRecord> rows() {
    std::lock_guard lock(mu_);
    return rows_;
  }

 private:
  std::mutex mu_;
  std::vector<UsageRecord> rows_;
};

// Writes rows in batches on its own thread; a duplicate request id is ignored. A batch
// gathers rows for up to `linger` after its first (or until it holds kBatchRows), so a
// busy proxy commits a few large batches a second rather than hundreds of tiny ones;
// spend counters in Redis are settled at once either way. While
// Postgres is unreachable, a failed batch is appended to a spool file in `spool_dir`
// (one JSON row per line, fsynced) and replayed when Postgres answers again; spool
// files left by a crashed process are replayed too (claimed by rename). Without a
// spool directory the rows wait in memory.
class PgLedger final : public Ledger {
 public:
  static constexpr size_t kBatchRows = 500;
  // Rows per COPY (or INSERT) statement within a batch's one transaction. With one
  // statement per batch, one connection through the proxy saw p99 3.4 ms; with 32,
  // 1.5 ms (bench/RESULTS.md; 128 gained nothing with COPY either).
  static constexpr size_t kStatementRows = 32;
  PgLedger(PgPool& pool, Metrics& metrics, std::string spool_dir = "",
           std::chrono::milliseconds linger = std::chrono::milliseconds(20));
  ~PgLedger() override;
  void Append(UsageRecord record) override;
  void Flush() override;
  Result<Money> SpendSince(int64_t user_id, Timestamp from) override;
  size_t queued();
  static std::string ToSpoolLine(const UsageRecord& r);
  static std::optional<UsageRecord> FromSpoolLine(const std::string& line);

 private:
  void Run();
  Status WriteBatch(const std::vector<UsageRecord>& batch);
  Status CopyBatch(const std::vector<UsageRecord>& batch);
  Status InsertBatch(const std::vector<UsageRecord>& batch);
  bool Spool(const std::vector<UsageRecord>& batch);
  // Replays every spool file it can claim; false if Postgres failed meanwhile.
  bool ReplaySpool();

  PgPool& pool_;
  Metrics& metrics_;
  const std::chrono::milliseconds linger_;
  int flushing_ = 0;  // guarded by mu_
  const std::string spool_dir_;
  std::string spool_file_;
  bool spooled_ = true;  // look for spool files (left by a crash) at start
  std::mutex mu_;
  std::condition_variable wake_, drained_;
  std::deque<UsageRecord> queue_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace tollgate
