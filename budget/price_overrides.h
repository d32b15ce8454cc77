// Admin price overrides: stored in Postgres (pricing_overrides) and applied to the
// running pricing table. Every instance reloads them every few seconds, so an
// override made on one instance prices requests everywhere from its effective date.
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "budget/pg_pool.h"
#include "config/pricing.h"

namespace tollgate {

struct PriceOverride {
  std::string provider;
  std::string model;
  Timestamp effective_from;
  Rates rates;
  std::string created_by;
};

class PriceOverrides {
 public:
  PriceOverrides(PgPool& pool, const PricingTable& table) : pool_(pool), table_(table) {}
  ~PriceOverrides();

  // Stores the override (replacing one with the same provider, model and date) and
  // applies it here at once.
  Status Add(const PriceOverride& o);
  // Applies rows stored by any instance that this one has not applied yet.
  Status Refresh();
  // Refreshes every `every` on a thread of its own until destroyed.
  void Start(std::chrono::milliseconds every);

 private:
  PgPool& pool_;
  const PricingTable& table_;
  std::mutex mu_;
  std::set<std::pair<int64_t, int64_t>> applied_;  // (id, version) of applied rows
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread refresher_;
};

}  // namespace tollgate
