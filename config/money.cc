#include "config/money.h"

#include <charconv>
#include <cstdlib>
#include <limits>

namespace tollgate {
namespace {

// Parses "[-]digits[.digits]" into an integer scaled by 10^scale. Rejects more than
// `scale` decimals, exponents, empty parts and overflow.
std::optional<int64_t> ParseScaledDecimal(std::string_view text, int scale) {
  if (text.empty()) return std::nullopt;
  bool negative = false;
  if (text[0] == '-' || text[0] == '+') {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  std::string_view whole = text, frac;
  if (auto dot = text.find('.'); dot != std::string_view::npos) {
    whole = text.substr(0, dot);
    frac = text.substr(dot + 1);
    if (frac.empty()) return std::nullopt;
  }
  if (whole.empty() || static_cast<int>(frac.size()) > scale) return std::nullopt;
  __int128 value = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > std::numeric_limits<int64_t>::max()) return std::nullopt;
  }
  for (int i = 0; i < scale; ++i) {
    int digit = 0;
    if (i < static_cast<int>(frac.size())) {
      char c = frac[i];
      if (c < '0' || c > '9') return std::nullopt;
      digit = c - '0';
    }
    value = value * 10 + digit;
    if (value > std::numeric_limits<int64_t>::max()) return std::nullopt;
  }
  return static_cast<int64_t>(negative ? -value : value);
}

std::string FormatScaled(int64_t value, int scale) {
  bool negative = value < 0;
  unsigned long long magnitude = negative ? 0ULL - static_cast<unsigned long long>(value)
                                          : static_cast<unsigned long long>(value);
  unsigned long long divisor = 1;
  for (int i = 0; i < scale; ++i) divisor *= 10;
  std::string frac = std::to_string(magnitude % divisor);
  frac.insert(0, static_cast<size_t>(scale) - frac.size(), '0');
  return (negative ? "-" : "") + std::to_string(magnitude / divisor) + "." + frac;
}

}  // namespace

std::optional<Money> Money::ParseUsd(std::string_view text) {
  auto nanos = ParseScaledDecimal(text, 9);
  if (!nanos) return std::nullopt;
  return Money(*nanos);
}

std::string Money::ToUsdString() const { return FormatScaled(nanos_, 9); }

std::optional<TokenRate> TokenRate::ParseUsdPerMillion(std::string_view text) {
  auto n = ParseScaledDecimal(text, 9);
  if (!n || *n < 0) return std::nullopt;
  return TokenRate(*n);
}

std::string TokenRate::ToUsdPerMillionString() const {
  std::string s = FormatScaled(nanos_per_million_, 9);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::optional<Money> CostAccumulator::Total() const {
  __int128 whole = femto_ / 1000000;
  if (femto_ % 1000000 != 0) whole += 1;
  if (whole > Money::kMaxNanos) return std::nullopt;
  return Money::FromNanos(static_cast<int64_t>(whole));
}

std::optional<std::string> DecimalText(double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  if (ec != std::errc()) return std::nullopt;
  return std::string(buf, end);
}

}  // namespace tollgate
