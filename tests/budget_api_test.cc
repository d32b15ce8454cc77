// The budget REST API on the side port, end to end inside one process: real
// Postgres (a fresh database per test), real Redis, the real gate and ledger, and
// real HTTP to the side server.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "admin/api_support.h"
#include "admin/side_server.h"
#include "budget/migrations.h"
#include "budget/pg_directory.h"
#include "budget/price_overrides.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kRedisDb = 6;

class BudgetApi : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = testing::FreshMigratedPool(8);
    ASSERT_TRUE(pool_);
    directory_ = std::make_unique<PgDirectory>(*pool_);
    redis_ = testing::TestRedis(kRedisDb, 8);
    ASSERT_TRUE(redis_);
    authenticator_ = std::make_unique<Authenticator>(*directory_, clock_, 0ms);
    settings_ = std::make_unique<SettingsCache>(*directory_, clock_, 0ms);
    sums_ = std::make_unique<PgLedgerSums>(*pool_);
    counters_ = std::make_unique<RedisCounters>(*redis_, *sums_, clock_, metrics_, 0ms);
    ledger_ = std::make_unique<PgLedger>(*pool_, metrics_, counters_.get(), LedgerOptions{});
    gate_ = std::make_unique<RedisGate>(*redis_, *settings_, *counters_, clock_, metrics_, 60s);
    usage_ = std::make_unique<PgUsageQueries>(*pool_);
    auto pricing = PricingTable::Load(testing::SourceDir() + "/config/pricing.json");
    ASSERT_TRUE(pricing.ok());
    pricing_ = std::make_unique<PricingTable>(std::move(*pricing));
    overrides_ = std::make_unique<PriceOverrides>(*pool_, *pricing_);
    config_.admin_token = "bootstrap-admin-token-for-tests";
    deps_ = std::make_unique<BudgetApiDependencies>(BudgetApiDependencies{
        .config = config_,
        .clock = clock_,
        .directory = *directory_,
        .authenticator = *authenticator_,
        .settings = *settings_,
        .spend_state = [this](int64_t user, const Window& w) { return gate_->State(user, w); },
        .usage = usage_.get(),
        .pricing = pricing_.get(),
        .price_overrides = overrides_.get()});
    side_deps_ = std::make_unique<SideDependencies>(SideDependencies{
        config_, metrics_, [] { return Status::Ok(); }, [] { return Status::Ok(); }, deps_.get()});
    server_ = BuildSideServer(*side_deps_);
    ASSERT_GT(server_->Start("127.0.0.1", 0), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(60, 0);

    alice_ = NewUser("alice", "alice@example.com", "app-1", Role::kUser, "1.00");
    alice_key_ = NewKey(alice_);
    bob_ = NewUser("bob", "bob@corp.example", "app-2", Role::kUser, "1.00");
    bob_key_ = NewKey(bob_);
    admin_ = NewUser("root", "ops@example.com", "", Role::kAdmin, "100");
    admin_key_ = NewKey(admin_);
  }

  void Sql(const std::string& sql) {
    ASSERT_TRUE(pool_->Run([&](pqxx::connection& c) { pqxx::nontransaction(c).exec(sql); }).ok());
  }
  int64_t SqlInt(const std::string& sql) {
    return *pool_->Get<int64_t>(
        [&](pqxx::connection& c) { return pqxx::nontransaction(c).exec1(sql)[0].as<int64_t>(); });
  }
  int64_t NewUser(const std::string& name, const std::string& email, const std::string& external,
                  Role role, const std::string& limit_usd) {
    auto u = directory_->CreateUser({.name = name,
                                     .email = email,
                                     .external_id = external,
                                     .role = role,
                                     .limit = Money::ParseUsd(limit_usd)},
                                    BudgetDefaults(), testing::At("2026-10-15T00:00:00Z"));
    EXPECT_TRUE(u.ok()) << u.status().message();
    std::vector<std::string> del = RedisCounters::HoldKeys(u->id);
    del.insert(del.begin(),
               {"DEL", RedisCounters::SpendKey(u->id, testing::At("2026-11-01T00:00:00Z"))});
    redis_->Command(del);
    return u->id;
  }
  std::string NewKey(int64_t user) {
    return directory_->CreateKey(user, "test", false, std::nullopt, clock_.Now())->secret;
  }
  void Spend(int64_t user, const std::string& provider, const std::string& model,
             int64_t cost_nanos, int64_t input = 100, int64_t output = 10) {
    UsageRecord r;
    r.request_id = "req-" + RandomHex(8);
    r.user_id = user;
    r.provider = provider;
    r.model = model;
    r.price_id = provider + "/" + model + "@x";
    r.started_at = clock_.Now();
    r.usage.input_tokens = input;
    r.usage.output_tokens = output;
    r.cost = Money::FromNanos(cost_nanos);
    r.status = 200;
    r.window = settings_->Get(user)->window;  // as a request the gate admitted
    ledger_->Append(r);
    ledger_->Flush();  // written, and applied to the counter
  }
  httplib::Headers Auth(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }
  struct Answer {
    int status = 0;
    json body;
    std::string raw;
  };
  Answer Call(const std::string& method, const std::string& path, const std::string& key,
              const json& body = nullptr) {
    std::string text = body.is_null() ? "" : body.dump();
    httplib::Result r = method == "GET" ? client_->Get(path, Auth(key))
                        : method == "PUT"
                            ? client_->Put(path, Auth(key), text, "application/json")
                            : client_->Post(path, Auth(key), text, "application/json");
    EXPECT_TRUE(r) << method << " " << path;
    if (!r) return {};
    Answer a{r->status, json::parse(r->body, nullptr, false), r->body};
    EXPECT_LT(r->status, 500) << method << " " << path << " " << r->body;
    return a;
  }
  Admission Reserve(int64_t user) {
    return gate_->Reserve({.user_id = user,
                           .request_id = "g-" + RandomHex(6),
                           .input_cost = Money::FromNanos(1000),
                           .output_rate = TokenRate::FromNanosPerMillion(1'000'000'000),
                           .max_output_tokens = 10});
  }

  ManualClock clock_{testing::At("2026-11-16T00:00:00Z")};
  Config config_;
  Metrics metrics_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<PgDirectory> directory_;
  std::unique_ptr<HiredisPool> redis_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<SettingsCache> settings_;
  std::unique_ptr<PgLedgerSums> sums_;
  std::unique_ptr<RedisCounters> counters_;
  std::unique_ptr<PgLedger> ledger_;
  std::unique_ptr<RedisGate> gate_;
  std::unique_ptr<PgUsageQueries> usage_;
  std::unique_ptr<PricingTable> pricing_;
  std::unique_ptr<PriceOverrides> overrides_;
  std::unique_ptr<BudgetApiDependencies> deps_;
  std::unique_ptr<SideDependencies> side_deps_;
  std::unique_ptr<EventServer> server_;
  std::unique_ptr<httplib::Client> client_;
  int64_t alice_ = 0, bob_ = 0, admin_ = 0;
  std::string alice_key_, bob_key_, admin_key_;
};

