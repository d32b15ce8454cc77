#include "cli/cli.h"

#include <pthread.h>

#include <charconv>
#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "admin/api_support.h"
#include "admin/settings_json.h"
#include "admin/side_server.h"
#include "budget/migrations.h"
#include "budget/pg_directory.h"
#include "budget/pg_gate.h"
#include "budget/price_overrides.h"
#include "budget/redis.h"
#include "budget/reconciler.h"
#include "budget/redis_gate.h"
#include "budget/usage_queries.h"
#include "cli/args.h"
#include "config/pricing.h"
#include "proxy/proxy_server.h"

namespace tollgate {
namespace {

struct Context {
  Config config;
  std::ostream& out;
  std::ostream& err;
  SystemClock clock;
  std::unique_ptr<PgPool> pool;
  std::unique_ptr<PgDirectory> directory;

  PgDirectory& Dir() {
    if (!directory) {
      pool = std::make_unique<PgPool>(config.database_url, 2);
      directory = std::make_unique<PgDirectory>(*pool);
    }
    return *directory;
  }
  int Fail(const std::string& reason) {
    err << "tollgate: " << reason << "\n";
    return 1;
  }
};

struct Command {
  std::string group;  // "user" in "user create"; empty for single-word commands
  std::string name;
  std::string usage;
  std::set<std::string> valued;
  std::set<std::string> switches;
  int (*run)(Context&, const Args&);
};

std::string Required(const Args& a, const std::string& name, std::string* missing) {
  auto v = a.Get(name);
  if (!v || v->empty()) *missing = "--" + name + " is required";
  return v.value_or("");
}

// ---- serve -----------------------------------------------------------------

int Serve(Context& ctx, const Args&) {
  const Config& c = ctx.config;
  RaiseOpenFileLimit();  // every open stream holds two sockets (client and upstream)
  // SIGINT and SIGTERM are taken by sigwait() at the end, not by a handler: blocked
  // here, before any thread starts, so every thread inherits the block. (A handler
  // setting a flag for `while (!flag) pause();` lost the signal when it landed between
  // the test and pause(), or ran on another thread: tollgate then ignored the stop.)
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto pricing = PricingTable::Load(c.pricing_file);
  if (!pricing.ok()) return ctx.Fail(pricing.status().message());
  auto redis_address = ParseRedisUrl(c.redis_url);
  if (!redis_address.ok()) return ctx.Fail("redis_url: " + redis_address.status().message());

  PgPool pool(c.database_url, c.db_pool_size);
  if (c.migrate_on_start) {
    int applied = 0;
    if (Status s = Migrate(pool, &applied); !s.ok()) return ctx.Fail("migrate: " + s.message());
  }
  HiredisPool redis(*redis_address, c.redis_pool_size, 2000);
  Metrics metrics;
  PgDirectory directory(pool);
  Authenticator authenticator(directory, ctx.clock);
  SettingsCache settings(directory, ctx.clock);
  PgLedgerSums ledger_sums(pool);
  RedisCounters counters(redis, ledger_sums, ctx.clock, metrics,
                         std::chrono::milliseconds(c.rebuild_quarantine_ms));
  PgLedger ledger(pool, metrics, &counters,
                  LedgerOptions{.spool_dir = c.ledger_spool_dir == "off" ? "" : c.ledger_spool_dir,
                                .max_queued_rows = static_cast<size_t>(c.ledger_queue_rows)});
  std::optional<GlobalCap> global_cap;
  if (c.global_cap) global_cap = GlobalCap{*c.global_cap, c.global_cap_period};
  PgAlerts alerts(pool, ctx.clock, metrics, AlertOptions{c.alert_webhook_url, c.alert_max_attempts},
                  HttpWebhookPoster());
  alerts.Start();
  RedisGate gate(redis, settings, counters, ctx.clock, metrics,
                 std::chrono::seconds(c.hold_ttl_seconds), global_cap, &alerts);
  PgGate pg_gate(pool, settings, ctx.clock, std::chrono::seconds(c.hold_ttl_seconds));
  FallbackGate fallback_gate(gate, c.redis_down_use_postgres ? &pg_gate : nullptr, redis,
                             ctx.clock);
  OpenGate open_gate;
  Gate& proxy_gate = c.gate_enabled ? static_cast<Gate&>(fallback_gate) : open_gate;
  if (!c.gate_enabled)
    ctx.err << "tollgate: gate.enabled is false: no budget is enforced" << std::endl;
  ProxyService proxy_service(
      ProxyDependencies{c, *pricing, authenticator, proxy_gate, ledger, metrics, ctx.clock});

  SideDependencies side_deps{c, metrics,
                             [&pool] {
                               return pool.Run([](pqxx::connection& conn) {
                                 pqxx::nontransaction(conn).exec("SELECT 1");
                               });
                             },
                             [&redis] {
                               auto r = redis.Command({"PING"});
                               return r.ok() ? Status::Ok() : r.status();
                             }};
  PgUsageQueries usage(pool);
  PriceOverrides price_overrides(pool, *pricing);
  if (Status s = price_overrides.Refresh(); !s.ok())
    ctx.err << "tollgate: price overrides not loaded yet: " << s.message() << std::endl;
  price_overrides.Start(std::chrono::seconds(5));
  BudgetApiDependencies budget_api{
      .config = c,
      .clock = ctx.clock,
      .directory = directory,
      .authenticator = authenticator,
      .settings = settings,
      .spend_state = [&gate](int64_t user,
                             const Window& window) { return gate.State(user, window); },
      .usage = &usage,
      .pricing = &*pricing,
      .price_overrides = &price_overrides};
  side_deps.budget_api = &budget_api;
  std::unique_ptr<EventServer> side = BuildSideServer(side_deps);
  std::unique_ptr<EventServer> proxy = proxy_service.BuildServer();
  // The proxy's hot path reserves and settles through one pipelined connection driven
  // by its event loop (the worker path keeps the pool above).
  HiredisAsync loop_redis(*redis_address, *proxy, std::chrono::milliseconds(2000));
  gate.set_leases(c.lease_requests);
  gate.set_async(&loop_redis, proxy.get());

  // A Redis restarted empty gets this instance's live holds back within its quarantine.
  if (c.gate_enabled) counters.Watch(std::chrono::milliseconds(200));
  Reconciler reconciler(pool, redis, directory, ctx.clock, metrics);
  if (c.gate_enabled && c.reconcile_seconds > 0)
    reconciler.Start(std::chrono::seconds(c.reconcile_seconds));

  auto side_addr = ParseHostPort(c.admin_listen);
  auto proxy_addr = ParseHostPort(c.listen);
  if (side->Start(side_addr->host, side_addr->port) < 0)
    return ctx.Fail("cannot listen on " + c.admin_listen);
  if (proxy->Start(proxy_addr->host, proxy_addr->port) < 0)
    return ctx.Fail("cannot listen on " + c.listen);
  ctx.out << "tollgate: proxy on " << proxy_addr->host << ":" << proxy->port() << ", side port on "
          << side_addr->host << ":" << side->port() << std::endl;

  std::signal(SIGPIPE, SIG_IGN);
  int stop_signal = 0;
  sigwait(&stop_signals, &stop_signal);
  ctx.out << "tollgate: shutting down" << std::endl;
  reconciler.Stop();
  // Within server.shutdown_grace_seconds: requests in progress get three quarters of it
  // (a stream still going then is cut, and billed from what was relayed), the ledger
  // the rest at least.
  auto grace = std::chrono::milliseconds(c.shutdown_grace_seconds * 1000);
  auto stop_by = std::chrono::steady_clock::now() + grace;
  proxy_service.StopDraining();
  proxy->Stop(grace * 3 / 4);
  gate.ReleaseLeases();
  side->Stop(std::chrono::seconds(1));
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      stop_by - std::chrono::steady_clock::now());
  if (!ledger.Stop(std::max(left, grace / 4)))
    ctx.err << "tollgate: usage rows not yet in Postgres wait in " << c.ledger_spool_dir
            << " for the next start" << std::endl;
  return 0;
}

// ---- migrate ---------------------------------------------------------------

int MigrateCommand(Context& ctx, const Args&) {
  PgPool pool(ctx.config.database_url, 1);
  int applied = 0;
  if (Status s = Migrate(pool, &applied); !s.ok()) return ctx.Fail("migrate: " + s.message());
  ctx.out << "applied " << applied << " migration(s); schema version " << LatestSchemaVersion()
          << "\n";
  return 0;
}

// ---- users -----------------------------------------------------------------

int UserCreate(Context& ctx, const Args& a) {
  std::string missing;
  NewUser u;
  u.name = Required(a, "name", &missing);
  if (!missing.empty()) return ctx.Fail(missing);
  u.email = a.Get("email").value_or("");
  u.external_id = a.Get("external-id").value_or("");
  if (auto role = a.Get("role")) {
    auto r = ParseRole(*role);
    if (!r) return ctx.Fail("--role must be user or admin");
    u.role = *r;
  }
  if (auto limit = a.Get("limit")) {
    u.limit = Money::ParseUsd(*limit);
    if (!u.limit || *u.limit < Money())
      return ctx.Fail("--limit must be a USD amount such as 30 or 12.5");
  }
  if (auto period = a.Get("period")) {
    u.period = ParsePeriod(*period);
    if (!u.period) return ctx.Fail("--period must be daily, weekly, monthly or custom");
  }
  auto user = ctx.Dir().CreateUser(u, ctx.config.DefaultsFor(u.role), ctx.clock.Now());
  if (!user.ok()) {
    if (user.status().code() == Status::Code::kConflict)
      return ctx.Fail("a user with that name or external id already exists");
    return ctx.Fail(user.status().message());
  }
  ctx.out << user->id << "\n";
  return 0;
}

int UserList(Context& ctx, const Args&) {
  auto users = ctx.Dir().ListUsers();
  if (!users.ok()) return ctx.Fail(users.status().message());
  ctx.out << std::left << std::setw(8) << "ID" << std::setw(24) << "NAME" << std::setw(7) << "ROLE"
          << std::setw(10) << "STATUS" << std::setw(28) << "EMAIL"
          << "EXTERNAL_ID\n";
  for (const User& u : *users) {
    ctx.out << std::left << std::setw(8) << u.id << std::setw(24) << u.name << std::setw(7)
            << RoleName(u.role) << std::setw(10) << (u.disabled ? "disabled" : "active")
            << std::setw(28) << u.email << u.external_id << "\n";
  }
  return 0;
}

// ---- keys ------------------------------------------------------------------

int KeyCreate(Context& ctx, const Args& a) {
  std::string missing;
  std::string who = Required(a, "user", &missing);
  if (!missing.empty()) return ctx.Fail(missing);
  std::optional<Timestamp> expires;
  if (auto e = a.Get("expires")) {
    Timestamp t;
    if (!ParseRfc3339(*e, &t))
      return ctx.Fail("--expires must be a date (YYYY-MM-DD) or RFC 3339 time");
    if (t <= ctx.clock.Now()) return ctx.Fail("--expires must be in the future");
    expires = t;
  }
  auto user = ctx.Dir().FindUser(who);
  if (!user.ok()) return ctx.Fail(user.status().message());
  auto key = ctx.Dir().CreateKey(user->id, a.Get("name").value_or(""), a.Has("act-as-user"),
                                 expires, ctx.clock.Now());
  if (!key.ok()) return ctx.Fail(key.status().message());
  ctx.out << "key id " << key->key.id << " for user " << user->name << " (prefix "
          << key->key.prefix << ")" << (key->key.act_as_user ? ", act_as_user" : "")
          << (expires ? ", expires " + FormatRfc3339(*expires) : std::string()) << "\n";
  ctx.out << "the secret is shown once; store it now:\n" << key->secret << "\n";
  return 0;
}

int KeyRevoke(Context& ctx, const Args& a) {
  std::string target = a.Get("key").value_or(a.positional().empty() ? "" : a.positional()[0]);
  if (target.empty()) return ctx.Fail("--key ID_OR_PREFIX is required");
  if (Status s = ctx.Dir().RevokeKey(target, ctx.clock.Now()); !s.ok())
    return ctx.Fail(s.message());
  ctx.out << "revoked " << target << "\n";
  return 0;
}

int KeyList(Context& ctx, const Args& a) {
  std::optional<int64_t> user_id;
  if (auto who = a.Get("user")) {
    auto user = ctx.Dir().FindUser(*who);
    if (!user.ok()) return ctx.Fail(user.status().message());
    user_id = user->id;
  }
  auto keys = ctx.Dir().ListKeys(user_id);
  if (!keys.ok()) return ctx.Fail(keys.status().message());
  Timestamp now = ctx.clock.Now();
  ctx.out << std::left << std::setw(8) << "ID" << std::setw(8) << "USER" << std::setw(14)
          << "PREFIX" << std::setw(9) << "STATUS" << std::setw(12) << "ACT_AS_USER"
          << "EXPIRES\n";
  for (const ApiKey& k : *keys) {
    std::string status = k.revoked_at ? "revoked" : (k.UsableAt(now) ? "active" : "expired");
    ctx.out << std::left << std::setw(8) << k.id << std::setw(8) << k.user_id << std::setw(14)
            << k.prefix << std::setw(9) << status << std::setw(12) << (k.act_as_user ? "yes" : "no")
            << (k.expires_at ? FormatRfc3339(*k.expires_at) : "-") << "\n";
  }
  return 0;
}

// ---- budget ----------------------------------------------------------------

void PrintSettings(std::ostream& out, const User& u, const BudgetSettings& s) {
  out << "user:           " << u.name << " (id " << u.id << ", " << RoleName(u.role) << ")\n"
      << "limit:          $" << s.limit.ToUsdString() << "\n"
      << "period:         " << PeriodName(s.period)
      << (s.period == Period::kCustom ? " (" + std::to_string(s.custom_period_days) + " days)" : "")
      << "\n"
      << "timezone:       " << s.timezone << "\n"
      << "enforcement:    " << EnforcementName(s.enforcement) << "\n"
      << "thresholds:     yellow " << s.yellow << "%, orange " << s.orange << "%, red " << s.red
      << "%\n"
      << "last reset:     " << FormatRfc3339(s.period_anchor) << "\n"
      << "permissions:    budget_visible=" << s.budget_visible
      << " can_modify_limit=" << s.can_modify_limit << " can_reset=" << s.can_reset
      << (s.max_self_limit ? " max_self_limit=$" + s.max_self_limit->ToUsdString() : std::string())
      << "\n";
}

int BudgetShow(Context& ctx, const Args& a) {
  std::string missing;
  std::string who = Required(a, "user", &missing);
  if (!missing.empty()) return ctx.Fail(missing);
  auto user = ctx.Dir().FindUser(who);
  if (!user.ok()) return ctx.Fail(user.status().message());
  auto s = ctx.Dir().GetSettings(user->id);
  if (!s.ok()) return ctx.Fail(s.status().message());
  PrintSettings(ctx.out, *user, *s);
  return 0;
}

int BudgetSet(Context& ctx, const Args& a) {
  std::string missing;
  std::string who = Required(a, "user", &missing);
  if (!missing.empty()) return ctx.Fail(missing);
  auto user = ctx.Dir().FindUser(who);
  if (!user.ok()) return ctx.Fail(user.status().message());
  auto current = ctx.Dir().GetSettings(user->id);
  if (!current.ok()) return ctx.Fail(current.status().message());
  // The same rules as the side port's settings API; only the names are the flags'.
  nlohmann::json change = nlohmann::json::object();
  const std::pair<const char*, const char*> flags[] = {{"limit", "limit_usd"},
                                                       {"period", "period"},
                                                       {"custom-days", "custom_period_days"},
                                                       {"enforcement", "enforcement"},
                                                       {"timezone", "timezone"}};
  for (auto [flag, field] : flags) {
    auto v = a.Get(flag);
    if (!v) continue;
    int days = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), days);
    bool whole = ec == std::errc() && end == v->data() + v->size();
    change[field] =
        std::string(flag) == "custom-days" && whole ? nlohmann::json(days) : nlohmann::json(*v);
  }
  BudgetSettings s = *current;
  if (Status st = ApplySettingsChange(change, Editor::kAdmin, &s); !st.ok()) {
    std::string message = st.message();
    for (auto [flag, field] : flags) {
      if (message.starts_with(std::string(field) + ":"))
        message = "--" + std::string(flag) + message.substr(std::string(field).size());
    }
    return ctx.Fail(message);
  }
  auto updated = ctx.Dir().PutSettings(s, "cli");
  if (!updated.ok()) return ctx.Fail(updated.status().message());
  PrintSettings(ctx.out, *user, *updated);
  return 0;
}

