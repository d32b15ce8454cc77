#include "budget/window.h"

#include <date/tz.h>

namespace tollgate {
namespace {

using namespace std::chrono;

// The zone by IANA name from the system's zone files (date's tz.h built with
// USE_OS_TZDB): immutable once loaded and safe from any thread, unlike glibc's
// localtime/mktime, which read the process-wide TZ variable. Null (taken as UTC) for a
// name the database does not know, or when there is no database at all.
const date::time_zone* Zone(const std::string& timezone) {
  try {
    return date::locate_zone(timezone.empty() ? "UTC" : timezone);
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace

sys_days LocalDate(const std::string& timezone, Timestamp t) {
  auto at = floor<seconds>(t);
  const date::time_zone* zone = Zone(timezone);
  auto local = zone ? zone->to_local(at).time_since_epoch() : at.time_since_epoch();
  return sys_days{floor<days>(local)};
}

Timestamp LocalMidnight(const std::string& timezone, sys_days d) {
  const date::time_zone* zone = Zone(timezone);
  if (zone == nullptr) return d;
  // A midnight that a DST jump skips is the jump itself (the date's first instant); a
  // midnight that happens twice is the earlier one.
  date::local_seconds midnight{d.time_since_epoch()};
  return time_point_cast<microseconds>(zone->to_sys(midnight, date::choose::earliest));
}

Window CurrentWindow(Period period, int custom_days, const std::string& timezone, Timestamp anchor,
                     Timestamp now) {
  Window w;
  if (period == Period::kCustom) {
    microseconds length = days{std::max(custom_days, 1)};
    auto steps = now < anchor ? 0 : (now - anchor) / length;
    w.start = anchor + steps * length;
    w.end = w.start + length;
    return w;
  }
  sys_days today = LocalDate(timezone, now);
  sys_days first = today, next = today + days{1};
  if (period == Period::kWeekly) {
    weekday wd{today};
    first = today - (wd - Monday);
    next = first + days{7};
  } else if (period == Period::kMonthly) {
    year_month_day ymd{today};
    first = sys_days{ymd.year() / ymd.month() / 1};
    next = sys_days{(ymd.year() / ymd.month() + months{1}) / 1};
  }
  w.start = std::max(LocalMidnight(timezone, first), anchor);
  w.end = LocalMidnight(timezone, next);
  return w;
}

}  // namespace tollgate
