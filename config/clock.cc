#include "config/clock.h"

#include <cstdio>

namespace tollgate {

using namespace std::chrono;

Timestamp SystemClock::Now() const { return time_point_cast<microseconds>(system_clock::now()); }

std::string FormatRfc3339(Timestamp t) {
  auto day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  auto micros = hms.subseconds().count();
  int y = static_cast<int>(ymd.year());
  if (y >= 0 && y <= 9999) {  // the common case without printf (the ledger formats each row)
    char out[] = "0000-00-00T00:00:00.000000Z";
    auto put = [&](size_t at, int width, long v) {
      for (int i = width - 1; i >= 0; --i, v /= 10) out[at + i] = static_cast<char>('0' + v % 10);
    };
    put(0, 4, y);
    put(5, 2, static_cast<unsigned>(ymd.month()));
    put(8, 2, static_cast<unsigned>(ymd.day()));
    put(11, 2, hms.hours().count());
    put(14, 2, hms.minutes().count());
    put(17, 2, hms.seconds().count());
    if (micros == 0) return std::string(out, 19) + "Z";
    put(20, 6, micros);
    return std::string(out, sizeof out - 1);
  }
  char buf[48];
  if (micros == 0) {
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<long>(hms.hours().count()),
                  static_cast<long>(hms.minutes().count()),
                  static_cast<long>(hms.seconds().count()));
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%06ldZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<long>(hms.hours().count()),
                  static_cast<long>(hms.minutes().count()),
                  static_cast<long>(hms.seconds().count()), static_cast<long>(micros));
  }
  return buf;
}

bool ParseRfc3339(const std::string& text, Timestamp* out) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3 || consumed != 10)
    return false;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return false;
  Timestamp t = time_point_cast<microseconds>(sys_days{ymd});
  if (text.size() == 10) {
    *out = t;
    return true;
  }
  if (text[10] != 'T' && text[10] != 't' && text[10] != ' ') return false;
  int n = 0;
  if (std::sscanf(text.c_str() + 11, "%2d:%2d:%2d%n", &h, &mi, &s, &n) != 3 || n != 8) return false;
  if (h > 23 || mi > 59 || s > 60) return false;
  size_t pos = 19;
  long micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 6) micros = micros * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return false;
    for (int i = digits; i < 6; ++i) micros *= 10;
  }
  int offset_minutes = 0;
  if (pos >= text.size()) return false;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int oh = 0, om = 0;
    if (std::sscanf(text.c_str() + pos + 1, "%2d:%2d", &oh, &om) != 2 || text.size() != pos + 6)
      return false;
    offset_minutes = (oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != text.size()) return false;
  *out = t + hours{h} + minutes{mi} + seconds{s} + microseconds{micros} - minutes{offset_minutes};
  return true;
}

}  // namespace tollgate
