#include "budget/window.h"

#include <gtest/gtest.h>

#include "tests/test_env.h"

namespace tollgate {
namespace {

using testing::At;
const Timestamp kLongAgo = At("2000-01-01");

TEST(Window, MonthlyInUtcCoversMonthEnds) {
  Window w = CurrentWindow(Period::kMonthly, 0, "UTC", kLongAgo, At("2026-01-31T23:59:59Z"));
  EXPECT_EQ(FormatRfc3339(w.start), "2026-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(w.end), "2026-02-01T00:00:00Z");
  Window dec = CurrentWindow(Period::kMonthly, 0, "UTC", kLongAgo, At("2026-12-15T10:00:00Z"));
  EXPECT_EQ(FormatRfc3339(dec.end), "2027-01-01T00:00:00Z");
}

TEST(Rfc3339, FormatsEveryFieldAndReadsBackTheSameInstant) {
  using std::chrono::microseconds;
  EXPECT_EQ(FormatRfc3339(Timestamp(microseconds(1'795'000'000'398'978))),
            "2026-11-18T11:06:40.398978Z");
  EXPECT_EQ(FormatRfc3339(Timestamp(microseconds(1))), "1970-01-01T00:00:00.000001Z");
  EXPECT_EQ(FormatRfc3339(Timestamp(microseconds(-1))), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(FormatRfc3339(At("9999-12-31T23:59:59Z")), "9999-12-31T23:59:59Z");
  EXPECT_EQ(FormatRfc3339(At("9999-12-31T23:59:59Z") + std::chrono::seconds(1)),
            "10000-01-01T00:00:00Z");
  // Instants spread over the years a ledger can hold, each read back to itself.
  uint64_t x = 88172645463325252u;
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    Timestamp t(microseconds(static_cast<int64_t>(x % 8'000'000'000'000'000u)));  // to ~2223
    if (i % 3 == 0) t = std::chrono::floor<std::chrono::seconds>(t);
    std::string text = FormatRfc3339(t);
    Timestamp back;
    ASSERT_TRUE(ParseRfc3339(text, &back)) << text;
    EXPECT_EQ(back, t) << text;
  }
}

TEST(Window, LeapDay) {
  Window d = CurrentWindow(Period::kDaily, 0, "UTC", kLongAgo, At("2028-02-29T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(d.start), "2028-02-29T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(d.end), "2028-03-01T00:00:00Z");
  Window m = CurrentWindow(Period::kMonthly, 0, "UTC", kLongAgo, At("2028-02-29T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(m.end), "2028-03-01T00:00:00Z");
}

TEST(Window, WeeklyStartsMondayLocal) {
  // Sunday 2026-11-29 23:30 in Tokyo is Sunday 14:30 UTC; the week began Monday 23rd 00:00 JST.
  Window w = CurrentWindow(Period::kWeekly, 0, "Asia/Tokyo", kLongAgo, At("2026-11-29T14:30:00Z"));
  EXPECT_EQ(FormatRfc3339(w.start), "2026-11-22T15:00:00Z");
  EXPECT_EQ(FormatRfc3339(w.end), "2026-11-29T15:00:00Z");
}

TEST(Window, DaylightSavingChangesInParis) {
  // 2026-03-29: clocks go 02:00 -> 03:00, a 23-hour day. Midnight is +01:00 before, +02:00 after.
  Window spring =
      CurrentWindow(Period::kDaily, 0, "Europe/Paris", kLongAgo, At("2026-03-29T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(spring.start), "2026-03-28T23:00:00Z");
  EXPECT_EQ(FormatRfc3339(spring.end), "2026-03-29T22:00:00Z");
  EXPECT_EQ(spring.end - spring.start, std::chrono::hours(23));
  // 2026-10-25: a 25-hour day.
  Window autumn =
      CurrentWindow(Period::kDaily, 0, "Europe/Paris", kLongAgo, At("2026-10-25T12:00:00Z"));
  EXPECT_EQ(autumn.end - autumn.start, std::chrono::hours(25));
  // Monthly in New York across the November change: starts at EDT midnight, ends at EST midnight.
  Window ny =
      CurrentWindow(Period::kMonthly, 0, "America/New_York", kLongAgo, At("2026-11-15T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(ny.start), "2026-11-01T04:00:00Z");
  EXPECT_EQ(FormatRfc3339(ny.end), "2026-12-01T05:00:00Z");
}

TEST(Window, CustomPeriodsStepFromTheAnchor) {
  Timestamp anchor = At("2026-11-01T08:00:00Z");
  Window w = CurrentWindow(Period::kCustom, 10, "UTC", anchor, At("2026-11-25T00:00:00Z"));
  EXPECT_EQ(FormatRfc3339(w.start), "2026-11-21T08:00:00Z");
  EXPECT_EQ(FormatRfc3339(w.end), "2026-12-01T08:00:00Z");
}

TEST(Window, ResetMidWindowMovesTheStartButNotTheRollover) {
  Timestamp reset = At("2026-11-20T10:00:00Z");
  Window w = CurrentWindow(Period::kMonthly, 0, "UTC", reset, At("2026-11-25T00:00:00Z"));
  EXPECT_EQ(w.start, reset);
  EXPECT_EQ(FormatRfc3339(w.end), "2026-12-01T00:00:00Z");
  Window next = CurrentWindow(Period::kMonthly, 0, "UTC", reset, At("2026-12-02T00:00:00Z"));
  EXPECT_EQ(FormatRfc3339(next.start), "2026-12-01T00:00:00Z")
      << "rollover starts a fresh window by itself";
}

}  // namespace
}  // namespace tollgate
