#include "admin/user_api.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "admin/side_server.h"
#include "budget/fake_directory.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using nlohmann::json;

class UserApi : public ::testing::Test {
 protected:
  void SetUp() override {
    BudgetDefaults d;  // $30 monthly, thresholds 50/75/90
    // Created before the month so the window is the calendar month, 2026-11-01 to 12-01.
    user_ = directory_.CreateUser({.name = "alice"}, d, testing::At("2026-10-15T00:00:00Z"))->id;
    key_ = directory_.CreateKey(user_, "k", false, std::nullopt, clock_.Now())->secret;
    deps_ = std::make_unique<BudgetApiDependencies>(BudgetApiDependencies{
        .config = config_,
        .clock = clock_,
        .directory = directory_,
        .authenticator = authenticator_,
        .settings = settings_,
        .spend_state = [this](int64_t, const Window& w) -> Result<SpendState> {
          return SpendState{spend_, held_, w};
        }});
    side_deps_ = std::make_unique<SideDependencies>(SideDependencies{
        config_, metrics_, [] { return Status::Ok(); }, [] { return Status::Ok(); }, deps_.get()});
    running_ = BuildSideServer(*side_deps_);
    ASSERT_GT(running_->Start("127.0.0.1", 0), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", running_->port());
  }
  httplib::Result Status(const std::string& key) {
    return client_->Get("/api/v1/budget/status", {{"Authorization", "Bearer " + key}});
  }

  ManualClock clock_{testing::At("2026-11-16T00:00:00Z")};  // half of November gone
  Config config_;
  Metrics metrics_;
  FakeDirectory directory_;
  Authenticator authenticator_{directory_, clock_, std::chrono::milliseconds(0)};
  SettingsCache settings_{directory_, clock_, std::chrono::milliseconds(0)};
  Money spend_ = Money::FromNanos(12'340'000'000), held_ = Money::FromNanos(1'000'000'000);
  std::unique_ptr<BudgetApiDependencies> deps_;
  std::unique_ptr<SideDependencies> side_deps_;
  std::unique_ptr<EventServer> running_;
  std::unique_ptr<httplib::Client> client_;
  int64_t user_ = 0;
  std::string key_;
};

TEST_F(UserApi, StatusGivesEveryAmountExactly) {
  auto r = Status(key_);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["user_id"], user_);
  EXPECT_EQ(j["limit_usd"], "30.000000000");
  EXPECT_EQ(j["limit_nanos"], 30'000'000'000);
  EXPECT_EQ(j["spend_usd"], "12.340000000");
  EXPECT_EQ(j["reserved_nanos"], 1'000'000'000);
  EXPECT_EQ(j["remaining_usd"], "16.660000000");
  EXPECT_DOUBLE_EQ(j["percent"].get<double>(), 41.13);  // 12.34 / 30
  EXPECT_EQ(j["alert_level"], "GREEN");
  EXPECT_EQ(j["period"], "monthly");
  EXPECT_EQ(j["window_start"], "2026-11-01T00:00:00Z");
  EXPECT_EQ(j["next_reset"], "2026-12-01T00:00:00Z");
  EXPECT_EQ(j["enforcement"], "hard");
  EXPECT_EQ(j["projected_spend_nanos"], 24'680'000'000);  // half the month gone: twice the spend
  EXPECT_TRUE(j["projected_spend_usd"].is_string());
}

TEST_F(UserApi, AlertLevelFollowsSpend) {
  spend_ = Money::FromNanos(27'000'000'000);
  EXPECT_EQ(json::parse(Status(key_)->body)["alert_level"], "RED");
  spend_ = Money::FromNanos(30'000'000'000);
  json j = json::parse(Status(key_)->body);
  EXPECT_EQ(j["alert_level"], "EXCEEDED");
  EXPECT_EQ(j["remaining_nanos"], 0);
}

TEST_F(UserApi, RefusesWithoutAValidKeyInTheOneErrorShape) {
  auto none = client_->Get("/api/v1/budget/status");
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json::parse(none->body)["error"]["code"], "unauthenticated");
  auto bad = Status("tg-" + std::string(43, 'z'));
  EXPECT_EQ(bad->status, 401);
  EXPECT_TRUE(json::parse(bad->body)["error"].contains("message"));
}

// A body is parsed with its depth bounded, as every parse of a caller's bytes.
TEST_F(UserApi, ADeeplyNestedBodyIs400) {
  for (const std::string& body : {"{\"thresholds\":" + std::string(100000, '[') + "}",
                                  "{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}",
                                  std::string("{\"limit_usd\":1e999}")}) {
    auto r = client_->Put("/api/v1/budget/settings", {{"Authorization", "Bearer " + key_}}, body,
                          "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_json") << r->body;
  }
}

TEST_F(UserApi, HiddenBudgetIs403) {
  BudgetSettings s = *directory_.GetSettings(user_);
  s.budget_visible = false;
  directory_.PutSettings(s, "admin");
  auto r = Status(key_);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "budget_hidden");
}

}  // namespace
}  // namespace tollgate
