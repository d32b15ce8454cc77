#include "budget/pg_gate.h"

#include "budget/counters.h"

namespace tollgate {

Admission PgGate::Reserve(const ReserveRequest& request) {
  Admission a;
  auto budget = BudgetForAdmission(settings_, request.user_id, &a);
  if (!budget) return a;
  const BudgetSettings& s = budget->settings;
  const Window& w = budget->window;
  Timestamp now = clock_.Now();
  std::string hold = std::string(kHoldPrefix) + request.request_id;
  Status st = pool_.Run([&](pqxx::connection& c) {
    pqxx::work t(c);
    t.exec_params("SELECT 1 FROM budget_settings WHERE user_id = $1 FOR UPDATE", request.user_id);
    a.spend = Money::FromNanos(
        t.exec_params1("SELECT coalesce(sum(cost_nanos), 0)::bigint FROM usage_ledger WHERE " +
                           WindowRowsSql(request.user_id),
                       request.user_id, Micros(w.start), Micros(w.end))[0]
            .as<int64_t>());
    Money held = Money::FromNanos(
        t.exec_params1("SELECT coalesce(sum(amount_nanos), 0)::bigint FROM budget_holds"
                       " WHERE user_id = $1 AND expires_at > " +
                           SqlFromMicros(2),
                       request.user_id, Micros(now))[0]
            .as<int64_t>());
    Money available = s.enforcement == Enforcement::kHard ? s.limit - a.spend - held
                                                          : Money::FromNanos(int64_t{1} << 62);
    auto plan = PlanReservation(request, available);
    if (!plan) {
      a.refusal = Refusal::kBudget;
      return;
    }
    t.exec_params(
        "INSERT INTO budget_holds (hold_id, user_id, amount_nanos, expires_at) VALUES ($1, $2, "
        "$3, " +
            SqlFromMicros(4) + ")",
        hold, request.user_id, plan->amount.nanos(),
        Micros(now + std::chrono::duration_cast<std::chrono::microseconds>(hold_ttl_)));
    t.exec_params(
        "DELETE FROM budget_holds WHERE user_id = $1 AND expires_at <= " + SqlFromMicros(2),
        request.user_id, Micros(now));
    t.commit();
    a.hold_id = hold;
    a.held = plan->amount;
    a.window = w;
    a.clamped_max_tokens = plan->clamped_max_tokens;
  });
  if (!st.ok()) {
    a.refusal = Refusal::kUnavailable;
    a.message = st.message();
  }
  return a;
}

void PgGate::Settle(int64_t, const std::string& hold_id, Money cost) {
  pool_.Run([&](pqxx::connection& c) {
    pqxx::work t(c);
    t.exec_params("UPDATE budget_holds SET amount_nanos = $2, expires_at = " + SqlFromMicros(3) +
                      " WHERE hold_id = $1",
                  hold_id, cost.nanos(), Micros(clock_.Now() + std::chrono::minutes(2)));
    t.commit();
  });
}

Admission FallbackGate::Reserve(const ReserveRequest& request) {
  int64_t now = Micros(clock_.Now());
  if (now >= skip_redis_until_.load()) {
    Admission a = primary_.Reserve(request);
    if (a.refusal != Refusal::kUnavailable || redis_.Command({"PING"}).ok()) return a;
    skip_redis_until_.store(now + 1'000'000);  // do not pay Redis's timeout on every request
  }
  if (!fallback_) {
    Admission a;
    a.refusal = Refusal::kUnavailable;
    a.message = "Redis is unreachable and gate.redis_down is fail_closed";
    return a;
  }
  return fallback_->Reserve(request);
}

void FallbackGate::Settle(int64_t user_id, const std::string& hold_id, Money cost) {
  if (hold_id.rfind(PgGate::kHoldPrefix, 0) == 0) {
    if (fallback_) fallback_->Settle(user_id, hold_id, cost);
    return;
  }
  primary_.Settle(user_id, hold_id, cost);
}

bool FallbackGate::ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) {
  if (Micros(clock_.Now()) < skip_redis_until_.load()) return false;
  // Redis failing gives nullopt: Reserve() then finds the fallback.
  return primary_.ReserveNoWait(request, std::move(done));
}

bool FallbackGate::SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) {
  if (hold_id.rfind(PgGate::kHoldPrefix, 0) == 0) return false;
  return primary_.SettleNoWait(user_id, hold_id, cost);
}

}  // namespace tollgate
