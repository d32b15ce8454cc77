// The clock is injected everywhere time matters (windows, prices, expiry).
#pragma once

#include <chrono>
#include <string>

namespace tollgate {

using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  Timestamp Now() const override;
};

// A clock tests set by hand.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp t) : now_(t) {}
  Timestamp Now() const override { return now_; }
  void Set(Timestamp t) { now_ = t; }
  void Advance(std::chrono::microseconds d) { now_ += d; }

 private:
  Timestamp now_;
};

// RFC 3339 in UTC with a trailing Z ("2026-11-28T02:30:59Z", micros when non-zero).
std::string FormatRfc3339(Timestamp t);
// Accepts "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)". Returns false on error.
bool ParseRfc3339(const std::string& text, Timestamp* out);

}  // namespace tollgate