// ---- user endpoints ---------------------------------------------------------

TEST_F(BudgetApi, StatusShowsLiveSpendFromTheGate) {
  Spend(alice_, "mistral", "mistral-small-latest", 250'000'000);
  EXPECT_EQ(metrics_.Count(Histogram::kSettleLag), 1u) << "the ledger row's lag is measured";
  auto a = Call("GET", "/api/v1/budget/status", alice_key_);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["user_id"], alice_);
  EXPECT_EQ(a.body["spend_nanos"], 250'000'000);
  EXPECT_EQ(a.body["remaining_usd"], "0.750000000");
  EXPECT_EQ(a.body["alert_level"], "GREEN");
  EXPECT_EQ(a.body["window_start"], "2026-11-01T00:00:00Z");
  // Bob's view is Bob's alone.
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", bob_key_).body["spend_nanos"], 0);
}

TEST_F(BudgetApi, SettingsShowWhatTheUserMayChange) {
  auto a = Call("GET", "/api/v1/budget/settings", alice_key_);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["limit_usd"], "1.000000000");
  EXPECT_EQ(a.body["editable"], json::array({"thresholds"}));
  EXPECT_TRUE(a.body["locked"]["limit_usd"].is_string());
  EXPECT_TRUE(a.body["locked"]["reset"].is_string());
}

