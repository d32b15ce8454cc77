#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_env.h"

namespace tollgate {
namespace {

std::string WriteTemp(const std::string& text) {
  std::string path = ::testing::TempDir() + "tollgate_config_" + RandomHex(4) + ".json";
  std::ofstream(path) << text;
  return path;
}

TEST(Config, DefaultsWithoutAFile) {
  auto c = LoadConfig("", {});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->listen, "0.0.0.0:8080");
  EXPECT_EQ(c->admin_listen, "127.0.0.1:8081");
  EXPECT_EQ(c->database_url, "postgresql://tollgate@127.0.0.1:5432/tollgate");
  EXPECT_EQ(c->redis_url, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(c->upstreams.at("anthropic").base_url, "https://api.anthropic.com");
  EXPECT_EQ(c->upstreams.at("ollama").base_url, "http://127.0.0.1:11434");
  EXPECT_EQ(c->user_defaults.limit.nanos(), 30'000'000'000);
  EXPECT_EQ(c->admin_defaults.limit.nanos(), 100'000'000'000);
  EXPECT_EQ(c->max_body_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(c->max_connections, 10'000u);
  EXPECT_EQ(c->head_timeout_seconds, 10);
  EXPECT_EQ(c->body_timeout_seconds, 10);
  EXPECT_EQ(c->body_min_bytes_per_second, 64u * 1024);
  EXPECT_EQ(c->max_upstream_answer_bytes, 64u * 1024 * 1024);
}

TEST(Config, ShippedFileLoadsAndPointsAtShippedPricing) {
  auto c = LoadConfig(testing::SourceDir() + "/config/tollgate.json", {});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->pricing_file, testing::SourceDir() + "/config/pricing.json");
  EXPECT_EQ(c->user_defaults.limit.nanos(), 30'000'000'000);
  EXPECT_EQ(c->user_defaults.period, Period::kMonthly);
  EXPECT_TRUE(c->admin_defaults.can_reset);
  EXPECT_FALSE(c->global_cap.has_value());
  EXPECT_EQ(c->lease_requests, 256);
  // The shipped file says the defaults the code has.
  Config defaults = *LoadConfig("", {});
  EXPECT_EQ(c->max_connections, defaults.max_connections);
  EXPECT_EQ(c->head_timeout_seconds, defaults.head_timeout_seconds);
  EXPECT_EQ(c->body_timeout_seconds, defaults.body_timeout_seconds);
  EXPECT_EQ(c->body_min_bytes_per_second, defaults.body_min_bytes_per_second);
  EXPECT_EQ(c->max_upstream_answer_bytes, defaults.max_upstream_answer_bytes);
}

TEST(Config, LeasesCanBeTurnedOffButNotBelow) {
  auto off = LoadConfig(WriteTemp(R"({"gate": {"lease_requests": 0}})"), {});
  ASSERT_TRUE(off.ok()) << off.status().message();
  EXPECT_EQ(off->lease_requests, 0);
  auto bad = LoadConfig(WriteTemp(R"({"gate": {"lease_requests": -1}})"), {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gate.lease_requests"), std::string::npos);
}

TEST(Config, EnvironmentOverridesTheFile) {
  std::string path =
      WriteTemp(R"({"listen": "127.0.0.1:1000", "upstreams": {"mistral": {"url": "http://a:1"}}})");
  auto c = LoadConfig(path, {{"TOLLGATE_LISTEN", "127.0.0.1:2000"},
                             {"TOLLGATE_MISTRAL_URL", "http://127.0.0.1:9090"},
                             {"ANTHROPIC_API_KEY", "sk-ant-secret"},
                             {"TOLLGATE_DATABASE_URL", "postgresql://x@db:5432/t"},
                             {"TOLLGATE_REDIS_URL", "redis://cache:6380/2"},
                             {"TOLLGATE_ADMIN_TOKEN", "admintoken"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->listen, "127.0.0.1:2000");
  EXPECT_EQ(c->upstreams.at("mistral").base_url, "http://127.0.0.1:9090");
  EXPECT_EQ(c->upstreams.at("anthropic").api_key, "sk-ant-secret");
  EXPECT_EQ(c->database_url, "postgresql://x@db:5432/t");
  EXPECT_EQ(c->redis_url, "redis://cache:6380/2");
  EXPECT_EQ(c->admin_token, "admintoken");
}

TEST(Config, CommentsAreAllowed) {
  std::string path = WriteTemp("// top\n{ /* block */ \"listen\": \"127.0.0.1:9\" // trailing\n}");
  auto c = LoadConfig(path, {});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->listen, "127.0.0.1:9");
}

TEST(Config, ReadsGateDefaultsAndGlobalCap) {
  std::string path = WriteTemp(R"({
    "gate": {"enabled": false, "redis_down": "fail_closed",
             "fallback_price": {"input": 1, "output": "3.5"}},
    "defaults": {"user": {"limit_usd": 12.25, "period": "custom", "custom_period_days": 14,
                          "timezone": "Europe/Paris", "thresholds": {"yellow": 10, "orange": 20, "red": 30}}},
    "global_cap": {"limit_usd": "1000", "period": "daily"}})");
  auto c = LoadConfig(path, {});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->redis_down_use_postgres);
  EXPECT_FALSE(c->gate_enabled);
  EXPECT_EQ(c->fallback_input_per_million->nanos(), 1'000'000'000);
  EXPECT_EQ(c->fallback_output_per_million->nanos(), 3'500'000'000);
  EXPECT_EQ(c->user_defaults.limit.nanos(), 12'250'000'000);
  EXPECT_EQ(c->user_defaults.period, Period::kCustom);
  EXPECT_EQ(c->user_defaults.custom_period_days, 14);
  EXPECT_EQ(c->user_defaults.timezone, "Europe/Paris");
  EXPECT_EQ(c->user_defaults.red, 30);
  EXPECT_EQ(c->global_cap->nanos(), 1'000'000'000'000);
  EXPECT_EQ(c->global_cap_period, Period::kDaily);
}

struct BadCase {
  const char* text;
  const char* field;  // the message must name this
};

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, StopsWithOneLineNamingTheField) {
  auto c = LoadConfig(WriteTemp(GetParam().text), {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(GetParam().field), std::string::npos) << c.status().message();
  EXPECT_EQ(c.status().message().find('\n'), std::string::npos) << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Files, BadConfig,
    ::testing::Values(
        BadCase{R"({"lisen": "0.0.0.0:1"})", "lisen: unknown field"},
        BadCase{R"({"listen": "nowhere"})", "listen: must be host:port"},
        BadCase{R"({"listen": 8080})", "listen: must be a string"},
        BadCase{R"({"database_url": "mysql://x"})", "database_url"},
        BadCase{R"({"redis_url": "http://x"})", "redis_url"},
        BadCase{R"({"upstreams": {"mistral": {"url": "https://api.mistral.ai/v1"}}})",
                "upstreams.mistral.url"},
        BadCase{R"({"upstreams": {"openai": {"url": "https://x"}}})",
                "upstreams.openai: unknown field"},
        BadCase{R"({"server": {"worker_threads": 0}})", "server.worker_threads"},
        BadCase{R"({"server": {"max_connections": 0}})", "server.max_connections"},
        BadCase{R"({"server": {"head_timeout_seconds": 0}})", "server.head_timeout_seconds"},
        BadCase{R"({"server": {"body_timeout_seconds": -1}})", "server.body_timeout_seconds"},
        BadCase{R"({"server": {"body_min_bytes_per_second": 0}})",
                "server.body_min_bytes_per_second"},
        BadCase{R"({"server": {"max_upstream_answer_bytes": 10}})",
                "server.max_upstream_answer_bytes"},
        BadCase{R"({"gate": {"redis_down": "maybe"}})", "gate.redis_down"},
        BadCase{R"({"gate": {"enabled": "no"}})", "gate.enabled"},
        BadCase{R"({"gate": {"fallback_price": {"input": "1"}}})", "gate.fallback_price"},
        BadCase{R"({"defaults": {"user": {"limit_usd": "thirty"}}})", "defaults.user.limit_usd"},
        BadCase{R"({"defaults": {"user": {"limit_usd": "-1"}}})", "defaults.user.limit_usd"},
        BadCase{R"({"defaults": {"user": {"period": "yearly"}}})", "defaults.user.period"},
        BadCase{R"({"defaults": {"admin": {"timezone": "Mars/Olympus"}}})",
                "defaults.admin.timezone"},
        BadCase{
            R"({"defaults": {"user": {"thresholds": {"yellow": 80, "orange": 70, "red": 90}}}})",
            "defaults.user.thresholds"},
        BadCase{R"({"defaults": {"user": {"thresholds": {"red": 101}}}})",
                "defaults.user.thresholds.red"},
        BadCase{R"({"defaults": {"user": {"custom_period_days": 400}}})",
                "defaults.user.custom_period_days"},
        BadCase{R"({"global_cap": {"limit_usd": "10", "period": "custom"}})", "global_cap.period"},
        BadCase{R"({"alerts": {"webhook_url": "ftp://x"}})", "alerts.webhook_url"},
        BadCase{R"({"listen": )", "not valid JSON"}, BadCase{R"([1, 2])", "must be an object"},
        // Found by tests/fuzz/fuzz_config: a number past a double threw out_of_range, and
        // start-up ended in std::terminate instead of this line.
        BadCase{"9e333333", "not valid JSON"},
        BadCase{R"({"server": {"worker_threads": 1e999}})", "not valid JSON"}));

TEST(Config, MissingFileIsAnError) {
  auto c = LoadConfig("/nonexistent/tollgate.json", {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("cannot open"), std::string::npos);
}

TEST(HostPort, Parses) {
  EXPECT_EQ(ParseHostPort("0.0.0.0:8080")->port, 8080);
  EXPECT_EQ(ParseHostPort("[::1]:81")->host, "::1");
  EXPECT_FALSE(ParseHostPort("host:99999").has_value());
  EXPECT_FALSE(ParseHostPort(":80").has_value());
}

TEST(Config, UpstreamBaseUrls) {
  auto plain = ParseBaseUrl("http://localhost:11434");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->host, "localhost");
  EXPECT_EQ(plain->port, 11434);
  auto tls = ParseBaseUrl("https://api.anthropic.com");
  ASSERT_TRUE(tls);
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->port, 443);
  EXPECT_EQ(tls->authority, "api.anthropic.com");
  auto v6 = ParseBaseUrl("http://[::1]:8080");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->authority, "[::1]:8080");
  auto bare_v6 = ParseBaseUrl("https://[::1]");
  ASSERT_TRUE(bare_v6);
  EXPECT_EQ(bare_v6->host, "::1");
  EXPECT_EQ(bare_v6->port, 443);
  for (const char* bad : {"ftp://x", "http://", "http://x:port", "http://x/path", "http://x/",
                          "http://x:99999", "http://x:0", "http://[::1", "http://:80"})
    EXPECT_FALSE(ParseBaseUrl(bad)) << bad;
}

}  // namespace
}  // namespace tollgate
