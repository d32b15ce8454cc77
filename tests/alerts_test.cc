#include "budget/alerts.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "budget/migrations.h"
#include "budget/pg_directory.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;

TEST(AlertLevel, FollowsTheThresholdsExactly) {
  Money limit = Money::FromNanos(1'000'000'000);
  auto level = [&](int64_t spend) { return LevelOf(Money::FromNanos(spend), limit, 50, 75, 90); };
  EXPECT_EQ(level(0), AlertLevel::kGreen);
  EXPECT_EQ(level(499'999'999), AlertLevel::kGreen);
  EXPECT_EQ(level(500'000'000), AlertLevel::kYellow);
  EXPECT_EQ(level(750'000'000), AlertLevel::kOrange);
  EXPECT_EQ(level(899'999'999), AlertLevel::kOrange);
  EXPECT_EQ(level(900'000'000), AlertLevel::kRed);
  EXPECT_EQ(level(1'000'000'000), AlertLevel::kExceeded);
  EXPECT_EQ(LevelOf(Money::FromNanos(1), Money(), 50, 75, 90), AlertLevel::kExceeded);
  EXPECT_EQ(LevelOf(Money(), Money(), 50, 75, 90), AlertLevel::kGreen);
}

class Alerts : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::FreshDatabase();
    ASSERT_FALSE(url_.empty());
    pool_ = std::make_unique<PgPool>(url_, 2);
    int applied = 0;
    ASSERT_TRUE(Migrate(*pool_, &applied).ok());
    PgDirectory dir(*pool_);
    user_ = dir.CreateUser({.name = "u"}, BudgetDefaults{}, clock_.Now())->id;
  }
  std::unique_ptr<PgAlerts> Make() {
    return std::make_unique<PgAlerts>(
        *pool_, clock_, metrics_, AlertOptions{"http://hooks.example/alerts", 12},
        [this](const std::string& url, const std::string& json) {
          posts_.emplace_back(url, json);
          return webhook_up_ ? std::string() : std::string("webhook answered 503");
        });
  }
  AlertEvent Event(AlertLevel level) {
    return {user_, level, testing::At("2026-11-01T00:00:00Z"), Money::FromNanos(27'000'000'000),
            Money::FromNanos(30'000'000'000)};
  }
  int Count(const std::string& where) {
    pqxx::connection c(url_);
    return pqxx::nontransaction(c)
        .exec1("SELECT count(*) FROM alert_events WHERE " + where)[0]
        .as<int>();
  }
  std::string url_;
  std::unique_ptr<PgPool> pool_;
  ManualClock clock_{testing::At("2026-11-20T10:00:00Z")};
  Metrics metrics_;
  int64_t user_ = 0;
  bool webhook_up_ = false;
  std::vector<std::pair<std::string, std::string>> posts_;
};

TEST_F(Alerts, RisingIntoRedStoresEachLevelOncePerWindow) {
  auto alerts = Make();
  alerts->Raise(Event(AlertLevel::kRed));
  EXPECT_EQ(alerts->StoreQueued().value(), 3);  // YELLOW, ORANGE, RED
  alerts->Raise(Event(AlertLevel::kRed));
  EXPECT_EQ(alerts->StoreQueued().value(), 0);
  auto other_instance = Make();
  other_instance->Raise(Event(AlertLevel::kExceeded));
  EXPECT_EQ(other_instance->StoreQueued().value(), 1);  // only EXCEEDED is new
  EXPECT_EQ(Count("true"), 4);
}

TEST_F(Alerts, DeliveryIsRetriedWithBackOffUntilTheWebhookAnswers) {
  auto alerts = Make();
  alerts->Raise(Event(AlertLevel::kYellow));
  ASSERT_TRUE(alerts->StoreQueued().ok());
  EXPECT_EQ(alerts->DeliverDue().value(), 0);  // webhook down
  EXPECT_EQ(Count("attempts = 1 AND last_error = 'webhook answered 503'"), 1);
  EXPECT_EQ(alerts->DeliverDue().value(), 0);
  EXPECT_EQ(posts_.size(), 1u) << "not retried before its back-off";
  webhook_up_ = true;
  clock_.Advance(1s);
  EXPECT_EQ(alerts->DeliverDue().value(), 1);
  ASSERT_EQ(posts_.size(), 2u);
  auto payload = nlohmann::json::parse(posts_.back().second);
  EXPECT_EQ(posts_.back().first, "http://hooks.example/alerts");
  EXPECT_EQ(payload["level"], "YELLOW");
  EXPECT_EQ(payload["user_id"], user_);
  EXPECT_EQ(payload["spend_usd"], "27.000000000");
  EXPECT_EQ(payload["limit_nanos"], 30'000'000'000);
  EXPECT_EQ(alerts->DeliverDue().value(), 0);  // delivered once
  EXPECT_EQ(Count("delivered_at IS NOT NULL"), 1);
}

}  // namespace
}  // namespace tollgate