TEST_F(BudgetApi, UserChangesTheLimitOnlyWhenAllowedAndUpToTheMaximum) {
  auto denied = Call("PUT", "/api/v1/budget/settings", alice_key_, {{"limit_usd", "5"}});
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.body["error"]["field"], "limit_usd");
  EXPECT_EQ(directory_->GetSettings(alice_)->limit, Money::FromNanos(1'000'000'000));

  auto grant = Call("PUT", "/api/v1/budget/admin/configure", admin_key_,
                    {{"user_id", alice_},
                     {"settings", {{"can_modify_limit", true}, {"max_self_limit_usd", "10"}}}});
  ASSERT_EQ(grant.status, 200) << grant.raw;

  auto ok = Call("PUT", "/api/v1/budget/settings", alice_key_, {{"limit_usd", "7.5"}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["limit_nanos"], 7'500'000'000);
  EXPECT_EQ(directory_->GetSettings(alice_)->limit, Money::FromNanos(7'500'000'000));
  auto over = Call("PUT", "/api/v1/budget/settings", alice_key_, {{"limit_usd", "10.01"}});
  EXPECT_EQ(over.status, 403);
  EXPECT_NE(over.body["error"]["message"].get<std::string>().find("10.000000000"),
            std::string::npos);
  // Enforcement stays an admin's decision.
  auto enforcement = Call("PUT", "/api/v1/budget/settings", alice_key_, {{"enforcement", "off"}});
  EXPECT_EQ(enforcement.status, 403);
  EXPECT_EQ(enforcement.body["error"]["field"], "enforcement");
  // The change is recorded with who made it.
  EXPECT_EQ(SqlInt("SELECT count(*) FROM settings_audit WHERE user_id = " + std::to_string(alice_) +
                   " AND actor = 'user:" + std::to_string(alice_) + "'"),
            1);
  EXPECT_EQ(SqlInt("SELECT count(*) FROM settings_audit WHERE user_id = " + std::to_string(alice_) +
                   " AND actor = 'admin:" + std::to_string(admin_) + "'"),
            1);
}

TEST_F(BudgetApi, EveryFieldIsValidatedWithItsNameAndRule) {
  struct Case {
    json settings;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"limit_usd", "-1"}}, "limit_usd"},
      {{{"limit_usd", "1.1234567"}}, "limit_usd"},  // 7 decimals
      {{{"limit_usd", 1.5}}, "limit_usd"},          // a float is never money
      {{{"limit_usd", "ten"}}, "limit_usd"},
      {{{"period", "hourly"}}, "period"},
      {{{"custom_period_days", 0}}, "custom_period_days"},
      {{{"custom_period_days", 367}}, "custom_period_days"},
      {{{"timezone", "Mars/Olympus"}}, "timezone"},
      {{{"timezone", "../../etc/passwd"}}, "timezone"},
      {{{"enforcement", "maybe"}}, "enforcement"},
      {{{"thresholds", {{"yellow", 80}, {"orange", 70}, {"red", 90}}}}, "thresholds"},
      {{{"thresholds", {{"red", 101}}}}, "thresholds.red"},
      {{{"thresholds", {{"yellow", 0}}}}, "thresholds.yellow"},
      {{{"budget_visible", "yes"}}, "budget_visible"},
      {{{"max_self_limit_usd", "-3"}}, "max_self_limit_usd"},
      {{{"colour", "red"}}, "colour"},
  };
  for (const Case& c : cases) {
    auto a = Call("PUT", "/api/v1/budget/admin/configure", admin_key_,
                  {{"user_id", alice_}, {"settings", c.settings}});
    EXPECT_EQ(a.status, 400) << c.settings.dump() << " " << a.raw;
    EXPECT_EQ(a.body["error"]["code"], "invalid_request") << a.raw;
    EXPECT_EQ(a.body["error"]["field"], c.field) << a.raw;
  }
  // Nothing was written by any of them.
  EXPECT_EQ(directory_->GetSettings(alice_)->version, 1);
  auto good = Call("PUT", "/api/v1/budget/admin/configure", admin_key_,
                   {{"user_id", alice_},
                    {"settings",
                     {{"limit_usd", "2.123456"},
                      {"period", "custom"},
                      {"custom_period_days", 366},
                      {"timezone", "Asia/Tokyo"},
                      {"thresholds", {{"yellow", 1}, {"orange", 2}, {"red", 100}}}}}});
  ASSERT_EQ(good.status, 200) << good.raw;
  EXPECT_EQ(good.body["limit_nanos"], 2'123'456'000);
  EXPECT_EQ(good.body["timezone"], "Asia/Tokyo");
  // The user can set their own thresholds, with the same rules.
  EXPECT_EQ(Call("PUT", "/api/v1/budget/settings", alice_key_,
                 {{"thresholds", {{"yellow", 90}, {"orange", 50}}}})
                .status,
            400);
  EXPECT_EQ(Call("PUT", "/api/v1/budget/settings", alice_key_,
                 {{"thresholds", {{"yellow", 10}, {"orange", 20}, {"red", 30}}}})
                .status,
            200);
  EXPECT_EQ(Call("PUT", "/api/v1/budget/settings", alice_key_, {}).status, 400) << "not an object";
}

TEST_F(BudgetApi, ResetThroughTheApiReachesTheGateAndTheLog) {
  Spend(alice_, "deepseek", "deepseek-chat", 999'995'000);
  EXPECT_FALSE(Reserve(alice_).allowed());
  auto denied = Call("POST", "/api/v1/budget/reset", alice_key_, {{"reason", "please"}});
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.body["error"]["code"], "reset_not_allowed");
  EXPECT_FALSE(Reserve(alice_).allowed());

  ASSERT_EQ(Call("PUT", "/api/v1/budget/admin/configure", admin_key_,
                 {{"user_id", alice_}, {"settings", {{"can_reset", true}}}})
                .status,
            200);
  clock_.Advance(1s);
  auto reset = Call("POST", "/api/v1/budget/reset", alice_key_, {{"reason", "new project"}});
  ASSERT_EQ(reset.status, 200) << reset.raw;
  EXPECT_EQ(reset.body["spend_before_nanos"], 999'995'000);
  EXPECT_TRUE(Reserve(alice_).allowed()) << "the next request is allowed";
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", alice_key_).body["window_start"],
            "2026-11-16T00:00:01Z");

  auto log =
      Call("GET", "/api/v1/budget/admin/reset-log?user_id=" + std::to_string(alice_), admin_key_);
  ASSERT_EQ(log.status, 200);
  ASSERT_EQ(log.body["items"].size(), 1u);
  EXPECT_EQ(log.body["items"][0]["actor"], "user:" + std::to_string(alice_));
  EXPECT_EQ(log.body["items"][0]["reason"], "new project");
}

TEST_F(BudgetApi, BreakdownSumsByProviderAndModel) {
  Spend(alice_, "mistral", "mistral-small-latest", 100, 1000, 10);
  Spend(alice_, "mistral", "mistral-small-latest", 250, 2000, 20);
  Spend(alice_, "anthropic", "claude-sonnet-4-5", 7000, 50, 5);
  Spend(bob_, "anthropic", "claude-sonnet-4-5", 9'999'999);  // not Alice's
  auto a = Call("GET", "/api/v1/budget/usage/breakdown", alice_key_);
  ASSERT_EQ(a.status, 200) << a.raw;
  ASSERT_EQ(a.body["by_model"].size(), 2u);
  EXPECT_EQ(a.body["by_model"][0]["provider"], "anthropic");  // most expensive first
  EXPECT_EQ(a.body["by_model"][0]["cost_nanos"], 7000);
  EXPECT_EQ(a.body["by_model"][1]["requests"], 2);
  EXPECT_EQ(a.body["by_model"][1]["input_tokens"], 3000);
  EXPECT_EQ(a.body["by_model"][1]["cost_nanos"], 350);
  EXPECT_EQ(a.body["total"]["cost_nanos"], 7350);
  EXPECT_EQ(a.body["total"]["cost_usd"], "0.000007350");
  EXPECT_EQ(a.body["from"], "2026-11-01T00:00:00Z");
  // An explicit range that ends before the spend finds nothing.
  auto empty = Call(
      "GET", "/api/v1/budget/usage/breakdown?from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z",
      alice_key_);
  EXPECT_EQ(empty.body["total"]["requests"], 0);
  EXPECT_EQ(Call("GET", "/api/v1/budget/usage/breakdown?from=yesterday", alice_key_).status, 400);
  EXPECT_EQ(Call("GET",
                 "/api/v1/budget/usage/breakdown?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
                 alice_key_)
                .status,
            400);
}

TEST_F(BudgetApi, HistoryPagesNewestFirst) {
  for (int i = 1; i <= 5; ++i) {
    Spend(alice_, "ollama", "llama3.2", i);
    clock_.Advance(1s);
  }
  Spend(bob_, "ollama", "llama3.2", 1000);
  auto first = Call("GET", "/api/v1/budget/usage/history?limit=2", alice_key_);
  ASSERT_EQ(first.status, 200) << first.raw;
  ASSERT_EQ(first.body["items"].size(), 2u);
  EXPECT_EQ(first.body["items"][0]["cost_nanos"], 5);
  EXPECT_EQ(first.body["items"][1]["cost_nanos"], 4);
  for (const char* f : {"request_id", "time", "provider", "model", "input_tokens", "output_tokens",
                        "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
                        "status", "streamed", "estimated", "latency_ms"})
    EXPECT_TRUE(first.body["items"][0].contains(f)) << f;
  std::vector<int64_t> costs;
  json next = first.body["next_before"];
  while (!next.is_null()) {
    auto page =
        Call("GET", "/api/v1/budget/usage/history?limit=2&before=" + next.dump(), alice_key_);
    for (const json& item : page.body["items"]) costs.push_back(item["cost_nanos"]);
    next = page.body["next_before"];
  }
  EXPECT_EQ(costs, (std::vector<int64_t>{3, 2, 1}));
  EXPECT_EQ(Call("GET", "/api/v1/budget/usage/history?limit=0", alice_key_).status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/budget/usage/history?limit=abc", alice_key_).status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/budget/usage/history?before=-1", alice_key_).status, 400);
}

