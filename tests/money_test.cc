#include "config/money.h"

#include <gtest/gtest.h>

#include <limits>

namespace tollgate {
namespace {

TEST(Money, ParsesDecimalUsdExactly) {
  EXPECT_EQ(Money::ParseUsd("30")->nanos(), 30'000'000'000);
  EXPECT_EQ(Money::ParseUsd("0.0028")->nanos(), 2'800'000);
  EXPECT_EQ(Money::ParseUsd("0.000000001")->nanos(), 1);
  EXPECT_EQ(Money::ParseUsd("-1.5")->nanos(), -1'500'000'000);
  EXPECT_EQ(Money::ParseUsd("9223372036.854775807")->nanos(), INT64_MAX);
}

TEST(Money, RejectsWhatIsNotAnExactAmount) {
  for (const char* bad : {"", "-", ".5", "5.", "1e3", "0.0000000001", "abc", "1.2.3",
                          "9223372036.854775808", " 1", "1,5"}) {
    EXPECT_FALSE(Money::ParseUsd(bad).has_value()) << bad;
  }
}

TEST(Money, FormatsWithNineDecimals) {
  EXPECT_EQ(Money::FromNanos(1'050'000).ToUsdString(), "0.001050000");
  EXPECT_EQ(Money::FromNanos(30'000'000'000).ToUsdString(), "30.000000000");
  EXPECT_EQ(Money::FromNanos(-1).ToUsdString(), "-0.000000001");
  EXPECT_EQ(Money::FromNanos(INT64_MIN).ToUsdString(), "-9223372036.854775808");
}

TEST(Money, ArithmeticAndOrder) {
  Money a = Money::FromNanos(5), b = Money::FromNanos(7);
  EXPECT_EQ((a + b).nanos(), 12);
  EXPECT_EQ((a - b).nanos(), -2);
  EXPECT_LT(a, b);
  a += b;
  EXPECT_EQ(a.nanos(), 12);
}

TEST(TokenRate, KeepsSubNanoPricesExact) {
  // $0.0028 per million tokens is 2.8 nano-dollars per token: held per million.
  EXPECT_EQ(TokenRate::ParseUsdPerMillion("0.0028")->nanos_per_million(), 2'800'000);
  EXPECT_EQ(TokenRate::ParseUsdPerMillion("0.003625")->nanos_per_million(), 3'625'000);
  EXPECT_EQ(TokenRate::ParseUsdPerMillion("3.75")->ToUsdPerMillionString(), "3.75");
  EXPECT_FALSE(TokenRate::ParseUsdPerMillion("-1").has_value());
}

TEST(CostAccumulator, RoundsTheTotalUpOnceToAWholeNano) {
  // $0.0001 per million tokens is 0.1 nano-dollar per token.
  CostAccumulator one;
  one.Add(1, *TokenRate::ParseUsdPerMillion("0.0001"));  // 0.1 nano -> 1
  EXPECT_EQ(one.Total()->nanos(), 1);

  CostAccumulator many;  // 15 x 0.1 = 1.5 nano -> 2; rounding per token would give 15
  many.Add(15, *TokenRate::ParseUsdPerMillion("0.0001"));
  EXPECT_EQ(many.Total()->nanos(), 2);

  CostAccumulator whole;  // 1,000 tokens x $0.0028/M = 2.8 nano-dollars per token x 1,000 = 2,800
  whole.Add(1000, *TokenRate::ParseUsdPerMillion("0.0028"));
  EXPECT_EQ(whole.Total()->nanos(), 2800);

  CostAccumulator exact;  // 16 in x $3/M + 34 out x $15/M = 48,000 + 510,000 nanos
  exact.Add(16, *TokenRate::ParseUsdPerMillion("3"));
  exact.Add(34, *TokenRate::ParseUsdPerMillion("15"));
  EXPECT_EQ(exact.Total()->nanos(), 558'000);

  CostAccumulator none;
  none.Add(0, *TokenRate::ParseUsdPerMillion("15"));
  none.Add(-5, *TokenRate::ParseUsdPerMillion("15"));
  EXPECT_EQ(none.Total()->nanos(), 0);
}

TEST(CostAccumulator, ATotalPastAnyAmountIsNoneNeverAWrapOrASaturation) {
  CostAccumulator big;  // 9e6 tokens x $1000/M = $9,000: an amount
  big.Add(9'000'000, *TokenRate::ParseUsdPerMillion("1000"));
  EXPECT_EQ(big.Total()->nanos(), 9'000'000'000'000);
  CostAccumulator edge;  // exactly the largest amount, then one nano more
  edge.Add(Money::kMaxNanos, TokenRate::FromNanosPerMillion(1'000'000));
  EXPECT_EQ(edge.Total()->nanos(), Money::kMaxNanos);
  edge.Add(1, TokenRate::FromNanosPerMillion(1'000'000));
  EXPECT_FALSE(edge.Total().has_value());
  CostAccumulator huge;  // what a wrap or a saturation would have made an amount of
  for (int i = 0; i < 1000; ++i)
    huge.Add(std::numeric_limits<int64_t>::max(), TokenRate::FromNanosPerMillion(
                                                      std::numeric_limits<int64_t>::max()));
  EXPECT_FALSE(huge.Total().has_value());
}

TEST(DecimalText, RecoversTheWrittenDecimalOfAJsonNumber) {
  EXPECT_EQ(*DecimalText(0.0028), "0.0028");
  EXPECT_EQ(*DecimalText(30), "30");
  EXPECT_EQ(*DecimalText(0.1), "0.1");
}

}  // namespace
}  // namespace tollgate
