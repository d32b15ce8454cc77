// Budget windows. Calendar periods roll over at local midnight / Monday / the 1st
// in the user's IANA time zone; custom periods step N days from the anchor (creation
// or last reset). Spend counts from the later of the calendar start and the anchor.
#pragma once

#include <string>

#include "config/clock.h"
#include "config/config.h"

namespace tollgate {

struct Window {
  Timestamp start;  // spend counts from here (inclusive)
  Timestamp end;    // next reset (exclusive)
};

Window CurrentWindow(Period period, int custom_days, const std::string& timezone, Timestamp anchor,
                     Timestamp now);

// The UTC instant of local midnight starting the civil date `day` in `timezone`
// (the first instant of that date when a DST jump skips midnight).
Timestamp LocalMidnight(const std::string& timezone, std::chrono::sys_days day);
// The civil date at `t` in `timezone`.
std::chrono::sys_days LocalDate(const std::string& timezone, Timestamp t);

}  // namespace tollgate