TEST_F(BudgetApi, HiddenBudgetIsRefusedOnEveryUserEndpointButStillEnforced) {
  ASSERT_EQ(Call("PUT", "/api/v1/budget/admin/configure", admin_key_,
                 {{"user_id", alice_}, {"settings", {{"budget_visible", false}}}})
                .status,
            200);
  for (auto [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/api/v1/budget/status"},
                                                        {"GET", "/api/v1/budget/settings"},
                                                        {"PUT", "/api/v1/budget/settings"},
                                                        {"POST", "/api/v1/budget/reset"},
                                                        {"GET", "/api/v1/budget/usage/breakdown"},
                                                        {"GET", "/api/v1/budget/usage/history"}}) {
    auto a = Call(method, path, alice_key_, json::object());
    EXPECT_EQ(a.status, 403) << path;
    EXPECT_EQ(a.body["error"]["code"], "budget_hidden") << path;
  }
  Spend(alice_, "mistral", "m", 1'000'000'000);
  EXPECT_EQ(Reserve(alice_).refusal, Refusal::kBudget);
}

TEST_F(BudgetApi, UserEndpointsNeedAKey) {
  for (const char* path :
       {"/api/v1/budget/status", "/api/v1/budget/settings", "/api/v1/budget/usage/history"}) {
    auto none = client_->Get(path);
    EXPECT_EQ(none->status, 401) << path;
    EXPECT_EQ(json::parse(none->body)["error"]["code"], "unauthenticated");
    EXPECT_EQ(Call("GET", path, "tg-" + std::string(43, 'x')).status, 401) << path;
  }
  ASSERT_TRUE(
      directory_->RevokeKey(std::to_string(directory_->ListKeys(alice_)->front().id), clock_.Now())
          .ok());
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", alice_key_).status, 401);
}

// ---- admin endpoints ---------------------------------------------------------

// Every admin path, each naming Bob as its target.
std::vector<std::tuple<std::string, std::string, json>> AdminCalls(int64_t bob) {
  std::string b = std::to_string(bob);
  return {
      {"PUT",
       "/api/v1/budget/admin/configure",
       {{"user_id", bob}, {"settings", {{"limit_usd", "1000"}}}}},
      {"PUT",
       "/api/v1/budget/admin/configure/bulk",
       {{"user_ids", {bob}}, {"settings", {{"limit_usd", "1000"}}}}},
      {"GET", "/api/v1/budget/admin/list?search=bob", nullptr},
      {"POST", "/api/v1/budget/admin/reset/" + b, {{"reason", "mine now"}}},
      {"GET", "/api/v1/budget/admin/users", nullptr},
      {"POST", "/api/v1/budget/admin/users", {{"name", "mallory"}, {"role", "admin"}}},
      {"POST", "/api/v1/budget/admin/users/" + b + "/disable", nullptr},
      {"POST", "/api/v1/budget/admin/users/" + b + "/enable", nullptr},
      {"GET", "/api/v1/budget/admin/keys?user_id=" + b, nullptr},
      {"POST", "/api/v1/budget/admin/keys", {{"user_id", bob}}},
      {"POST", "/api/v1/budget/admin/keys/1/revoke", nullptr},
      {"GET", "/api/v1/budget/admin/reset-log?user_id=" + b, nullptr},
      {"GET", "/api/v1/budget/admin/pricing", nullptr},
      {"POST",
       "/api/v1/budget/admin/pricing",
       {{"provider", "mistral"},
        {"model", "mistral-small-latest"},
        {"input_usd_per_million", "0"},
        {"output_usd_per_million", "0"}}},
      {"GET", "/api/v1/budget/admin/overview", nullptr},
      {"GET", "/api/v1/budget/admin/usage/export.csv?user_id=" + b, nullptr},
  };
}

TEST_F(BudgetApi, AUsersKeyOpensNoAdminPath) {
  Spend(bob_, "mistral", "m", 123);
  BudgetSettings before = *directory_->GetSettings(bob_);
  for (const auto& [method, path, body] : AdminCalls(bob_)) {
    auto a = Call(method, path, alice_key_, body);
    EXPECT_EQ(a.status, 403) << method << " " << path << " " << a.raw;
    EXPECT_EQ(a.body["error"]["code"], "admin_only") << path;
    EXPECT_EQ(a.raw.find("bob"), std::string::npos) << path;
    auto none = Call(method, path, "", body);
    EXPECT_EQ(none.status, 401) << path;
  }
  // Nothing of Bob's changed: settings, keys, user, reset log, prices.
  BudgetSettings after = *directory_->GetSettings(bob_);
  EXPECT_EQ(after.version, before.version);
  EXPECT_EQ(after.limit, before.limit);
  EXPECT_EQ(directory_->ListKeys(bob_)->size(), 1u);
  EXPECT_FALSE(directory_->FindUser(std::to_string(bob_))->disabled);
  EXPECT_FALSE(directory_->FindUser("mallory").ok());
  EXPECT_EQ(directory_->ResetLog(bob_, 10)->size(), 0u);
  EXPECT_TRUE(pricing_->Overrides().empty());
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", bob_key_).body["spend_nanos"], 123);
}

TEST_F(BudgetApi, AdminKeyAndBootstrapTokenOpenEveryAdminPath) {
  for (const std::string& key : {admin_key_, config_.admin_token}) {
    for (const auto& [method, path, body] : AdminCalls(bob_)) {
      auto a = Call(method, path, key, body);
      if (path.ends_with("/admin/users") && method == "POST" && key == config_.admin_token) {
        EXPECT_EQ(a.status, 409) << "mallory exists from the admin key's round";
        continue;
      }
      EXPECT_TRUE(a.status == 200 || a.status == 201) << method << " " << path << " " << a.raw;
    }
  }
  // The bootstrap token has no budget of its own.
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", config_.admin_token).status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/budget/admin/list", "bootstrap-admin-token-for-test").status, 401);
}