int BudgetReset(Context& ctx, const Args& a) {
  std::string missing;
  std::string who = Required(a, "user", &missing);
  if (!missing.empty()) return ctx.Fail(missing);
  auto user = ctx.Dir().FindUser(who);
  if (!user.ok()) return ctx.Fail(user.status().message());
  auto r = ctx.Dir().ResetWindow(user->id, "cli", a.Get("reason").value_or(""), Money(),
                                 ctx.clock.Now());
  if (!r.ok()) return ctx.Fail(r.status().message());
  ctx.out << "budget of " << user->name << " reset at " << FormatRfc3339(r->reset_at) << "\n";
  return 0;
}

// ---- pricing ---------------------------------------------------------------

int PricingList(Context& ctx, const Args&) {
  auto table = PricingTable::Load(ctx.config.pricing_file);
  if (!table.ok()) return ctx.Fail(table.status().message());
  ctx.out << "USD per million tokens\n"
          << std::left << std::setw(10) << "PROVIDER" << std::setw(28) << "MODEL" << std::setw(22)
          << "FROM" << std::setw(10) << "INPUT" << std::setw(10) << "OUTPUT" << std::setw(10)
          << "CACHE_RD" << std::setw(10) << "CACHE_W5M" << std::setw(10) << "CACHE_W1H"
          << "WINDOWS\n";
  for (const PriceEntry& e : table->entries()) {
    std::string windows;
    for (const PriceWindow& w : e.windows) {
      windows += (windows.empty() ? "" : ", ") + w.name + " " +
                 w.rates.input.ToUsdPerMillionString() + "/" +
                 w.rates.output.ToUsdPerMillionString();
    }
    ctx.out << std::left << std::setw(10) << e.provider << std::setw(28) << e.model << std::setw(22)
            << e.effective_from_text << std::setw(10) << e.rates.input.ToUsdPerMillionString()
            << std::setw(10) << e.rates.output.ToUsdPerMillionString() << std::setw(10)
            << e.rates.cache_read.ToUsdPerMillionString() << std::setw(10)
            << e.rates.cache_write_5m.ToUsdPerMillionString() << std::setw(10)
            << e.rates.cache_write_1h.ToUsdPerMillionString() << windows << "\n";
  }
  for (const auto& [alias, model] : table->aliases())
    ctx.out << "alias " << alias << " -> " << model << "\n";
  return 0;
}

