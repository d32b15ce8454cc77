// The Postgres seam: a bounded pool of libpqxx connections, safe to share between
// threads. Every libpqxx exception is caught here and turned into a Status.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "config/clock.h"
#include "config/status.h"

namespace tollgate {

class PgPool {
 public:
  PgPool(std::string url, int max_connections);
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // Runs `fn` with a pooled connection. A broken connection is dropped; a unique
  // violation becomes kConflict, a lost connection kUnavailable, the rest kInternal.
  Status Run(const std::function<void(pqxx::connection&)>& fn);

  template <typename T>
  Result<T> Get(const std::function<T(pqxx::connection&)>& fn) {
    std::optional<T> value;
    Status s = Run([&](pqxx::connection& c) { value = fn(c); });
    if (!s.ok()) return s;
    return std::move(*value);
  }

 private:
  std::unique_ptr<pqxx::connection> Acquire();
  void Release(std::unique_ptr<pqxx::connection> c);

  const std::string url_;
  const int max_connections_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 0;
};

// Timestamps cross into SQL as integer microseconds since the epoch, so nothing
// depends on the session's time zone or on floating point.
inline std::string SqlTime(const std::string& column) {
  return "(extract(epoch from " + column + ") * 1000000)::bigint";
}
inline std::string SqlFromMicros(int param) {
  return "(timestamptz 'epoch' + $" + std::to_string(param) +
         "::bigint * interval '1 microsecond')";
}
inline int64_t Micros(Timestamp t) { return t.time_since_epoch().count(); }
// Milliseconds since the epoch: hold expiries in Redis.
inline int64_t Millis(Timestamp t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline Timestamp FromMicros(int64_t m) { return Timestamp(std::chrono::microseconds(m)); }

}  // namespace tollgate
