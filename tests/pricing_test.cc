#include "config/pricing.h"

#include <gtest/gtest.h>

#include "tests/test_env.h"

namespace tollgate {
namespace {

using testing::At;

class ShippedPricing : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = PricingTable::Load(testing::SourceDir() + "/config/pricing.json");
    ASSERT_TRUE(t.ok()) << t.status().message();
    table_ = std::move(*t);
  }
  Rates RatesOf(const char* provider, const char* model, const char* when) {
    auto q = table_.Lookup(provider, model, At(when));
    EXPECT_TRUE(q.ok()) << provider << "/" << model << ": " << q.status().message();
    return q.ok() ? q->rates : Rates{};
  }
  PricingTable table_;
};

TEST_F(ShippedPricing, EveryEntryHasSourceAndDate) {
  EXPECT_GE(table_.entries().size(), 40u);
  for (const PriceEntry& e : table_.entries()) {
    EXPECT_FALSE(e.source.empty()) << e.model;
    EXPECT_EQ(e.checked.size(), 10u) << e.model;
  }
}

TEST_F(ShippedPricing, CoversEveryProviderAndResolvesAliases) {
  EXPECT_EQ(table_.Canonical("mistral", "mistral-large-latest"), "mistral-large-2512");
  EXPECT_EQ(RatesOf("mistral", "mistral-large-latest", "2026-11-28").output.nanos_per_million(),
            1'500'000'000);
  Rates haiku = RatesOf("anthropic", "claude-haiku-4-5-20251001", "2026-11-28");
  EXPECT_EQ(haiku.input.nanos_per_million(), 1'000'000'000);
  EXPECT_EQ(haiku.cache_write_5m.nanos_per_million(), 1'250'000'000);
  EXPECT_EQ(haiku.cache_write_1h.nanos_per_million(), 2'000'000'000);
  EXPECT_EQ(haiku.cache_read.nanos_per_million(), 100'000'000);
  EXPECT_EQ(RatesOf("ollama", "llama3.2", "2026-11-28").output.nanos_per_million(), 0);
  // Ollama's default tag names the same model: a price set for one is the other's.
  EXPECT_EQ(table_.Canonical("ollama", "llama3:latest"), "llama3");
  EXPECT_EQ(table_.Canonical("ollama", "llama3:8b"), "llama3:8b");
}

TEST_F(ShippedPricing, DeepSeekPeakAndOffPeak) {
  // Monday 2026-11-16 02:00 UTC is peak; 12:00 off-peak; Saturday 02:00 off-peak.
  auto peak = table_.Lookup("deepseek", "deepseek-flash", At("2026-11-16T02:00:00Z"));
  ASSERT_TRUE(peak.ok());
  EXPECT_EQ(peak->rates.output.nanos_per_million(), 1'200'000'000);
  EXPECT_EQ(peak->id, "deepseek/deepseek-flash@2026-11-15#peak");
  auto off = table_.Lookup("deepseek", "deepseek-flash", At("2026-11-16T12:00:00Z"));
  EXPECT_EQ(off->rates.output.nanos_per_million(), 600'000'000);
  EXPECT_EQ(off->id, "deepseek/deepseek-flash@2026-11-15");
  auto weekend = table_.Lookup("deepseek", "deepseek-flash", At("2026-11-21T02:00:00Z"));
  EXPECT_EQ(weekend->rates.output.nanos_per_million(), 600'000'000);
  auto edge =
      table_.Lookup("deepseek", "deepseek-flash", At("2026-11-16T04:00:00Z"));  // end is exclusive
  EXPECT_EQ(edge->rates.output.nanos_per_million(), 600'000'000);
}

TEST_F(ShippedPricing, EffectiveDatesSwitchPrices) {
  EXPECT_EQ(RatesOf("deepseek", "deepseek-chat", "2025-09-05T15:59:59Z").output.nanos_per_million(),
            1'100'000'000);
  EXPECT_EQ(RatesOf("deepseek", "deepseek-chat", "2025-09-05T16:00:00Z").output.nanos_per_million(),
            1'680'000'000);
  // The 2025 night discount: 16:30-00:30 UTC.
  EXPECT_EQ(RatesOf("deepseek", "deepseek-chat", "2025-03-01T17:00:00Z").output.nanos_per_million(),
            550'000'000);
}

TEST_F(ShippedPricing, UnknownModelIsNotFound) {
  auto q = table_.Lookup("anthropic", "claude-imaginary", At("2026-11-28"));
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), Status::Code::kNotFound);
  EXPECT_FALSE(
      table_.Lookup("mistral", "mistral-large-2512", At("2020-01-01")).ok());  // before it existed
}

TEST_F(ShippedPricing, CostOfAnAnthropicAnswerByHand) {
  // 6 input, 41,203 cache read, 21 output on Sonnet 4.5 ($3 in, $0.30 read, $15 out):
  // 6 x 3000 + 41203 x 300 + 21 x 15000 nanos/token... in nanos: 18,000 + 12,360,900 + 315,000
  Rates r = RatesOf("anthropic", "claude-sonnet-4-5", "2026-11-28");
  CostAccumulator cost;
  cost.Add(6, r.input);
  cost.Add(41203, r.cache_read);
  cost.Add(21, r.output);
  EXPECT_EQ(cost.Total()->nanos(), 18'000 + 12'360'900 + 315'000);
}

struct BadTable {
  const char* text;
  const char* needle;
};
class BadPricing : public ::testing::TestWithParam<BadTable> {};

TEST_P(BadPricing, NamesTheField) {
  auto t = PricingTable::Parse(GetParam().text, "pricing.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(GetParam().needle), std::string::npos)
      << t.status().message();
}

#define ENTRY(extra)                                                                                                        \
  R"({"models":[{"provider":"mistral","model":"m","effective_from":"2026-01-01","source":"s","checked":"2026-01-01")" extra \
  "}]}"
INSTANTIATE_TEST_SUITE_P(
    Tables, BadPricing,
    ::testing::Values(
        BadTable{ENTRY(R"(,"output":"1")"), "models[0]: needs input and output"},
        BadTable{ENTRY(R"(,"input":"x","output":"1")"), "models[0].input"},
        BadTable{ENTRY(R"(,"input":"-1","output":"1")"), "models[0].input"},
        BadTable{ENTRY(R"(,"input":"1","output":"1","colour":"red")"),
                 "models[0].colour: unknown field"},
        BadTable{
            R"({"models":[{"provider":"openai","model":"m","effective_from":"2026-01-01","input":"1","output":"1","source":"s","checked":"c"}]})",
            "models[0].provider"},
        BadTable{
            ENTRY(
                R"(,"input":"1","output":"1","windows":[{"name":"p","weekdays":["mon"],"utc":["10:00-09:00"]}])"),
            "models[0].windows[0].utc"},
        BadTable{
            ENTRY(
                R"(,"input":"1","output":"1","windows":[{"name":"p","weekdays":["funday"],"utc":["01:00-02:00"]}])"),
            "models[0].windows[0].weekdays"},
        BadTable{R"({"models": 3})", "models: must be a list"}));
#undef ENTRY

TEST(Pricing, DefaultsCacheRatesToInput) {
  auto t = PricingTable::Parse(
      R"({"models":[{"provider":"mistral","model":"m","effective_from":"2026-01-01","input":"2","output":"6","source":"s","checked":"2026-01-01"}]})",
      "x");
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto q = t->Lookup("mistral", "m", At("2026-02-01"));
  EXPECT_EQ(q->rates.cache_read, q->rates.input);
  EXPECT_EQ(q->rates.cache_write_1h, q->rates.input);
}

}  // namespace
}  // namespace tollgate