// ---- audit -----------------------------------------------------------------

int Audit(Context& ctx, const Args& a) {
  const Config& c = ctx.config;
  auto redis_address = ParseRedisUrl(c.redis_url);
  if (!redis_address.ok()) return ctx.Fail("redis_url: " + redis_address.status().message());
  PgPool pool(c.database_url, 2);
  HiredisPool redis(*redis_address, 1, 2000);
  PgDirectory directory(pool);
  Metrics metrics;
  std::vector<int64_t> users;
  if (auto name = a.Get("user")) {
    auto user = directory.FindUser(*name);
    if (!user.ok()) return ctx.Fail(user.status().message());
    users.push_back(user->id);
  } else {
    auto all = directory.ListUsers();
    if (!all.ok()) return ctx.Fail(all.status().message());
    for (const User& u : *all) users.push_back(u.id);
  }
  Reconciler reconciler(pool, redis, directory, ctx.clock, metrics);
  auto audited = reconciler.Audit(users, a.Has("repair"));
  if (!audited.ok()) return ctx.Fail(audited.status().message());
  ctx.out << std::left << std::setw(8) << "USER" << std::setw(30) << "WINDOW START" << std::setw(16)
          << "COUNTER" << std::setw(16) << "LEDGER" << std::setw(14) << "DIFFERENCE"
          << "STATE\n";
  int off = 0;
  for (const CounterAudit& r : *audited) {
    std::string state = r.busy       ? "busy (rows arriving): not compared"
                        : !r.counter ? "no counter (built when next needed)"
                        : r.repaired ? "repaired"
                        : r.difference() == Money() ? "ok"
                                                    : "DIFFERENT";
    if (!r.busy && r.counter && r.difference() != Money() && !r.repaired) ++off;
    ctx.out << std::left << std::setw(8) << r.user_id << std::setw(30)
            << FormatRfc3339(r.window.start) << std::setw(16)
            << (r.counter ? std::to_string(r.counter->nanos()) : "-") << std::setw(16)
            << r.ledger.nanos() << std::setw(14) << r.difference().nanos() << state << "\n";
  }
  return off == 0 ? 0 : 1;
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"",
       "serve",
       "tollgate serve\n  Serves the proxy (TOLLGATE_LISTEN) and the side port "
       "(TOLLGATE_ADMIN_LISTEN).",
       {},
       {},
       Serve},
      {"",
       "migrate",
       "tollgate migrate\n  Applies pending database migrations (safe to run again).",
       {},
       {},
       MigrateCommand},
      {"user",
       "create",
       "tollgate user create --name NAME [--email E] [--external-id ID] [--role user|admin] "
       "[--limit USD]"
       " [--period daily|weekly|monthly|custom]\n  Creates a user with the role's default budget; "
       "prints the new id.",
       {"name", "email", "external-id", "role", "limit", "period"},
       {},
       UserCreate},
      {"user", "list", "tollgate user list\n  Lists users.", {}, {}, UserList},
      {"key",
       "create",
       "tollgate key create --user NAME_OR_ID [--name LABEL] [--act-as-user] [--expires DATE]\n"
       "  Creates a key; the secret is printed once, on the last line.",
       {"user", "name", "expires"},
       {"act-as-user"},
       KeyCreate},
      {"key",
       "revoke",
       "tollgate key revoke --key ID_OR_PREFIX\n  Revokes a key at once.",
       {"key"},
       {},
       KeyRevoke},
      {"key",
       "list",
       "tollgate key list [--user NAME_OR_ID]\n  Lists keys (prefixes only, never secrets).",
       {"user"},
       {},
       KeyList},
      {"budget",
       "show",
       "tollgate budget show --user NAME_OR_ID\n  Shows a user's budget settings.",
       {"user"},
       {},
       BudgetShow},
      {"budget",
       "set",
       "tollgate budget set --user NAME_OR_ID [--limit USD] [--period P] [--custom-days N]"
       " [--enforcement hard|soft|off] [--timezone TZ]\n  Changes a user's budget settings.",
       {"user", "limit", "period", "custom-days", "enforcement", "timezone"},
       {},
       BudgetSet},
      {"budget",
       "reset",
       "tollgate budget reset --user NAME_OR_ID [--reason TEXT]\n  Starts a new budget window now.",
       {"user", "reason"},
       {},
       BudgetReset},
      {"",
       "audit",
       "tollgate audit [--user NAME_OR_ID] [--repair]\n  Compares each user's spend counter in"
       " Redis with the ledger (nanos); exits 1 if one differs. --repair corrects a difference"
       " that is still there a second later with nothing of the user's moving.",
       {"user"},
       {"repair"},
       Audit},
      {"pricing",
       "list",
       "tollgate pricing list\n  Prints the pricing table in force.",
       {},
       {},
       PricingList},
  };
  return kCommands;
}

