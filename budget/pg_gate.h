// The gate while Redis is unreachable. PgGate does the same reservation in SQL: the
// user's settings row is locked (FOR UPDATE) so reservations of one user happen one
// at a time across instances; spend is the ledger since the window start (indexed by
// user and time); live holds are rows in budget_holds. A settled hold keeps the real
// cost for two minutes, until the ledger row is surely written: counted twice for a
// while, never missed.
//
// FallbackGate puts RedisGate first and PgGate (or nothing: fail closed) second, and
// skips Redis for a second after it failed. What is spent meanwhile reaches the Redis
// counters as the ledger applies its rows (budget/counters.h), once Redis answers.
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
  // `redis` is asked (PING) whether it is really away before the fallback decides: a
  // failure that is not Redis's (Postgres away while a counter is built) refuses, as
  // admitting through Postgres while other instances admit through Redis would let a
  // user spend their budget twice.
  FallbackGate(RedisGate& primary, Gate* fallback, Redis& redis, const Clock& clock)
      : primary_(primary), fallback_(fallback), redis_(redis), clock_(clock) {}
  Admission Reserve(const ReserveRequest& request) override;
  void Settle(int64_t user_id, const std::string& hold_id, Money cost) override;
  // Redis's, while Redis is in use.
  bool ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) override;
  bool SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) override;

 private:
  RedisGate& primary_;
  Gate* const fallback_;
  Redis& redis_;
  const Clock& clock_;
  std::atomic<int64_t> skip_redis_until_{0};  // micros since epoch
};

}  // namespace tollgate