TEST_F(BudgetApi, MetricsAnswerAnAdminOrTheMetricsTokenNeverAUser) {
  config_.metrics_token = "scrape-token-for-tests";
  auto status = [&](const std::string& key) {
    auto r = key.empty() ? client_->Get("/metrics") : client_->Get("/metrics", Auth(key));
    EXPECT_TRUE(r);
    return r ? r->status : 0;
  };
  EXPECT_EQ(status(""), 401);
  EXPECT_EQ(status(alice_key_), 403) << "a user's key reads no one's counters";
  EXPECT_EQ(status("tg-not-a-key"), 401);
  EXPECT_EQ(status(admin_key_), 200);
  EXPECT_EQ(status(config_.admin_token), 200);
  EXPECT_EQ(status(config_.metrics_token), 200);
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
}

TEST_F(BudgetApi, AnAdminPathOfAnyLengthIsAnsweredBeforeOrAfterAuthentication) {
  // 40,000 bytes of id crashed the side port (a regex's recursion), before any key
  // was looked at: now the target is too long to read.
  std::string reply = testing::RawExchange(
      server_->port(), "POST /api/v1/budget/admin/reset/" + std::string(40'000, 'A') +
                           " HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 414", 0), 0u) << reply.substr(0, 200);
  EXPECT_NE(reply.find("\"uri_too_long\""), std::string::npos) << reply;
  // Within the limit, the route is matched segment by segment: no key, 401; an admin's,
  // the id is read and refused.
  std::string long_id = "/api/v1/budget/admin/reset/" + std::string(8'000, 'A');
  EXPECT_EQ(Call("POST", long_id, "", json::object()).status, 401);
  auto bad_id = Call("POST", long_id, admin_key_, json{{"reason", "test"}});
  EXPECT_EQ(bad_id.status, 400) << bad_id.raw;
  EXPECT_EQ(bad_id.body["error"]["field"], "user_id");
  EXPECT_EQ(
      Call("POST", "/api/v1/budget/admin/users/" + std::string(8'000, '9') + "/disable", admin_key_)
          .status,
      400);
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
}

TEST_F(BudgetApi, AdminListSearchesFiltersSortsAndPages) {
  Spend(alice_, "mistral", "m", 950'000'000);  // 95 %: RED
  Spend(bob_, "mistral", "m", 100'000'000);    // 10 %: GREEN
  auto all = Call("GET", "/api/v1/budget/admin/list?sort=spend", admin_key_);
  ASSERT_EQ(all.status, 200) << all.raw;
  EXPECT_EQ(all.body["total"], 3);
  EXPECT_EQ(all.body["items"][0]["user"]["name"], "alice");
  EXPECT_EQ(all.body["items"][0]["status"]["alert_level"], "RED");
  EXPECT_EQ(all.body["items"][1]["user"]["name"], "bob");

  auto names = [&](const std::string& query) {
    auto a = Call("GET", "/api/v1/budget/admin/list?" + query, admin_key_);
    EXPECT_EQ(a.status, 200) << query << " " << a.raw;
    std::vector<std::string> out;
    for (const json& i : a.body["items"]) out.push_back(i["user"]["name"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names("search=ALI"), V{"alice"});
  EXPECT_EQ(names("search=corp.example"), V{"bob"});     // email
  EXPECT_EQ(names("search=app-"), (V{"alice", "bob"}));  // external id
  EXPECT_EQ(names("level=RED"), V{"alice"});
  EXPECT_EQ(names("level=GREEN&role=admin"), V{"root"});
  EXPECT_EQ(names("role=user&sort=percent&order=asc"), (V{"bob", "alice"}));
  EXPECT_EQ(names("sort=name&order=desc&limit=1&offset=1"), V{"bob"});
  // Strings that would break naive SQL or LIKE are data: they match nothing.
  for (const char* odd :
       {"%27%20OR%201%3D1%20--", "%25", "_", "%5C", "%22%3B%20DROP%20TABLE%20users%3B--",
        "%E2%82%AC", "%F0%9F%98%80", "a%27%27b"}) {
    EXPECT_EQ(names(std::string("search=") + odd), V{}) << odd;
  }
  EXPECT_EQ(SqlInt("SELECT count(*) FROM users"), 3);
  // Broken input is a 400 that names the parameter, never a 500.
  for (const char* bad : {"search=%00", "search=%FF%FE", "level=PURPLE", "role=god", "sort=evil",
                          "order=sideways", "limit=100000", "offset=-5", "limit=1e3"}) {
    auto a = Call("GET", std::string("/api/v1/budget/admin/list?") + bad, admin_key_);
    EXPECT_EQ(a.status, 400) << bad << " " << a.raw;
  }
  EXPECT_EQ(
      Call("GET", "/api/v1/budget/admin/list?search=" + std::string(300, 'a'), admin_key_).status,
      400);
}

TEST_F(BudgetApi, AdminResetNeedsAReasonAndIsLogged) {
  Spend(bob_, "mistral", "m", 1'000'000'000);
  EXPECT_FALSE(Reserve(bob_).allowed());
  std::string path = "/api/v1/budget/admin/reset/" + std::to_string(bob_);
  EXPECT_EQ(Call("POST", path, admin_key_, json::object()).body["error"]["field"], "reason");
  EXPECT_EQ(Call("POST", path, admin_key_, {{"reason", "   "}}).status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/budget/admin/reset/abc", admin_key_, {{"reason", "x"}}).status,
            400);
  EXPECT_EQ(
      Call("POST", "/api/v1/budget/admin/reset/999999999999", admin_key_, {{"reason", "x"}}).status,
      404);
  clock_.Advance(1s);
  auto ok = Call("POST", path, admin_key_, {{"reason", "quarter end"}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["actor"], "admin:" + std::to_string(admin_));
  EXPECT_TRUE(Reserve(bob_).allowed());
  auto log = Call("GET", "/api/v1/budget/admin/reset-log", admin_key_);
  ASSERT_EQ(log.body["items"].size(), 1u);
  EXPECT_EQ(log.body["items"][0]["reason"], "quarter end");
  EXPECT_EQ(log.body["items"][0]["spend_before_usd"], "1.000000000");
}

TEST_F(BudgetApi, BulkConfigureChangesAllOrNone) {
  std::string bulk = "/api/v1/budget/admin/configure/bulk";
  auto missing =
      Call("PUT", bulk, admin_key_,
           {{"user_ids", {alice_, bob_, 999999999999}}, {"settings", {{"limit_usd", "42"}}}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(directory_->GetSettings(alice_)->limit, Money::FromNanos(1'000'000'000));
  EXPECT_EQ(Call("PUT", bulk, admin_key_, {{"user_ids", json::array()}, {"settings", {}}}).status,
            400);
  EXPECT_EQ(Call("PUT", bulk, admin_key_, {{"user_ids", {"1"}}, {"settings", {}}}).status, 400);
  auto ok = Call(
      "PUT", bulk, admin_key_,
      {{"user_ids", {alice_, bob_}}, {"settings", {{"limit_usd", "42"}, {"enforcement", "soft"}}}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["updated"], 2);
  for (int64_t u : {alice_, bob_}) {
    EXPECT_EQ(directory_->GetSettings(u)->limit, Money::FromNanos(42'000'000'000));
    EXPECT_EQ(directory_->GetSettings(u)->enforcement, Enforcement::kSoft);
  }
}

TEST_F(BudgetApi, UsersAndKeysThroughTheApi) {
  auto created = Call("POST", "/api/v1/budget/admin/users", admin_key_,
                      {{"name", "carol"},
                       {"email", "carol@example.com"},
                       {"external_id", "ext-9"},
                       {"limit_usd", "12.5"},
                       {"period", "weekly"}});
  ASSERT_EQ(created.status, 201) << created.raw;
  int64_t carol = created.body["id"];
  EXPECT_EQ(directory_->GetSettings(carol)->limit, Money::FromNanos(12'500'000'000));
  EXPECT_EQ(directory_->GetSettings(carol)->period, Period::kWeekly);
  EXPECT_EQ(Call("POST", "/api/v1/budget/admin/users", admin_key_, {{"name", "carol"}}).status,
            409);
  EXPECT_EQ(Call("POST", "/api/v1/budget/admin/users", admin_key_, {{"name", ""}}).status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/budget/admin/users", admin_key_,
                 {{"name", "dave"}, {"limit_usd", "1.0000001"}})
                .body["error"]["field"],
            "limit_usd");
  EXPECT_FALSE(directory_->FindUser("dave").ok()) << "a refused create writes nothing";

  auto key = Call("POST", "/api/v1/budget/admin/keys", admin_key_,
                  {{"user_id", carol},
                   {"name", "ci"},
                   {"act_as_user", true},
                   {"expires_at", "2027-01-01T00:00:00Z"}});
  ASSERT_EQ(key.status, 201) << key.raw;
  std::string secret = key.body["secret"];
  EXPECT_TRUE(LooksLikeTollgateKey(secret));
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", secret).status, 200);
  // The secret is shown once: no list, no database column holds it.
  auto keys = Call("GET", "/api/v1/budget/admin/keys?user_id=" + std::to_string(carol), admin_key_);
  ASSERT_EQ(keys.body["items"].size(), 1u);
  EXPECT_EQ(keys.raw.find(secret), std::string::npos);
  EXPECT_EQ(keys.body["items"][0]["act_as_user"], true);
  EXPECT_EQ(keys.body["items"][0]["expires_at"], "2027-01-01T00:00:00Z");
  EXPECT_EQ(SqlInt("SELECT count(*) FROM api_keys WHERE key_hash = '" + secret + "' OR prefix = '" +
                   secret + "'"),
            0);
  std::string prefix = keys.body["items"][0]["prefix"];
  EXPECT_EQ(
      Call("GET", "/api/v1/budget/admin/keys?prefix=" + prefix, admin_key_).body["items"].size(),
      1u);
  EXPECT_EQ(Call("POST", "/api/v1/budget/admin/keys", admin_key_,
                 {{"user_id", carol}, {"expires_at", "2020-01-01T00:00:00Z"}})
                .body["error"]["field"],
            "expires_at");
  EXPECT_EQ(
      Call("POST", "/api/v1/budget/admin/keys", admin_key_, {{"user_id", 999999999999}}).status,
      404);

  int64_t key_id = keys.body["items"][0]["id"];
  EXPECT_EQ(
      Call("POST", "/api/v1/budget/admin/keys/" + std::to_string(key_id) + "/revoke", admin_key_)
          .status,
      200);
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", secret).status, 401);

  // A disabled user's keys stop working; enabling brings them back.
  std::string carol_key = NewKey(carol);
  std::string base = "/api/v1/budget/admin/users/" + std::to_string(carol);
  EXPECT_EQ(Call("POST", base + "/disable", admin_key_).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", carol_key).status, 401);
  EXPECT_EQ(Call("POST", base + "/enable", admin_key_).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/budget/status", carol_key).status, 200);
  auto users = Call("GET", "/api/v1/budget/admin/users?search=ext-9", admin_key_);
  ASSERT_EQ(users.body["items"].size(), 1u);
  EXPECT_EQ(users.body["items"][0]["name"], "carol");
}

TEST_F(BudgetApi, PriceOverrideAppliesFromItsDate) {
  Timestamp at = testing::At("2026-12-01T00:00:00Z");
  auto before = pricing_->Lookup("mistral", "mistral-small-latest", at);
  ASSERT_TRUE(before.ok());
  auto a = Call("POST", "/api/v1/budget/admin/pricing", admin_key_,
                {{"provider", "mistral"},
                 {"model", "mistral-small-latest"},
                 {"effective_from", "2026-12-01T00:00:00Z"},
                 {"input_usd_per_million", "0.05"},
                 {"output_usd_per_million", "0.15"}});
  ASSERT_EQ(a.status, 201) << a.raw;
  auto after = pricing_->Lookup("mistral", "mistral-small-latest", at);
  EXPECT_EQ(after->rates.input, TokenRate::FromNanosPerMillion(50'000'000));
  EXPECT_EQ(after->rates.output, TokenRate::FromNanosPerMillion(150'000'000));
  EXPECT_EQ(after->rates.cache_read, after->rates.input);
  EXPECT_NE(after->id.find("#override"), std::string::npos) << after->id;
  // Before its date the shipped price still applies.
  EXPECT_EQ(pricing_->Lookup("mistral", "mistral-small-latest", at - 1s)->id, before->id);
  // Another instance picks it up from Postgres.
  PricingTable other = *PricingTable::Load(testing::SourceDir() + "/config/pricing.json");
  PriceOverrides other_overrides(*pool_, other);
  ASSERT_TRUE(other_overrides.Refresh().ok());
  EXPECT_EQ(other.Lookup("mistral", "mistral-small-latest", at)->rates.input,
            TokenRate::FromNanosPerMillion(50'000'000));
  auto list = Call("GET", "/api/v1/budget/admin/pricing", admin_key_);
  EXPECT_EQ(list.body["overrides"].size(), 1u);
  EXPECT_GT(list.body["entries"].size(), 40u);
  for (json bad : {json{{"provider", "openai"}},
                   json{{"provider", "mistral"},
                        {"model", "m"},
                        {"input_usd_per_million", "x"},
                        {"output_usd_per_million", "1"}},
                   json{{"provider", "mistral"}, {"model", "m"}, {"input_usd_per_million", "1"}}}) {
    EXPECT_EQ(Call("POST", "/api/v1/budget/admin/pricing", admin_key_, bad).status, 400)
        << bad.dump();
  }
}

TEST_F(BudgetApi, OverviewCountsUsersPerLevelAndSpendByProvider) {
  Spend(alice_, "mistral", "m", 950'000'000);
  Spend(bob_, "anthropic", "claude", 1'000'000'000);
  auto a = Call("GET", "/api/v1/budget/admin/overview", admin_key_);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["users"], 3);
  EXPECT_EQ(a.body["users_per_alert_level"]["RED"], 1);
  EXPECT_EQ(a.body["users_per_alert_level"]["EXCEEDED"], 1);
  EXPECT_EQ(a.body["users_per_alert_level"]["GREEN"], 1);
  EXPECT_EQ(a.body["periods"]["this_month"]["spend_nanos"], 1'950'000'000);
  EXPECT_EQ(a.body["periods"]["today"]["requests"], 2);
  ASSERT_EQ(a.body["by_provider"].size(), 2u);
  EXPECT_EQ(a.body["by_provider"][0]["provider"], "anthropic");
  EXPECT_EQ(a.body["by_provider"][0]["spend_usd"], "1.000000000");
}

long RssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

TEST_F(BudgetApi, CsvExportOf100kRowsStreamsInBoundedMemory) {
  Sql("INSERT INTO usage_ledger (request_id, user_id, provider, model, price_id, started_at,"
      " input_tokens, output_tokens, cost_nanos, status)"
      " SELECT 'bulk-' || g, " +
      std::to_string(bob_) +
      ", 'deepseek', 'deepseek-chat', 'deepseek/deepseek-chat@2025-09-05', "
      " timestamptz '2026-11-10' + g * interval '1 second', 1000 + g % 7, 200, g, 200"
      " FROM generate_series(1, 100000) g");
  Sql("INSERT INTO usage_ledger (request_id, user_id, provider, model, started_at, cost_nanos,"
      " status) VALUES ('odd', " +
      std::to_string(bob_) + ", 'mistral', '=HYPERLINK(\"x\"),\"quoted\"', '2026-11-01', 1, 200)");
  long baseline = RssKb(), peak = baseline;
  size_t lines = 0, bytes = 0, calls = 0;
  int64_t cost_sum = 0;
  std::string partial, odd_line;
  auto r = client_->Get("/api/v1/budget/admin/usage/export.csv?user_id=" + std::to_string(bob_),
                        Auth(admin_key_), [&](const char* data, size_t n) {
                          bytes += n;
                          partial.append(data, n);
                          size_t start = 0, end;
                          while ((end = partial.find("\r\n", start)) != std::string::npos) {
                            std::string line = partial.substr(start, end - start);
                            if (lines > 0) {
                              if (line.starts_with("odd,")) odd_line = line;
                              // cost_nanos is the 13th column; the odd row's quoted model has
                              // commas, so only the bulk rows are summed.
                              if (line.starts_with("bulk-")) {
                                size_t pos = 0;
                                for (int i = 0; i < 12; ++i) pos = line.find(',', pos) + 1;
                                cost_sum += std::stoll(line.substr(pos, line.find(',', pos) - pos));
                              }
                            }
                            ++lines;
                            start = end + 2;
                          }
                          partial.erase(0, start);
                          if (++calls % 64 == 0) peak = std::max(peak, RssKb());
                          return true;
                        });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Transfer-Encoding"), "chunked");
  EXPECT_EQ(lines, 100'002u) << "header + 100,000 rows + the odd one";
  EXPECT_EQ(cost_sum, 100000LL * 100001 / 2);
  EXPECT_GT(bytes, 10'000'000u);
  // Text a spreadsheet would run is defused and quoted.
  EXPECT_NE(odd_line.find(R"("'=HYPERLINK(""x""),""quoted""")"), std::string::npos) << odd_line;
  // The whole export is over 10 MB; memory grew by far less than that. (Not under
  // AddressSanitizer: it keeps freed memory in quarantine, so RSS says nothing there.)
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(peak - baseline, 6 * 1024) << "RSS grew by " << (peak - baseline) << " kB";
#else
  (void)peak;
  (void)baseline;
#endif
}

}  // namespace
}  // namespace tollgate
