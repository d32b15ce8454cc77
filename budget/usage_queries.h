// Reading the usage ledger for people: spend by provider and model, a user's history
// page by page, and the whole ledger in batches for export. Postgres is the truth;
// every query is bounded by a time range or a page size.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "budget/ledger.h"
#include "budget/pg_pool.h"

namespace tollgate {

struct UsageTotals {
  int64_t requests = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t cache_read_tokens = 0;
  int64_t cache_write_tokens = 0;  // 5-minute and 1-hour writes together
  int64_t reasoning_tokens = 0;
  Money cost;

  void Add(const UsageTotals& o);
};

struct UsageGroup {
  std::string provider;
  std::string model;
  UsageTotals totals;
};

// Which ledger rows: one user's (or everyone's, user_id 0) started in [from, to).
struct LedgerFilter {
  int64_t user_id = 0;
  Timestamp from;
  Timestamp to = Timestamp::max();
};

struct LedgerRow {
  int64_t id = 0;  // the ledger's own order; pages continue from it
  UsageRecord record;
};

class UsageQueries {
 public:
  virtual ~UsageQueries() = default;
  // Spend and tokens per (provider, model), most expensive first.
  virtual Result<std::vector<UsageGroup>> Breakdown(const LedgerFilter& f) = 0;
  // Up to `limit` rows after the cursor: newest first (before id `cursor`) or oldest
  // first (after id `cursor`); cursor 0 starts at the newest or oldest row.
  virtual Result<std::vector<LedgerRow>> Page(const LedgerFilter& f, int64_t cursor, int limit,
                                              bool newest_first) = 0;
};

class PgUsageQueries final : public UsageQueries {
 public:
  explicit PgUsageQueries(PgPool& pool) : pool_(pool) {}
  Result<std::vector<UsageGroup>> Breakdown(const LedgerFilter& f) override;
  Result<std::vector<LedgerRow>> Page(const LedgerFilter& f, int64_t cursor, int limit,
                                      bool newest_first) override;

 private:
  PgPool& pool_;
};

}  // namespace tollgate
