// The gate's decision: may this user spend this much now? Reservations are atomic
// across instances (RedisGate); FakeGate serves unit tests.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "budget/directory.h"
#include "budget/window.h"
#include "config/clock.h"
#include "config/money.h"

namespace tollgate {

struct ReserveRequest {
  int64_t user_id = 0;
  std::string request_id;
  Money input_cost;                          // estimated input x input price
  TokenRate output_rate;                     // per output token
  std::optional<int64_t> max_output_tokens;  // what the request asks for
  int64_t default_output_cap = 4096;         // reserved when it asks for nothing
  bool clamp = true;                         // lower an unset cap to what the budget affords
  int64_t min_output_tokens = 256;           // never clamp below this
  bool declined_on_loop = false;             // ReserveNoWait left it to Reserve(): no retry
};

enum class Refusal { kNone, kBudget, kGlobalCap, kUnavailable, kUserDisabled };

struct Admission {
  Refusal refusal = Refusal::kNone;
  std::string message;
  std::string hold_id;  // settle with this; the ledger row releases it
  Money held;
  // The windows the request is charged to (its ledger row names them).
  std::optional<Window> window;
  std::optional<Window> global_window;
  std::optional<int64_t> clamped_max_tokens;  // send this cap upstream (and say so)
  Money limit, spend;                         // for the refusal message
  Timestamp next_reset;

  bool allowed() const { return refusal == Refusal::kNone; }
};

class Gate {
 public:
  virtual ~Gate() = default;
  virtual Admission Reserve(const ReserveRequest& request) = 0;
  // Releases the hold and adds the real cost. Never fails the caller: a settle that
  // cannot reach Redis is retried or rebuilt from the ledger.
  virtual void Settle(int64_t user_id, const std::string& hold_id, Money cost) = 0;

  // Without blocking, for the proxy's event loop (its thread only). Starts the
  // reservation and calls `done` on the loop (possibly at once) with the admission,
  // or with nullopt when Reserve() on a worker must decide (a counter to rebuild, a
  // cap to clamp, a refusal to word, Redis failing). False, `done` never called,
  // when it cannot start without blocking.
  using AdmissionCallback = std::function<void(std::optional<Admission>)>;
  virtual bool ReserveNoWait(const ReserveRequest&, AdmissionCallback) { return false; }
  // Settles without blocking (loop thread only); false: call Settle() on a worker.
  virtual bool SettleNoWait(int64_t, const std::string&, Money) { return false; }
};

// No gate: every request is admitted and nothing is held (gate.enabled = false). The
// benchmark uses it to show what the real gate costs.
class OpenGate final : public Gate {
 public:
  Admission Reserve(const ReserveRequest&) override { return Admission(); }
  void Settle(int64_t, const std::string&, Money) override {}
  bool ReserveNoWait(const ReserveRequest&, AdmissionCallback done) override {
    done(Admission());
    return true;
  }
  bool SettleNoWait(int64_t, const std::string&, Money) override { return true; }
};

// Reservations computed the same way RedisGate's script does, in memory, for unit tests.
class FakeGate final : public Gate {
 public:
  explicit FakeGate(Money limit) : limit_(limit) {}
  Admission Reserve(const ReserveRequest& request) override;
  void Settle(int64_t user_id, const std::string& hold_id, Money cost) override;
  // In memory, so never blocking: the proxy's loop path runs on it in unit tests.
  bool ReserveNoWait(const ReserveRequest& request, AdmissionCallback done) override {
    reserved_without_waiting_.fetch_add(1);
    done(leave_to_worker_ ? std::nullopt : std::optional(Reserve(request)));
    return true;
  }
  bool SettleNoWait(int64_t user_id, const std::string& hold_id, Money cost) override {
    Settle(user_id, hold_id, cost);
    return true;
  }
  // Reservations asked through ReserveNoWait (the proxy's event loop).
  size_t reserved_without_waiting() const { return reserved_without_waiting_.load(); }
  // ReserveNoWait answers nullopt, leaving every decision to Reserve() on a worker (as
  // RedisGate does with a counter to rebuild or a cap to clamp).
  void set_leave_to_worker(bool leave) { leave_to_worker_ = leave; }
  Money spend(int64_t user_id) {
    std::lock_guard lock(mu_);
    return spend_[user_id];
  }
  size_t open_holds() {
    std::lock_guard lock(mu_);
    return holds_.size();
  }

 private:
  Money limit_;
  std::mutex mu_;
  std::map<int64_t, Money> spend_;
  std::map<std::string, std::pair<int64_t, Money>> holds_;
  std::atomic<size_t> reserved_without_waiting_{0};
  std::atomic<bool> leave_to_worker_{false};
};

// Shared by every gate: what a request reserves, and how far an unset cap may be
// clamped. Returns nullopt when not even the minimum fits.
struct ReservationPlan {
  Money amount;
  std::optional<int64_t> clamped_max_tokens;
};
std::optional<ReservationPlan> PlanReservation(const ReserveRequest& r, Money available);

}  // namespace tollgate
