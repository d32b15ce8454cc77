#include "budget/window.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>
#include <vector>

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

// Havana skips midnight when DST starts (00:00 -> 01:00) and has it twice when DST ends
// (01:00 -> 00:00); Santiago skips it too. A day starts at its first instant, and a
// doubled midnight counts from the earlier one.
TEST(Window, MidnightsThatDaylightSavingSkipsOrRepeats) {
  Window skipped =
      CurrentWindow(Period::kDaily, 0, "America/Havana", kLongAgo, At("2026-03-08T17:00:00Z"));
  EXPECT_EQ(FormatRfc3339(skipped.start), "2026-03-08T05:00:00Z");  // 01:00 CDT
  EXPECT_EQ(FormatRfc3339(skipped.end), "2026-03-09T04:00:00Z");
  Window doubled =
      CurrentWindow(Period::kDaily, 0, "America/Havana", kLongAgo, At("2026-11-01T17:00:00Z"));
  EXPECT_EQ(FormatRfc3339(doubled.start), "2026-11-01T04:00:00Z");  // the first 00:00, CDT
  EXPECT_EQ(doubled.end - doubled.start, std::chrono::hours(25));
  Window santiago =
      CurrentWindow(Period::kMonthly, 0, "America/Santiago", kLongAgo, At("2026-09-20T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(santiago.start), "2026-09-01T04:00:00Z");
  EXPECT_EQ(FormatRfc3339(santiago.end), "2026-10-01T03:00:00Z");
  Window week =
      CurrentWindow(Period::kWeekly, 0, "America/Santiago", kLongAgo, At("2026-09-06T12:00:00Z"));
  EXPECT_EQ(FormatRfc3339(week.end), "2026-09-07T03:00:00Z");  // Monday 00:00 -03
}

TEST(Window, ZonesOffByHalfHours) {
  Window kolkata =
      CurrentWindow(Period::kDaily, 0, "Asia/Kolkata", kLongAgo, At("2026-06-10T20:00:00Z"));
  EXPECT_EQ(FormatRfc3339(kolkata.start), "2026-06-10T18:30:00Z");  // 00:00 on the 11th, +05:30
  EXPECT_EQ(FormatRfc3339(kolkata.end), "2026-06-11T18:30:00Z");
  // Lord Howe moves its clocks by half an hour: 02:00 +11 -> 01:30 +10:30 on 2026-04-05.
  Window howe =
      CurrentWindow(Period::kDaily, 0, "Australia/Lord_Howe", kLongAgo, At("2026-04-05T00:00:00Z"));
  EXPECT_EQ(FormatRfc3339(howe.start), "2026-04-04T13:00:00Z");
  EXPECT_EQ(howe.end - howe.start, std::chrono::minutes(24 * 60 + 30));
}

TEST(Window, AnUnknownZoneCountsAsUtc) {
  Window w =
      CurrentWindow(Period::kDaily, 0, "Mars/Olympus_Mons", kLongAgo, At("2026-06-10T20:00:00Z"));
  EXPECT_EQ(FormatRfc3339(w.start), "2026-06-10T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(w.end), "2026-06-11T00:00:00Z");
}

// libpq and OpenSSL read the environment on other threads: setting TZ (as glibc's
// localtime/mktime need) raced with them. Windows are computed without touching it.
TEST(Window, ComputingAWindowLeavesTheEnvironmentAlone) {
  ASSERT_EQ(setenv("TZ", "sentinel", 1), 0);
  CurrentWindow(Period::kMonthly, 0, "Asia/Tokyo", kLongAgo, At("2026-11-29T14:30:00Z"));
  CurrentWindow(Period::kDaily, 0, "Europe/Paris", kLongAgo, At("2026-03-29T12:00:00Z"));
  const char* tz = std::getenv("TZ");
  ASSERT_NE(tz, nullptr);
  EXPECT_STREQ(tz, "sentinel");
  unsetenv("TZ");
}

// Many threads, many zones, at once: each gets the answer one thread alone gets (run it
// under ThreadSanitizer to see that nothing is shared unguarded).
TEST(Window, ManyThreadsInManyZonesAtOnceAgreeWithOneThread) {
  const std::vector<std::string> zones = {"UTC",          "Europe/Paris",       "America/New_York",
                                          "Asia/Tokyo",   "America/Havana",     "Asia/Kolkata",
                                          "Pacific/Apia", "Australia/Lord_Howe"};
  const Period periods[] = {Period::kDaily, Period::kWeekly, Period::kMonthly};
  std::vector<Timestamp> instants;
  for (int day = 0; day < 400; day += 7)
    instants.push_back(At("2026-01-01T00:00:00Z") + std::chrono::hours(24 * day + day % 24));
  auto all = [&] {
    std::vector<Window> out;
    for (const std::string& zone : zones)
      for (Period p : periods)
        for (Timestamp t : instants) out.push_back(CurrentWindow(p, 0, zone, kLongAgo, t));
    return out;
  };
  const std::vector<Window> expected = all();
  std::vector<std::vector<Window>> got(8);
  std::vector<std::thread> threads;
  for (auto& slot : got) threads.emplace_back([&slot, &all] { slot = all(); });
  for (auto& t : threads) t.join();
  for (const auto& windows : got) {
    ASSERT_EQ(windows.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(windows[i].start, expected[i].start) << i;
      EXPECT_EQ(windows[i].end, expected[i].end) << i;
    }
  }
}

}  // namespace
}  // namespace tollgate
