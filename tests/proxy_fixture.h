// A real proxy on an OS-assigned port in front of a real tollgate-sim, with the
// directory, gate and ledger as in-memory fakes so each test controls them.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "budget/fake_directory.h"
#include "budget/keys.h"
#include "proxy/proxy_server.h"
#include "tests/test_env.h"
#include "tools/sim/sim_server.h"

namespace tollgate::testing {

using nlohmann::json;

class ProxyFixture : public ::testing::Test {
 protected:
  // Monday 2026-11-16 12:00 UTC: DeepSeek off-peak.
  static constexpr int64_t kOffPeakMicros = 1'794'830'400'000'000;

  void SetUp() override { Start(Money::FromNanos(1'000'000'000'000)); }
  void TearDown() override { Stop(); }

  void Start(Money limit, std::function<void(Config&)> tweak = nullptr) {
    sim_ = sim::SimServer({.default_output_tokens = 16, .worker_threads = 64}).Release();
    ASSERT_GT(sim_->Start("127.0.0.1", 0), 0);
    auto loaded = LoadConfig(SourceDir() + "/config/tollgate.json", {});
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    config_ = *loaded;
    config_.worker_threads = 64;
    for (auto& [name, u] : config_.upstreams)
      u.base_url = "http://127.0.0.1:" + std::to_string(sim_->port());
    config_.upstreams["anthropic"].api_key = "sk-ant-UPSTREAM-SECRET";
    config_.upstreams["mistral"].api_key = "mistral-UPSTREAM-SECRET";
    config_.upstreams["deepseek"].api_key = "sk-ds-UPSTREAM-SECRET";
    config_.max_body_bytes = 64 * 1024;
    if (tweak) tweak(config_);
    auto pricing = PricingTable::Load(config_.pricing_file);
    ASSERT_TRUE(pricing.ok());
    pricing_ = std::make_unique<PricingTable>(std::move(*pricing));
    auto user = directory_.FindUser("alice");
    if (!user.ok())
      user = directory_.CreateUser({.name = "alice"}, config_.user_defaults, clock_.Now());
    ASSERT_TRUE(user.ok());
    user_ = *user;
    auto key = directory_.CreateKey(user_.id, "k", false, std::nullopt, clock_.Now());
    key_ = key->secret;
    // Keys stay cached (the clock stands still), so after a caller's first request
    // buffered requests take the event loop's path.
    authenticator_ = std::make_unique<Authenticator>(directory_, clock_, auth_ttl_);
    gate_ = std::make_unique<FakeGate>(limit);
    service_ = std::make_unique<ProxyService>(ProxyDependencies{config_, *pricing_, *authenticator_,
                                                                proxy_gate_ ? *proxy_gate_ : *gate_,
                                                                ledger_, metrics_, clock_});
    proxy_ = service_->BuildServer();
    ASSERT_GT(proxy_->Start("127.0.0.1", 0), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", proxy_->port());
    client_->set_read_timeout(20, 0);
    sim_client_ = std::make_unique<httplib::Client>("127.0.0.1", sim_->port());
  }

  void Stop() {
    if (proxy_) proxy_->Stop();
    service_.reset();  // waits for streams still draining
    if (sim_) sim_->Stop();
  }

  httplib::Result Post(const std::string& path, const json& body, httplib::Headers headers = {},
                       const std::string& key = "") {
    headers.emplace("Authorization", "Bearer " + (key.empty() ? key_ : key));
    return client_->Post(path.c_str(), headers, body.dump(), "application/json");
  }

  // The ledger row for the last request, once the proxy has settled it.
  UsageRecord LastRow(size_t expected_rows = 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto rows = ledger_.rows();
      if (!rows.empty() && rows.size() >= expected_rows && service_->streams_in_flight() == 0)
        return rows.back();
      std::this_thread::yield();
    }
    ADD_FAILURE() << "no ledger row";
    return {};
  }

  json SimSaw() { return json::parse(sim_client_->Get("/_sim/requests")->body).back(); }

  ManualClock clock_{Timestamp(std::chrono::microseconds(kOffPeakMicros))};
  std::chrono::milliseconds auth_ttl_ = std::chrono::hours(1);
  Config config_;
  std::unique_ptr<PricingTable> pricing_;
  FakeDirectory directory_;
  FakeLedger ledger_;
  Metrics metrics_;
  User user_;
  std::string key_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<FakeGate> gate_;
  Gate* proxy_gate_ = nullptr;  // the gate the proxy asks, when not gate_ itself
  std::unique_ptr<EventServer> sim_;
  std::unique_ptr<ProxyService> service_;
  std::unique_ptr<EventServer> proxy_;
  std::unique_ptr<httplib::Client> client_, sim_client_;
};

// "hello world!" is 12 characters: the sim counts ceil(12 / 4) = 3 input tokens.
inline json Chat(const std::string& model, bool stream) {
  return {{"model", model},
          {"stream", stream},
          {"messages", {{{"role", "user"}, {"content", "hello world!"}}}}};
}

}  // namespace tollgate::testing