void PrintOverview(std::ostream& out) {
  out << "usage: tollgate [--config PATH] COMMAND [OPTIONS]\n\ncommands:\n";
  for (const Command& c : Commands()) {
    out << "  " << c.usage.substr(0, c.usage.find('\n')) << "\n";
  }
  out << "\nEvery command takes --help. Configuration: --config PATH or TOLLGATE_CONFIG (default "
         "config/tollgate.json when present), then TOLLGATE_* environment variables.\n";
}

std::string DefaultConfigPath(const Environment& env) {
  if (auto it = env.find("TOLLGATE_CONFIG"); it != env.end() && !it->second.empty())
    return it->second;
  std::error_code ec;
  for (const char* candidate : {"config/tollgate.json", "/etc/tollgate/tollgate.json"}) {
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  return "";
}

}  // namespace

int RunCli(const std::vector<std::string>& argv_in, const Environment& env, std::ostream& out,
           std::ostream& err) {
  std::vector<std::string> argv = argv_in;
  std::string config_path = DefaultConfigPath(env);
  if (argv.size() >= 2 && argv[0] == "--config") {
    config_path = argv[1];
    argv.erase(argv.begin(), argv.begin() + 2);
  }
  if (argv.empty() || argv[0] == "--help" || argv[0] == "help" || argv[0] == "-h") {
    PrintOverview(argv.empty() ? err : out);
    return argv.empty() ? 2 : 0;
  }
  const Command* command = nullptr;
  size_t consumed = 0;
  for (const Command& c : Commands()) {
    if (c.group.empty() && argv[0] == c.name) {
      command = &c;
      consumed = 1;
    } else if (!c.group.empty() && argv[0] == c.group && argv.size() >= 2 && argv[1] == c.name) {
      command = &c;
      consumed = 2;
    }
  }
  if (!command) {
    bool known_group = false;
    for (const Command& c : Commands()) known_group |= c.group == argv[0];
    if (known_group && (argv.size() == 1 || argv[1] == "--help")) {
      for (const Command& c : Commands()) {
        if (c.group == argv[0]) out << c.usage << "\n";
      }
      return argv.size() == 1 ? 2 : 0;
    }
    err << "tollgate: unknown command \"" << argv[0]
        << (argv.size() > 1 && known_group ? " " + argv[1] : "") << "\" (try tollgate --help)\n";
    return 2;
  }
  auto args = Args::Parse({argv.begin() + static_cast<long>(consumed), argv.end()}, command->valued,
                          command->switches);
  if (!args.ok()) {
    err << "tollgate: " << args.status().message() << "\n";
    return 2;
  }
  if (args->Has("help")) {
    out << command->usage << "\n";
    return 0;
  }
  auto config = LoadConfig(config_path, env);
  if (!config.ok()) {
    err << "tollgate: invalid configuration: " << config.status().message() << "\n";
    return 1;
  }
  Context ctx{std::move(*config), out, err, {}, nullptr, nullptr};
  try {
    return command->run(ctx, *args);
  } catch (const std::exception& e) {
    return ctx.Fail(e.what());
  }
}

}  // namespace tollgate
