#include "net/metrics.h"

namespace tollgate {
namespace {

struct CounterInfo {
  const char* name;
  const char* labels;
  const char* help;
};

// Indexed by Counter. Refusals share one metric with a reason label.
constexpr CounterInfo kInfo[] = {
    {"tollgate_proxy_requests_total", "", "Requests received on the proxy port."},
    {"tollgate_refusals_total", "reason=\"auth\"", "Requests refused by the gate, by reason."},
    {"tollgate_refusals_total", "reason=\"budget\"", nullptr},
    {"tollgate_refusals_total", "reason=\"global_cap\"", nullptr},
    {"tollgate_refusals_total", "reason=\"bad_request\"", nullptr},
    {"tollgate_refusals_total", "reason=\"unavailable\"", nullptr},
    {"tollgate_upstream_errors_total", "", "Upstream failures answered with 502 or 504."},
    {"tollgate_reservations_total", "", "Budget holds taken."},
    {"tollgate_settlements_total", "", "Holds settled with real usage."},
    {"tollgate_ledger_rows_written_total", "", "Usage rows written to Postgres."},
    {"tollgate_ledger_batches_written_total", "", "Transactions that wrote usage rows."},
    {"tollgate_redis_errors_total", "", "Redis commands that failed."},
    {"tollgate_postgres_errors_total", "", "Postgres operations that failed."},
    {"tollgate_proxy_loop_answers_total", "",
     "Proxy requests answered on the event loop without a worker thread (the hot path)."},
    {"tollgate_lease_admissions_total", "",
     "Requests admitted against a budget lease held by this instance, without a Redis call."},
    {"tollgate_counter_rebuilds_total", "", "Spend counters built from the ledger."},
    {"tollgate_ledger_batches_applied_total", "",
     "Committed ledger batches added to the spend counters."},
    {"tollgate_counter_repairs_total", "",
     "Spend counters the reconciler found different from the ledger and repaired."},
    {"tollgate_ledger_rows_rejected_total", "",
     "Usage rows Postgres refused on their own, set aside in the spool's rejected.log."},
    {"tollgate_internal_errors_total", "",
     "Exceptions stopped where the event loop or a worker called in: each became a 500, a cut "
     "stream or a log line, never the end of the process."},
    {"tollgate_connections_refused_total", "",
     "Proxy connections answered 503 and closed because server.max_connections were open."},
    {"tollgate_requests_timed_out_total", "",
     "Proxy requests whose head or body did not arrive by its deadline (answered 408)."},
};
static_assert(std::size(kInfo) == static_cast<size_t>(Counter::kCount));

struct MetricInfo {
  const char* name;
  const char* help;
  bool per_provider;
};
constexpr MetricInfo kGaugeInfo[] = {
    {"tollgate_ledger_queue_depth", "Usage rows waiting to be written to Postgres.", false},
    {"tollgate_ledger_unapplied_batches",
     "Committed ledger batches of this instance whose costs have not reached the counters.",
     false},
    {"tollgate_counter_drift_nanos",
     "The last difference the reconciler found between a counter and the ledger.", false},
};
static_assert(std::size(kGaugeInfo) == static_cast<size_t>(Gauge::kCount));
constexpr MetricInfo kHistogramInfo[] = {
    {"tollgate_upstream_latency_seconds",
     "Time from the request reaching tollgate to the upstream's last byte.", true},
    {"tollgate_settle_lag_seconds",
     "Time from an answer being settled to its ledger row being durable in Postgres.", false},
};
static_assert(std::size(kHistogramInfo) == static_cast<size_t>(Histogram::kCount));

// Milliseconds as seconds, exactly: "2.5", "0.005".
std::string Seconds(uint64_t ms) {
  std::string frac = std::to_string(1000 + ms % 1000).substr(1);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return std::to_string(ms / 1000) + (frac.empty() ? "" : "." + frac);
}

}  // namespace

size_t Metrics::ProviderIndex(std::string_view provider) {
  for (size_t i = 0; i + 1 < kProviders.size(); ++i) {
    if (provider == kProviders[i]) return i;
  }
  return kProviders.size() - 1;
}

void Metrics::Observe(Histogram h, int64_t ms, std::string_view provider) {
  Series& s = histograms_[static_cast<int>(h)][ProviderIndex(provider)];
  uint64_t value = ms < 0 ? 0 : static_cast<uint64_t>(ms);
  for (size_t i = 0; i < kBucketsMs.size(); ++i) {
    if (ms <= kBucketsMs[i]) {
      s.buckets[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  s.count.fetch_add(1, std::memory_order_relaxed);
  s.sum_ms.fetch_add(value, std::memory_order_relaxed);
}

uint64_t Metrics::Count(Histogram h, std::string_view provider) const {
  return histograms_[static_cast<int>(h)][ProviderIndex(provider)].count.load(
      std::memory_order_relaxed);
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  for (size_t i = 0; i < std::size(kInfo); ++i) {
    const CounterInfo& c = kInfo[i];
    if (c.help) {
      out += std::string("# HELP ") + c.name + " " + c.help + "\n# TYPE " + c.name + " counter\n";
    }
    out += c.name;
    if (*c.labels) out += std::string("{") + c.labels + "}";
    out += " " + std::to_string(counters_[i].load(std::memory_order_relaxed)) + "\n";
  }
  for (size_t i = 0; i < std::size(kGaugeInfo); ++i) {
    const MetricInfo& g = kGaugeInfo[i];
    out += std::string("# HELP ") + g.name + " " + g.help + "\n# TYPE " + g.name + " gauge\n" +
           g.name + " " + std::to_string(gauges_[i].load(std::memory_order_relaxed)) + "\n";
  }
  for (size_t i = 0; i < std::size(kHistogramInfo); ++i) {
    const MetricInfo& h = kHistogramInfo[i];
    out += std::string("# HELP ") + h.name + " " + h.help + "\n# TYPE " + h.name + " histogram\n";
    for (size_t p = 0; p < kProviders.size(); ++p) {
      if (!h.per_provider && p + 1 != kProviders.size()) continue;
      const Series& s = histograms_[i][p];
      std::string label = h.per_provider ? std::string("provider=\"") + kProviders[p] + "\"," : "";
      uint64_t cumulative = 0;
      for (size_t b = 0; b < kBucketsMs.size(); ++b) {
        cumulative += s.buckets[b].load(std::memory_order_relaxed);
        out += std::string(h.name) + "_bucket{" + label + "le=\"" +
               Seconds(static_cast<uint64_t>(kBucketsMs[b])) + "\"} " + std::to_string(cumulative) +
               "\n";
      }
      uint64_t count = s.count.load(std::memory_order_relaxed);
      std::string braces = h.per_provider ? "{" + label.substr(0, label.size() - 1) + "}" : "";
      out +=
          std::string(h.name) + "_bucket{" + label + "le=\"+Inf\"} " + std::to_string(count) + "\n";
      out += std::string(h.name) + "_sum" + braces + " " +
             Seconds(s.sum_ms.load(std::memory_order_relaxed)) + "\n";
      out += std::string(h.name) + "_count" + braces + " " + std::to_string(count) + "\n";
    }
  }
  return out;
}

}  // namespace tollgate
