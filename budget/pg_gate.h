// The gate while Redis is unreachable. PgGate does the same reservation in SQL: the
// user's settings row is locked (FOR UPDATE) so reservations of one user happen one
// at a time across instances; spend is the ledger since the window start (indexed by
// user and time); live holds are rows in budget_holds. A settled hold keeps the real
// cost for two minutes, until the ledger row is surely written: counted twice for a
// while, never missed.
//
// FallbackGate puts RedisGate first and PgGate (or nothing: fail closed) second,
// skips Redis for a second after it failed, and when Redis answers again deletes the
// spend counters of the users served meanwhile, so they are rebuilt from the ledger.
#pragma once

#include <atomic>
#include <mutex>
#include <set>

#include "budget/pg_pool.h"
#include "budget/redis_gate.h"

namespace tollgate {

class PgGate final : public Gate {
 public:
  PgGate(PgPool& pool, SettingsCache& settings, const Clock& clock, std::chrono::seconds hold_ttl)
      : pool_(pool), settings_(settings), clock_(clock), hold_ttl_(hold_ttl) {}
  Admission Reserve(const ReserveRequest& request) override;
  void Settle(int64_t user_id, const std::string& hold_id, Money cost) override;
  static constexpr const char* kHoldPrefix = "pg/";

 private:
  PgPool& pool_;
  SettingsCache& settings_;
  const Clock& clock_;
  const std::chrono::seconds hold_ttl_;
};

class FallbackGate final : public Gate {
 public:
  // `fallback` may be null: Redis down means refusing with Unavailable (fail closed).
  FallbackGate(RedisGate& primary, Gate* fallback, Redis& redis, SettingsCache& settings,
               const Clock& clock)
      : primary_(primary), fallback_(fallback), redis_(redis), settings_(settings), clock_(clock) {}
  Admission Reserve(const ReserveRequest& request) override;
  void Settle(int64_t user_id, const std::string& hold_id, Money cost) override;
  // Redis's, while Redis is in use and no user's counter waits to be forgotten.
  bool ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) override;
  bool SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) override;

 private:
  // Deletes the Redis counters of users served by the fallback; false if Redis failed.
  bool ForgetCountersOfFallbackUsers();

  RedisGate& primary_;
  Gate* const fallback_;
  Redis& redis_;
  SettingsCache& settings_;
  const Clock& clock_;
  std::atomic<int64_t> skip_redis_until_{0};  // micros since epoch
  std::mutex mu_;
  std::set<int64_t> served_by_fallback_;
};

}  // namespace tollgate
