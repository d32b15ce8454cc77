// The usage ledger: one row per forwarded request, append-only, idempotent by
// request id. Append() never blocks the request path; rows are written in batches.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
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

// Writes rows in batches on its own thread. While Postgres is unreachable rows stay
// queued and are retried with back-off; a duplicate request id is ignored.
class PgLedger final : public Ledger {
 public:
  PgLedger(PgPool& pool, Metrics& metrics);
  ~PgLedger() override;
  void Append(UsageRecord record) override;
  void Flush() override;
  Result<Money> SpendSince(int64_t user_id, Timestamp from) override;
  size_t queued();

 private:
  void Run();
  Status WriteBatch(const std::vector<UsageRecord>& batch);

  PgPool& pool_;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable wake_, drained_;
  std::deque<UsageRecord> queue_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace tollgate
