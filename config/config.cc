#include "config/config.h"

#include <filesystem>
#include <set>

#include "config/jsonc.h"

extern char** environ;

namespace tollgate {
namespace {

using nlohmann::json;

const char* const kProviders[] = {"mistral", "anthropic", "deepseek", "ollama"};

const std::map<std::string, std::string> kDefaultUpstreams = {
    {"mistral", "https://api.mistral.ai"},
    {"anthropic", "https://api.anthropic.com"},
    {"deepseek", "https://api.deepseek.com"},
    {"ollama", "http://127.0.0.1:11434"},
};

// Small typed readers: each names the field when the value has the wrong type.
Status ReadString(const json& j, const std::string& key, const std::string& field,
                  std::string* out) {
  if (!j.contains(key)) return Status::Ok();
  if (!j[key].is_string()) return FieldError(field, "must be a string");
  *out = j[key].get<std::string>();
  return Status::Ok();
}

Status ReadBool(const json& j, const std::string& key, const std::string& field, bool* out) {
  if (!j.contains(key)) return Status::Ok();
  if (!j[key].is_boolean()) return FieldError(field, "must be true or false");
  *out = j[key].get<bool>();
  return Status::Ok();
}

template <typename Int>
Status ReadInt(const json& j, const std::string& key, const std::string& field, long long lo,
               long long hi, Int* out) {
  if (!j.contains(key)) return Status::Ok();
  if (!j[key].is_number_integer()) return FieldError(field, "must be an integer");
  long long v = j[key].get<long long>();
  if (v < lo || v > hi) {
    return FieldError(field,
                      "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  *out = static_cast<Int>(v);
  return Status::Ok();
}

// Money is written as a decimal string ("30.5") or a plain number (30.5).
Status ReadMoney(const json& j, const std::string& key, const std::string& field,
                 std::optional<Money>* out) {
  if (!j.contains(key) || j[key].is_null()) return Status::Ok();
  std::optional<std::string> text;
  if (j[key].is_string())
    text = j[key].get<std::string>();
  else if (j[key].is_number())
    text = DecimalText(j[key].get<double>());
  auto money = text ? Money::ParseUsd(*text) : std::nullopt;
  if (!money) return FieldError(field, "must be a USD amount with at most 9 decimals");
  if (*money < Money()) return FieldError(field, "must not be negative");
  *out = money;
  return Status::Ok();
}

Status ReadDefaults(const json& j, const std::string& where, BudgetDefaults* d) {
  if (Status s = CheckKeys(
          j, where,
          {"limit_usd", "period", "custom_period_days", "enforcement", "timezone", "thresholds",
           "budget_visible", "can_modify_limit", "max_self_limit_usd", "can_reset"});
      !s.ok())
    return s;
  std::optional<Money> limit;
  if (Status s = ReadMoney(j, "limit_usd", where + ".limit_usd", &limit); !s.ok()) return s;
  if (limit) d->limit = *limit;
  if (Status s =
          ReadMoney(j, "max_self_limit_usd", where + ".max_self_limit_usd", &d->max_self_limit);
      !s.ok())
    return s;
  std::string text;
  if (Status s = ReadString(j, "period", where + ".period", &text); !s.ok()) return s;
  if (!text.empty()) {
    auto p = ParsePeriod(text);
    if (!p) return FieldError(where + ".period", "must be daily, weekly, monthly or custom");
    d->period = *p;
  }
  if (Status s = ReadInt(j, "custom_period_days", where + ".custom_period_days", 1, 366,
                         &d->custom_period_days);
      !s.ok())
    return s;
  text.clear();
  if (Status s = ReadString(j, "enforcement", where + ".enforcement", &text); !s.ok()) return s;
  if (!text.empty()) {
    auto e = ParseEnforcement(text);
    if (!e) return FieldError(where + ".enforcement", "must be hard, soft or off");
    d->enforcement = *e;
  }
  if (Status s = ReadString(j, "timezone", where + ".timezone", &d->timezone); !s.ok()) return s;
  if (j.contains("thresholds")) {
    const json& t = j["thresholds"];
    std::string tw = where + ".thresholds";
    if (Status s = CheckKeys(t, tw, {"yellow", "orange", "red"}); !s.ok()) return s;
    if (Status s = ReadInt(t, "yellow", tw + ".yellow", 1, 100, &d->yellow); !s.ok()) return s;
    if (Status s = ReadInt(t, "orange", tw + ".orange", 1, 100, &d->orange); !s.ok()) return s;
    if (Status s = ReadInt(t, "red", tw + ".red", 1, 100, &d->red); !s.ok()) return s;
    if (!(d->yellow < d->orange && d->orange < d->red)) {
      return FieldError(tw, "must be strictly increasing: yellow < orange < red");
    }
  }
  if (Status s = ReadBool(j, "budget_visible", where + ".budget_visible", &d->budget_visible);
      !s.ok())
    return s;
  if (Status s = ReadBool(j, "can_modify_limit", where + ".can_modify_limit", &d->can_modify_limit);
      !s.ok())
    return s;
  return ReadBool(j, "can_reset", where + ".can_reset", &d->can_reset);
}

Status ReadFile(const json& root, Config* c) {
  if (Status s = CheckKeys(root, "",
                           {"listen", "admin_listen", "database_url", "redis_url", "pricing_file",
                            "migrate_on_start", "ledger_spool_dir", "server", "upstreams", "gate",
                            "defaults", "global_cap", "alerts"});
      !s.ok())
    return s;
  for (auto [key, target] : {std::pair{"listen", &c->listen},
                             {"admin_listen", &c->admin_listen},
                             {"database_url", &c->database_url},
                             {"redis_url", &c->redis_url},
                             {"pricing_file", &c->pricing_file},
                             {"ledger_spool_dir", &c->ledger_spool_dir}}) {
    if (Status s = ReadString(root, key, key, target); !s.ok()) return s;
  }
  if (Status s = ReadBool(root, "migrate_on_start", "migrate_on_start", &c->migrate_on_start);
      !s.ok())
    return s;

  if (root.contains("server")) {
    const json& j = root["server"];
    if (Status s =
            CheckKeys(j, "server",
                      {"worker_threads", "max_body_bytes", "max_connections",
                       "head_timeout_seconds", "body_timeout_seconds", "body_min_bytes_per_second",
                       "upstream_connect_timeout_ms", "upstream_read_timeout_ms",
                       "max_upstream_answer_bytes", "db_pool_size", "redis_pool_size",
                       "shutdown_grace_seconds", "ledger_queue_rows"});
        !s.ok())
      return s;
    Status checks[] = {
        ReadInt(j, "worker_threads", "server.worker_threads", 4, 100000, &c->worker_threads),
        ReadInt(j, "max_body_bytes", "server.max_body_bytes", 1024, 1LL << 32, &c->max_body_bytes),
        ReadInt(j, "max_connections", "server.max_connections", 16, 1'000'000, &c->max_connections),
        ReadInt(j, "head_timeout_seconds", "server.head_timeout_seconds", 1, 3600,
                &c->head_timeout_seconds),
        ReadInt(j, "body_timeout_seconds", "server.body_timeout_seconds", 1, 3600,
                &c->body_timeout_seconds),
        ReadInt(j, "body_min_bytes_per_second", "server.body_min_bytes_per_second", 1, 1LL << 30,
                &c->body_min_bytes_per_second),
        ReadInt(j, "max_upstream_answer_bytes", "server.max_upstream_answer_bytes", 1024, 1LL << 34,
                &c->max_upstream_answer_bytes),
        ReadInt(j, "upstream_connect_timeout_ms", "server.upstream_connect_timeout_ms", 1, 600000,
                &c->upstream_connect_timeout_ms),
        ReadInt(j, "upstream_read_timeout_ms", "server.upstream_read_timeout_ms", 1, 86400000,
                &c->upstream_read_timeout_ms),
        ReadInt(j, "db_pool_size", "server.db_pool_size", 1, 1000, &c->db_pool_size),
        ReadInt(j, "redis_pool_size", "server.redis_pool_size", 1, 10000, &c->redis_pool_size),
        ReadInt(j, "shutdown_grace_seconds", "server.shutdown_grace_seconds", 1, 3600,
                &c->shutdown_grace_seconds),
        ReadInt(j, "ledger_queue_rows", "server.ledger_queue_rows", 1000, 100000000,
                &c->ledger_queue_rows)};
    for (const Status& s : checks)
      if (!s.ok()) return s;
  }

  if (root.contains("upstreams")) {
    const json& j = root["upstreams"];
    if (Status s = CheckKeys(j, "upstreams", {"mistral", "anthropic", "deepseek", "ollama"});
        !s.ok())
      return s;
    for (const auto& [name, u] : j.items()) {
      if (Status s = CheckKeys(u, "upstreams." + name, {"url"}); !s.ok()) return s;
      if (Status s =
              ReadString(u, "url", "upstreams." + name + ".url", &c->upstreams[name].base_url);
          !s.ok())
        return s;
    }
  }

  if (root.contains("gate")) {
    const json& j = root["gate"];
    if (Status s =
            CheckKeys(j, "gate",
                      {"enabled", "clamp_max_tokens", "min_output_tokens", "hold_ttl_seconds",
                       "lease_requests", "redis_down", "auto_create_end_users", "fallback_price",
                       "drain_max_concurrent", "drain_timeout_seconds", "rebuild_quarantine_ms",
                       "reconcile_seconds"});
        !s.ok())
      return s;
    Status checks[] = {
        ReadBool(j, "enabled", "gate.enabled", &c->gate_enabled),
        ReadBool(j, "clamp_max_tokens", "gate.clamp_max_tokens", &c->clamp_max_tokens),
        ReadInt(j, "min_output_tokens", "gate.min_output_tokens", 1, 1000000,
                &c->min_output_tokens),
        ReadInt(j, "hold_ttl_seconds", "gate.hold_ttl_seconds", 10, 86400, &c->hold_ttl_seconds),
        ReadInt(j, "rebuild_quarantine_ms", "gate.rebuild_quarantine_ms", 0, 60000,
                &c->rebuild_quarantine_ms),
        ReadInt(j, "reconcile_seconds", "gate.reconcile_seconds", 0, 86400,
                &c->reconcile_seconds),
        ReadInt(j, "lease_requests", "gate.lease_requests", 0, 4096, &c->lease_requests),
        ReadBool(j, "auto_create_end_users", "gate.auto_create_end_users",
                 &c->auto_create_end_users),
        ReadInt(j, "drain_max_concurrent", "gate.drain_max_concurrent", 0, 100000,
                &c->drain_max_concurrent),
        ReadInt(j, "drain_timeout_seconds", "gate.drain_timeout_seconds", 1, 3600,
                &c->drain_timeout_seconds)};
    for (const Status& s : checks)
      if (!s.ok()) return s;
    std::string mode = "postgres";
    if (Status s = ReadString(j, "redis_down", "gate.redis_down", &mode); !s.ok()) return s;
    if (mode != "postgres" && mode != "fail_closed") {
      return FieldError("gate.redis_down", "must be \"postgres\" or \"fail_closed\"");
    }
    c->redis_down_use_postgres = mode == "postgres";
    if (j.contains("fallback_price") && !j["fallback_price"].is_null()) {
      const json& f = j["fallback_price"];
      if (Status s = CheckKeys(f, "gate.fallback_price", {"input", "output"}); !s.ok()) return s;
      if (!f.contains("input") || !f.contains("output")) {
        return FieldError("gate.fallback_price",
                          "needs both input and output (USD per million tokens)");
      }
      if (Status s =
              ReadMoney(f, "input", "gate.fallback_price.input", &c->fallback_input_per_million);
          !s.ok())
        return s;
      if (Status s =
              ReadMoney(f, "output", "gate.fallback_price.output", &c->fallback_output_per_million);
          !s.ok())
        return s;
    }
  }

  if (root.contains("defaults")) {
    const json& j = root["defaults"];
    if (Status s = CheckKeys(j, "defaults", {"user", "admin"}); !s.ok()) return s;
    if (j.contains("user")) {
      if (Status s = ReadDefaults(j["user"], "defaults.user", &c->user_defaults); !s.ok()) return s;
    }
    if (j.contains("admin")) {
      if (Status s = ReadDefaults(j["admin"], "defaults.admin", &c->admin_defaults); !s.ok())
        return s;
    }
  }

  if (root.contains("global_cap") && !root["global_cap"].is_null()) {
    const json& j = root["global_cap"];
    if (Status s = CheckKeys(j, "global_cap", {"limit_usd", "period"}); !s.ok()) return s;
    if (Status s = ReadMoney(j, "limit_usd", "global_cap.limit_usd", &c->global_cap); !s.ok())
      return s;
    std::string text;
    if (Status s = ReadString(j, "period", "global_cap.period", &text); !s.ok()) return s;
    if (!text.empty()) {
      auto p = ParsePeriod(text);
      if (!p || *p == Period::kCustom) {
        return FieldError("global_cap.period", "must be daily, weekly or monthly");
      }
      c->global_cap_period = *p;
    }
  }

  if (root.contains("alerts")) {
    const json& j = root["alerts"];
    if (Status s = CheckKeys(j, "alerts", {"webhook_url", "max_attempts"}); !s.ok()) return s;
    if (Status s = ReadString(j, "webhook_url", "alerts.webhook_url", &c->alert_webhook_url);
        !s.ok())
      return s;
    if (Status s =
            ReadInt(j, "max_attempts", "alerts.max_attempts", 1, 1000, &c->alert_max_attempts);
        !s.ok())
      return s;
  }
  return Status::Ok();
}

void ApplyEnvironment(const Environment& env, Config* c) {
  auto get = [&](const char* name) -> const std::string* {
    auto it = env.find(name);
    return it == env.end() || it->second.empty() ? nullptr : &it->second;
  };
  for (auto [name, target] : {std::pair{"TOLLGATE_DATABASE_URL", &c->database_url},
                              {"TOLLGATE_REDIS_URL", &c->redis_url},
                              {"TOLLGATE_LISTEN", &c->listen},
                              {"TOLLGATE_ADMIN_LISTEN", &c->admin_listen},
                              {"TOLLGATE_ADMIN_TOKEN", &c->admin_token},
                              {"TOLLGATE_METRICS_TOKEN", &c->metrics_token},
                              {"TOLLGATE_PRICING_FILE", &c->pricing_file},
                              {"TOLLGATE_LEDGER_SPOOL_DIR", &c->ledger_spool_dir}}) {
    if (const std::string* v = get(name)) *target = *v;
  }
  for (const char* provider : kProviders) {
    std::string upper = provider;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (const std::string* v = get(("TOLLGATE_" + upper + "_URL").c_str())) {
      c->upstreams[provider].base_url = *v;
    }
    if (const std::string* v = get((upper + "_API_KEY").c_str()))
      c->upstreams[provider].api_key = *v;
  }
  if (const std::string* v = get("TOLLGATE_MIGRATE_ON_START"))
    c->migrate_on_start = *v == "1" || *v == "true";
}

Status Validate(const Config& c) {
  if (!ParseHostPort(c.listen)) return FieldError("listen", "must be host:port");
  if (!ParseHostPort(c.admin_listen)) return FieldError("admin_listen", "must be host:port");
  if (c.database_url.rfind("postgresql://", 0) != 0 &&
      c.database_url.rfind("postgres://", 0) != 0) {
    return FieldError("database_url", "must start with postgresql://");
  }
  if (c.redis_url.rfind("redis://", 0) != 0)
    return FieldError("redis_url", "must start with redis://");
  for (const auto& [name, u] : c.upstreams) {
    if (!ParseBaseUrl(u.base_url)) {
      return FieldError("upstreams." + name + ".url",
                        "must be scheme://host[:port] with http or https and no path");
    }
  }
  for (auto [where, d] :
       {std::pair{"defaults.user", &c.user_defaults}, {"defaults.admin", &c.admin_defaults}}) {
    if (!IsKnownTimezone(d->timezone)) {
      return FieldError(std::string(where) + ".timezone",
                        "unknown IANA time zone \"" + d->timezone + "\"");
    }
  }
  if (!c.alert_webhook_url.empty() && c.alert_webhook_url.rfind("http://", 0) != 0 &&
      c.alert_webhook_url.rfind("https://", 0) != 0) {
    return FieldError("alerts.webhook_url", "must be an http:// or https:// URL");
  }
  return Status::Ok();
}

}  // namespace

bool IsKnownTimezone(const std::string& name) {
  if (name == "UTC") return true;
  // Zone names start with a capital letter and have no dots; that keeps out the
  // zoneinfo directory's other files (zone.tab, tzdata.zi) and any path tricks.
  if (name.empty() || name.size() > 64 || name[0] < 'A' || name[0] > 'Z' ||
      name.find('.') != std::string::npos)
    return false;
  std::error_code ec;
  return std::filesystem::is_regular_file("/usr/share/zoneinfo/" + name, ec);
}

std::optional<Period> ParsePeriod(const std::string& s) {
  if (s == "daily") return Period::kDaily;
  if (s == "weekly") return Period::kWeekly;
  if (s == "monthly") return Period::kMonthly;
  if (s == "custom") return Period::kCustom;
  return std::nullopt;
}
std::optional<Enforcement> ParseEnforcement(const std::string& s) {
  if (s == "hard") return Enforcement::kHard;
  if (s == "soft") return Enforcement::kSoft;
  if (s == "off") return Enforcement::kOff;
  return std::nullopt;
}
std::optional<Role> ParseRole(const std::string& s) {
  if (s == "user") return Role::kUser;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}
const char* PeriodName(Period p) {
  switch (p) {
    case Period::kDaily:
      return "daily";
    case Period::kWeekly:
      return "weekly";
    case Period::kMonthly:
      return "monthly";
    case Period::kCustom:
      return "custom";
  }
  return "monthly";
}
const char* EnforcementName(Enforcement e) {
  switch (e) {
    case Enforcement::kHard:
      return "hard";
    case Enforcement::kSoft:
      return "soft";
    case Enforcement::kOff:
      return "off";
  }
  return "hard";
}
const char* RoleName(Role r) { return r == Role::kAdmin ? "admin" : "user"; }

std::optional<HostPort> ParseHostPort(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  int port = 0;
  for (char ch : text.substr(colon + 1)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    port = port * 10 + (ch - '0');
    if (port > 65535) return std::nullopt;
  }
  hp.port = port;
  return hp;
}

std::optional<UpstreamAddress> ParseBaseUrl(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return std::nullopt;
  std::string scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return std::nullopt;
  UpstreamAddress a;
  a.tls = scheme == "https";
  a.authority = url.substr(scheme_end + 3);
  if (a.authority.empty() || a.authority.find('/') != std::string::npos) return std::nullopt;
  // A port is given when a colon follows the host (after an IPv6 host's brackets).
  bool bracketed = a.authority.front() == '[';
  size_t host_end = bracketed ? a.authority.find(']') : 0;
  if (host_end == std::string::npos) return std::nullopt;
  if (a.authority.find(':', host_end) != std::string::npos) {
    auto hp = ParseHostPort(a.authority);
    if (!hp || hp->port == 0) return std::nullopt;
    a.host = hp->host;
    a.port = hp->port;
  } else {
    a.host = bracketed ? a.authority.substr(1, host_end - 1) : a.authority;
    a.port = a.tls ? 443 : 80;
  }
  if (a.host.empty()) return std::nullopt;
  return a;
}

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string entry = *e;
    auto eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

Result<Config> LoadConfig(const std::string& path, const Environment& env) {
  Config c;
  c.admin_defaults.limit = Money::FromNanos(100'000'000'000);  // $100: admins default higher
  for (const auto& [name, url] : kDefaultUpstreams) c.upstreams[name].base_url = url;
  if (!path.empty()) {
    auto root = ReadJsoncFile(path);
    if (!root.ok()) return root.status();
    if (Status s = ReadFile(*root, &c); !s.ok()) return Status::Invalid(path + ": " + s.message());
    if (c.pricing_file.empty()) {
      c.pricing_file = (std::filesystem::path(path).parent_path() / "pricing.json").string();
    } else if (std::filesystem::path(c.pricing_file).is_relative()) {
      c.pricing_file = (std::filesystem::path(path).parent_path() / c.pricing_file).string();
    }
  }
  ApplyEnvironment(env, &c);
  if (c.pricing_file.empty()) c.pricing_file = "config/pricing.json";
  // Durable by default: an empty setting (earlier versions' default) means the default.
  if (c.ledger_spool_dir.empty()) c.ledger_spool_dir = Config().ledger_spool_dir;
  if (Status s = Validate(c); !s.ok()) return s;
  return c;
}

}  // namespace tollgate
