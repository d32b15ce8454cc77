#include "budget/window.h"

#include <time.h>

#include <cstdlib>
#include <mutex>

namespace tollgate {
namespace {

using namespace std::chrono;

// glibc's zone database is driven by the TZ variable, which is process-wide: every
// conversion holds this lock, sets TZ and converts. Callers cache windows, so this is
// off the hot path.
std::mutex g_tz_mu;

void UseZoneLocked(const std::string& timezone) {
  std::string value = ":" + (timezone.empty() ? std::string("UTC") : timezone);
  setenv("TZ", value.c_str(), 1);
  tzset();
}

}  // namespace

sys_days LocalDate(const std::string& timezone, Timestamp t) {
  std::lock_guard lock(g_tz_mu);
  UseZoneLocked(timezone);
  time_t secs = static_cast<time_t>(floor<seconds>(t).time_since_epoch().count());
  struct tm local {};
  localtime_r(&secs, &local);
  return sys_days{year{local.tm_year + 1900} / month{static_cast<unsigned>(local.tm_mon + 1)} /
                  day{static_cast<unsigned>(local.tm_mday)}};
}

Timestamp LocalMidnight(const std::string& timezone, sys_days d) {
  year_month_day ymd{d};
  std::lock_guard lock(g_tz_mu);
  UseZoneLocked(timezone);
  struct tm local {};
  local.tm_year = static_cast<int>(ymd.year()) - 1900;
  local.tm_mon = static_cast<int>(static_cast<unsigned>(ymd.month())) - 1;
  local.tm_mday = static_cast<int>(static_cast<unsigned>(ymd.day()));
  local.tm_isdst = -1;  // let the zone decide
  time_t t = mktime(&local);
  // A gap at midnight makes mktime move forward past it; step back to the first
  // instant that is on the wanted date.
  struct tm check {};
  localtime_r(&t, &check);
  if (check.tm_mday != local.tm_mday && check.tm_hour != 0) t -= 3600;
  return time_point_cast<microseconds>(sys_seconds{seconds{t}});
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
