#include "budget/gate.h"

namespace tollgate {

std::optional<ReservationPlan> PlanReservation(const ReserveRequest& r, Money available) {
  // The input cost and the output's, summed exactly; nullopt past Money::kMaxNanos.
  auto cost = [&](int64_t output_tokens) -> std::optional<Money> {
    if (r.input_cost < Money() || r.input_cost.nanos() > Money::kMaxNanos) return std::nullopt;
    CostAccumulator c;
    c.Add(output_tokens, r.output_rate);
    auto output = c.Total();
    if (!output || output->nanos() > Money::kMaxNanos - r.input_cost.nanos()) return std::nullopt;
    return r.input_cost + *output;
  };
  int64_t cap = r.max_output_tokens.value_or(r.default_output_cap);
  if (cap < 0) return std::nullopt;
  auto full = cost(cap);
  if (full && *full <= available) return ReservationPlan{*full, std::nullopt};
  if (r.max_output_tokens || !r.clamp || r.output_rate.nanos_per_million() == 0)
    return std::nullopt;
  // The request named no cap: find the largest one the budget affords.
  Money left = available - r.input_cost;
  if (left < Money() || !cost(0)) return std::nullopt;
  __int128 tokens =
      static_cast<__int128>(left.nanos()) * 1000000 / r.output_rate.nanos_per_million();
  int64_t affordable = tokens > cap ? cap : static_cast<int64_t>(tokens);
  while (affordable > 0 && !(cost(affordable) && *cost(affordable) <= available)) --affordable;
  if (affordable < r.min_output_tokens) return std::nullopt;
  return ReservationPlan{*cost(affordable), affordable};
}

Admission FakeGate::Reserve(const ReserveRequest& request) {
  std::lock_guard lock(mu_);
  Money held;
  for (const auto& [id, hold] : holds_) {
    if (hold.first == request.user_id) held += hold.second;
  }
  Admission a;
  a.limit = limit_;
  a.spend = spend_[request.user_id];
  auto plan = PlanReservation(request, limit_ - a.spend - held);
  if (!plan) {
    a.refusal = Refusal::kBudget;
    a.message = "budget exhausted";
    return a;
  }
  a.hold_id = request.request_id;
  a.held = plan->amount;
  a.clamped_max_tokens = plan->clamped_max_tokens;
  holds_[a.hold_id] = {request.user_id, plan->amount};
  return a;
}

void FakeGate::Settle(int64_t user_id, const std::string& hold_id, Money cost) {
  std::lock_guard lock(mu_);
  holds_.erase(hold_id);
  spend_[user_id] += cost;
}

}  // namespace tollgate
