// Money is integer nano-dollars (1e-9 USD). It never mixes with token counts or floats.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate {

class Money {
 public:
  // The largest amount tollgate handles, $9,007,199.254740991: every amount stays exact
  // in Redis's Lua numbers (doubles), and sums of a few of them stay within int64.
  static constexpr int64_t kMaxNanos = (int64_t{1} << 53) - 1;
  constexpr Money() = default;
  static constexpr Money FromNanos(int64_t nanos) { return Money(nanos); }
  // Parses a decimal USD amount ("30", "0.0028", "-1.5"). At most 9 decimals; exact.
  static std::optional<Money> ParseUsd(std::string_view text);

  constexpr int64_t nanos() const { return nanos_; }
  // "30.000000000": always 9 decimals so clients can parse it as an exact decimal.
  std::string ToUsdString() const;

  constexpr Money operator+(Money o) const { return Money(nanos_ + o.nanos_); }
  constexpr Money operator-(Money o) const { return Money(nanos_ - o.nanos_); }
  Money& operator+=(Money o) {
    nanos_ += o.nanos_;
    return *this;
  }
  Money& operator-=(Money o) {
    nanos_ -= o.nanos_;
    return *this;
  }
  constexpr auto operator<=>(const Money&) const = default;

 private:
  constexpr explicit Money(int64_t nanos) : nanos_(nanos) {}
  int64_t nanos_ = 0;
};

// A price per million tokens, held in nano-dollars per million tokens so that prices
// such as $0.0028/M (2,800 nanos per million) stay exact integers.
class TokenRate {
 public:
  constexpr TokenRate() = default;
  static constexpr TokenRate FromNanosPerMillion(int64_t n) { return TokenRate(n); }
  static std::optional<TokenRate> ParseUsdPerMillion(std::string_view text);

  constexpr int64_t nanos_per_million() const { return nanos_per_million_; }
  std::string ToUsdPerMillionString() const;
  constexpr auto operator<=>(const TokenRate&) const = default;

 private:
  constexpr explicit TokenRate(int64_t n) : nanos_per_million_(n) {}
  int64_t nanos_per_million_ = 0;
};

// Sums tokens x rate exactly (128-bit) and converts to Money once at the end.
// Rounding rule: the total is rounded UP to the next whole nano-dollar, once per
// request, so a request is never billed less than it cost and the error is < 1 nano.
// A total above Money::kMaxNanos is no amount at all (nullopt): an error for the
// caller, never a wrap or a saturated figure that goes on to be added.
class CostAccumulator {
 public:
  void Add(int64_t tokens, TokenRate rate) {
    // A term is below 2^126; once the sum is past 2^100 (far beyond any amount) nothing
    // more is added, so it never overflows.
    if (tokens > 0 && femto_ < kCeiling)
      femto_ += static_cast<__int128>(tokens) * rate.nanos_per_million();
  }
  std::optional<Money> Total() const;

 private:
  static constexpr __int128 kCeiling = static_cast<__int128>(1) << 100;
  __int128 femto_ = 0;  // nano-dollars x 1e-6
};

// Parses the JSON-number-or-string form used in configuration files: a number is
// read back through its shortest round-trip decimal form, so 0.0028 stays 0.0028.
std::optional<std::string> DecimalText(double value);

}  // namespace tollgate
