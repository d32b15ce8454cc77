// Every counter tollgate keeps, declared in one place and rendered at /metrics in
// the Prometheus text format.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate {

enum class Counter : int {
  kProxyRequests,            // requests received on the proxy port
  kProxyRefusedAuth,         // 401: no, unknown, revoked or expired key
  kProxyRefusedBudget,       // 402: user budget exhausted
  kProxyRefusedGlobalCap,    // 402: global cap reached
  kProxyRefusedBadRequest,   // 400/404/413: bad input
  kProxyRefusedUnavailable,  // 503: the gate could not decide (fail closed)
  kProxyUpstreamErrors,      // 502/504: upstream unreachable or too slow
  kReservations,             // holds taken
  kSettlements,              // holds settled with real usage
  kLedgerRowsWritten,        // usage rows durably written
  kLedgerBatchesWritten,     // transactions that wrote them
  kRedisErrors,              // Redis commands that failed
  kPostgresErrors,           // Postgres operations that failed
  kProxyAnsweredOnLoop,      // answered on the event loop, no worker thread involved
  kLeaseAdmissions,          // admitted against a budget lease, without asking Redis
  kCounterRebuilds,          // spend counters built from the ledger (missing in Redis)
  kLedgerBatchesApplied,     // committed ledger batches added to the spend counters
  kCounterRepairs,           // counters the reconciler found different from the ledger
  kLedgerRowsRejected,       // usage rows Postgres refused alone (kept in rejected.log)
  kInternalErrors,           // exceptions stopped at a Boundary (500 or a cut stream, no crash)
  kConnectionsRefused,       // proxy port: connections answered 503 at server.max_connections
  kRequestsTimedOut,         // proxy port: requests whose head or body missed its deadline (408)
  kCount
};

enum class Gauge : int {
  kLedgerQueueDepth,    // usage rows waiting to be written to Postgres
  kLedgerUnapplied,     // committed batches whose costs have not reached the counters yet
  kCounterDriftNanos,   // the last difference the reconciler saw, counter - ledger
  kCount
};

// Latency in milliseconds, counted into fixed buckets (rendered in seconds).
enum class Histogram : int {
  kUpstreamLatency,  // request start to last byte from the upstream, per provider
  kSettleLag,        // answer settled to its ledger row durable in Postgres
  kCount
};

class Metrics {
 public:
  static constexpr std::array<int64_t, 13> kBucketsMs = {5,    10,   25,   50,    100,   250,  500,
                                                         1000, 2500, 5000, 10000, 30000, 60000};
  // Label values a histogram is kept for; others are counted under "other".
  static constexpr std::array<const char*, 5> kProviders = {"mistral", "anthropic", "deepseek",
                                                            "ollama", "other"};

  void Set(Gauge g, int64_t value) {
    gauges_[static_cast<int>(g)].store(value, std::memory_order_relaxed);
  }
  void Observe(Histogram h, int64_t ms, std::string_view provider = "other");
  uint64_t Count(Histogram h, std::string_view provider = "other") const;

  void Inc(Counter c, uint64_t by = 1) {
    counters_[static_cast<int>(c)].fetch_add(by, std::memory_order_relaxed);
  }
  uint64_t Get(Counter c) const {
    return counters_[static_cast<int>(c)].load(std::memory_order_relaxed);
  }
  std::string RenderPrometheus() const;

 private:
  struct Series {
    std::array<std::atomic<uint64_t>, kBucketsMs.size()> buckets{};  // not cumulative
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_ms{0};
  };
  static size_t ProviderIndex(std::string_view provider);

  std::array<std::atomic<uint64_t>, static_cast<int>(Counter::kCount)> counters_{};
  std::array<std::atomic<int64_t>, static_cast<int>(Gauge::kCount)> gauges_{};
  std::array<std::array<Series, kProviders.size()>, static_cast<int>(Histogram::kCount)>
      histograms_{};
};

}  // namespace tollgate
