// Every counter tollgate keeps, declared in one place and rendered at /metrics in
// the Prometheus text format.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace tollgate {

enum class Counter : int {
  kProxyRequests,           // requests received on the proxy port
  kProxyRefusedAuth,        // 401: no, unknown, revoked or expired key
  kProxyRefusedBudget,      // 402: user budget exhausted
  kProxyRefusedGlobalCap,   // 402: global cap reached
  kProxyRefusedBadRequest,  // 400/404/413: bad input
  kProxyUpstreamErrors,     // 502/504: upstream unreachable or too slow
  kReservations,            // holds taken
  kSettlements,             // holds settled with real usage
  kLedgerRowsWritten,       // usage rows durably written
  kRedisErrors,             // Redis commands that failed
  kPostgresErrors,          // Postgres operations that failed
  kCount
};

class Metrics {
 public:
  void Inc(Counter c, uint64_t by = 1) {
    counters_[static_cast<int>(c)].fetch_add(by, std::memory_order_relaxed);
  }
  uint64_t Get(Counter c) const {
    return counters_[static_cast<int>(c)].load(std::memory_order_relaxed);
  }
  std::string RenderPrometheus() const;

 private:
  std::array<std::atomic<uint64_t>, static_cast<int>(Counter::kCount)> counters_{};
};

}  // namespace tollgate
