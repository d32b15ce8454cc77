// tollgate's configuration: parsed and validated once at start into an immutable
// Config. Every field states its default. Environment variables override the file.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "config/money.h"
#include "config/status.h"

namespace tollgate {

enum class Period { kDaily, kWeekly, kMonthly, kCustom };
enum class Enforcement { kHard, kSoft, kOff };
enum class Role { kUser, kAdmin };

std::optional<Period> ParsePeriod(const std::string& s);
std::optional<Enforcement> ParseEnforcement(const std::string& s);
std::optional<Role> ParseRole(const std::string& s);
const char* PeriodName(Period p);
const char* EnforcementName(Enforcement e);
const char* RoleName(Role r);

// An IANA time zone name this machine knows ("UTC", "Europe/Paris").
bool IsKnownTimezone(const std::string& name);

struct HostPort {
  std::string host;
  int port = 0;
};
// "host:port" (an IPv6 host in brackets). Port 0 asks the OS for a free port.
std::optional<HostPort> ParseHostPort(const std::string& text);

// An upstream's base URL: scheme://host[:port], http or https, no path (IPv6 hosts in
// brackets); the port defaults to 80 or 443.
struct UpstreamAddress {
  bool tls = false;
  std::string host;  // without brackets
  int port = 0;
  std::string authority;  // the Host header: host[:port] as written
};
std::optional<UpstreamAddress> ParseBaseUrl(const std::string& url);

// The budget settings a new user starts with, per role.
struct BudgetDefaults {
  Money limit = Money::FromNanos(30'000'000'000);  // $30
  Period period = Period::kMonthly;
  int custom_period_days = 30;  // used when period is custom
  Enforcement enforcement = Enforcement::kHard;
  std::string timezone = "UTC";
  int yellow = 50, orange = 75, red = 90;  // percent, strictly increasing
  bool budget_visible = true;
  bool can_modify_limit = false;
  std::optional<Money> max_self_limit;  // cap on a self-set limit
  bool can_reset = false;
};

struct Upstream {
  std::string base_url;  // scheme://host[:port], no path
  std::string api_key;   // secret; from the environment only, never logged
};

struct Config {
  std::string listen = "0.0.0.0:8080";          // TOLLGATE_LISTEN
  std::string admin_listen = "127.0.0.1:8081";  // TOLLGATE_ADMIN_LISTEN
  std::string database_url =
      "postgresql://tollgate@127.0.0.1:5432/tollgate";  // TOLLGATE_DATABASE_URL
  std::string redis_url = "redis://127.0.0.1:6379/0";   // TOLLGATE_REDIS_URL
  std::string admin_token;                              // TOLLGATE_ADMIN_TOKEN; empty = disabled
  std::string
      metrics_token;  // TOLLGATE_METRICS_TOKEN: bearer for /metrics only; empty = admins only
  std::string pricing_file;       // default: pricing.json beside the config file
  bool migrate_on_start = false;  // run migrations before serving
  // TOLLGATE_LEDGER_SPOOL_DIR: every usage row is written here before its answer leaves,
  // until it is in Postgres (budget/spool.h); relative to the working directory. "off":
  // none (rows wait in memory only: lost with the process; new requests are refused
  // while server.ledger_queue_rows wait).
  std::string ledger_spool_dir = "tollgate-spool";

  // Keyed by provider: mistral, anthropic, deepseek, ollama.
  std::map<std::string, Upstream> upstreams;

  // Server: a worker thread per request in progress (an open stream holds one; an idle
  // keep-alive connection holds none), so the pool bounds the concurrent streams.
  int worker_threads = 2200;                 // server.worker_threads
  size_t max_body_bytes = 10 * 1024 * 1024;  // server.max_body_bytes (413 above)
  // Open client connections on the proxy port; past it a new one is answered 503 and closed.
  size_t max_connections = 10'000;  // server.max_connections
  // A request's whole head must arrive within this of its first byte (408 otherwise).
  int head_timeout_seconds = 10;  // server.head_timeout_seconds
  // Its body within body_timeout_seconds + size / body_min_bytes_per_second of the head's
  // end (a 10 MiB body: 170 s; a chunked body: the size it has reached).
  int body_timeout_seconds = 10;                 // server.body_timeout_seconds
  size_t body_min_bytes_per_second = 64 * 1024;  // server.body_min_bytes_per_second
  int upstream_connect_timeout_ms = 5000;        // server.upstream_connect_timeout_ms
  int upstream_read_timeout_ms = 600000;         // server.upstream_read_timeout_ms (504)
  // A buffered (not streamed) upstream answer larger than this is a 502.
  size_t max_upstream_answer_bytes = 64 * 1024 * 1024;  // server.max_upstream_answer_bytes
  int db_pool_size = 8;                                 // server.db_pool_size
  int redis_pool_size = 32;                             // server.redis_pool_size
  int shutdown_grace_seconds = 20;           // server.shutdown_grace_seconds: a stop's bound
  int ledger_queue_rows = 100000;            // server.ledger_queue_rows: in memory, then spool

  // The gate.
  bool gate_enabled = true;  // gate.enabled: false = no budget checks at all (usage still recorded)
  bool clamp_max_tokens = true;                      // gate.clamp_max_tokens
  int min_output_tokens = 256;                       // gate.min_output_tokens (clamp floor)
  int hold_ttl_seconds = 900;                        // gate.hold_ttl_seconds
  int rebuild_quarantine_ms = 3000;                  // gate.rebuild_quarantine_ms (counters.h)
  int reconcile_seconds = 60;  // gate.reconcile_seconds: counters vs ledger (0: never)
  int lease_requests = 256;                          // gate.lease_requests (0: no leases)
  bool redis_down_use_postgres = true;               // gate.redis_down: "postgres" | "fail_closed"
  bool auto_create_end_users = true;                 // gate.auto_create_end_users
  std::optional<Money> fallback_input_per_million;   // gate.fallback_price.input (USD/M)
  std::optional<Money> fallback_output_per_million;  // gate.fallback_price.output
  int drain_max_concurrent = 64;                     // gate.drain_max_concurrent
  int drain_timeout_seconds = 120;                   // gate.drain_timeout_seconds

  BudgetDefaults user_defaults;   // defaults.user
  BudgetDefaults admin_defaults;  // defaults.admin ($100/month)

  std::optional<Money> global_cap;              // global_cap.limit_usd; none = no cap
  Period global_cap_period = Period::kMonthly;  // global_cap.period

  std::string alert_webhook_url;  // alerts.webhook_url; empty = store only
  int alert_max_attempts = 12;    // alerts.max_attempts

  const BudgetDefaults& DefaultsFor(Role role) const {
    return role == Role::kAdmin ? admin_defaults : user_defaults;
  }
};

using Environment = std::map<std::string, std::string>;
Environment ProcessEnvironment();

// Loads `path` (empty: defaults only), then applies `env`, then validates.
// Errors read "field: reason".
Result<Config> LoadConfig(const std::string& path, const Environment& env);

}  // namespace tollgate
