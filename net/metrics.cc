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
    {"tollgate_upstream_errors_total", "", "Upstream failures answered with 502 or 504."},
    {"tollgate_reservations_total", "", "Budget holds taken."},
    {"tollgate_settlements_total", "", "Holds settled with real usage."},
    {"tollgate_ledger_rows_written_total", "", "Usage rows written to Postgres."},
    {"tollgate_redis_errors_total", "", "Redis commands that failed."},
    {"tollgate_postgres_errors_total", "", "Postgres operations that failed."},
};
static_assert(std::size(kInfo) == static_cast<size_t>(Counter::kCount));

}  // namespace

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
  return out;
}

}  // namespace tollgate
