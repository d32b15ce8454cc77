#include "admin/side_server.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_env.h"

namespace tollgate {
namespace {

using nlohmann::json;

const httplib::Headers kScraper = {{"Authorization", "Bearer scrape-token"}};

class SideServer : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.metrics_token = "scrape-token";
    config_.admin_token = "admin-token";
    SideDependencies deps{config_, metrics_, [this] { return pg_; }, [this] { return redis_; }};
    deps_ = std::make_unique<SideDependencies>(deps);
    running_ = BuildSideServer(*deps_);
    ASSERT_GT(running_->Start("127.0.0.1", 0), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", running_->port());
  }
  Config config_;
  Metrics metrics_;
  Status pg_, redis_;
  std::unique_ptr<SideDependencies> deps_;
  std::unique_ptr<EventServer> running_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(SideServer, HealthzAnswers) {
  auto r = client_->Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(SideServer, ReadyzReportsEachDependency) {
  auto ok = client_->Get("/readyz");
  EXPECT_EQ(ok->status, 200);
  EXPECT_TRUE(json::parse(ok->body)["postgres"]["ok"]);
  redis_ = Status::Unavailable("redis: connection refused");
  auto down = client_->Get("/readyz");
  EXPECT_EQ(down->status, 503);
  json j = json::parse(down->body);
  EXPECT_TRUE(j["postgres"]["ok"]);
  EXPECT_FALSE(j["redis"]["ok"]);
  EXPECT_EQ(j["redis"]["error"], "redis: connection refused");
}

TEST_F(SideServer, MetricsExportCounters) {
  metrics_.Inc(Counter::kProxyRefusedBudget, 3);
  auto r = client_->Get("/metrics", kScraper);
  EXPECT_NE(r->body.find("tollgate_refusals_total{reason=\"budget\"} 3"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("# TYPE tollgate_proxy_requests_total counter"), std::string::npos);
}

TEST_F(SideServer, MetricsExportGaugesAndHistograms) {
  metrics_.Set(Gauge::kLedgerQueueDepth, 17);
  metrics_.Observe(Histogram::kUpstreamLatency, 40, "anthropic");     // le 0.05
  metrics_.Observe(Histogram::kUpstreamLatency, 2500, "anthropic");   // le 2.5
  metrics_.Observe(Histogram::kUpstreamLatency, 99999, "anthropic");  // only +Inf
  metrics_.Observe(Histogram::kSettleLag, 3);
  std::string body = client_->Get("/metrics", kScraper)->body;
  for (const char* line :
       {"tollgate_ledger_queue_depth 17\n",
        "tollgate_upstream_latency_seconds_bucket{provider=\"anthropic\",le=\"0.025\"} 0\n",
        "tollgate_upstream_latency_seconds_bucket{provider=\"anthropic\",le=\"0.05\"} 1\n",
        "tollgate_upstream_latency_seconds_bucket{provider=\"anthropic\",le=\"2.5\"} 2\n",
        "tollgate_upstream_latency_seconds_bucket{provider=\"anthropic\",le=\"60\"} 2\n",
        "tollgate_upstream_latency_seconds_bucket{provider=\"anthropic\",le=\"+Inf\"} 3\n",
        "tollgate_upstream_latency_seconds_sum{provider=\"anthropic\"} 102.539\n",
        "tollgate_upstream_latency_seconds_count{provider=\"mistral\"} 0\n",
        "tollgate_settle_lag_seconds_bucket{le=\"0.005\"} 1\n",
        "tollgate_settle_lag_seconds_count 1\n",
        "# TYPE tollgate_settle_lag_seconds histogram\n"}) {
    EXPECT_NE(body.find(line), std::string::npos) << line << body;
  }
}

TEST_F(SideServer, MetricsAnswerTheMetricsTokenOrTheAdminTokenAndNobodyElse) {
  EXPECT_EQ(client_->Get("/metrics")->status, 401);
  EXPECT_EQ(client_->Get("/metrics", {{"Authorization", "Bearer scrape-tokeN"}})->status, 401);
  auto refused = client_->Get("/metrics", {{"Authorization", "Bearer tg-someone"}});
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(json::parse(refused->body)["error"]["code"], "unauthenticated");
  EXPECT_EQ(refused->body.find("tollgate_"), std::string::npos);
  EXPECT_EQ(client_->Get("/metrics", kScraper)->status, 200);
  EXPECT_EQ(client_->Get("/metrics", {{"Authorization", "Bearer admin-token"}})->status, 200);
  // Probes stay open: load balancers and orchestrators call them without a token.
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
  EXPECT_EQ(client_->Get("/readyz")->status, 200);
}

TEST_F(SideServer, BadBytesAndLongPathsGetTheOneErrorShapeAndThePortGoesOn) {
  for (const std::string& wire :
       {std::string("GET /\xff\xfe HTTP/1.1\r\nConnection: close\r\n\r\n"),
        "POST /api/v1/budget/admin/reset/" + std::string(40'000, 'A') +
            " HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"}) {
    std::string reply = testing::RawExchange(running_->port(), wire);
    json j = json::parse(reply.substr(reply.find("\r\n\r\n") + 4), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not valid UTF-8 JSON: " << reply.substr(0, 300);
    EXPECT_TRUE(j["error"].contains("code")) << reply.substr(0, 300);
  }
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
}

TEST_F(SideServer, UnknownPathUsesTheOneErrorShape) {
  auto r = client_->Get("/nope");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "not_found");
}

}  // namespace
}  // namespace tollgate
