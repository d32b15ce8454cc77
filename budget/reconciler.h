// A safety net, not part of the money path: compares users' spend counters in Redis
// with the ledger and repairs a difference that is really there. The design keeps them
// equal on its own (counters.h); the reconciler catches what it cannot (an operator's
// FLUSHALL or eviction, a crash in the millisecond between a commit and its apply just
// as Redis lost its data). `tollgate audit` runs the same comparison by hand.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "budget/counters.h"
#include "budget/directory.h"

namespace tollgate {

struct CounterAudit {
  int64_t user_id = 0;
  Window window;              // the user's current window
  std::optional<Money> counter;  // none: Redis holds no counter for it (built when needed)
  Money ledger;               // the rows charged to the window
  bool busy = false;          // rows still arriving or a batch pending: not compared
  bool repaired = false;
  Money difference() const { return counter ? *counter - ledger : Money(); }
};

class Reconciler {
 public:
  Reconciler(PgPool& pool, Redis& redis, Directory& directory, const Clock& clock,
             Metrics& metrics);
  ~Reconciler();

  // Compares the users' current windows (none given: every user with a ledger row in
  // the last 15 minutes). With `repair`, a difference is measured again a second later
  // and corrected (by adding the opposite to the counter) only if it is the same and
  // nothing of the user's moved in between.
  Result<std::vector<CounterAudit>> Audit(const std::vector<int64_t>& users, bool repair);

  // Audits and repairs every `every`, on one instance at a time (a Postgres advisory
  // lock); exports tollgate_counter_drift_nanos and tollgate_counter_repairs_total.
  void Start(std::chrono::seconds every);
  void Stop();

 private:
  struct Reading {
    std::optional<Money> counter;
    Money ledger;
    int64_t rows = 0;
    bool pending = false;
  };
  Result<Reading> Read(int64_t user, const Window& w);
  void Run(std::chrono::seconds every);

  PgPool& pool_;
  Redis& redis_;
  Directory& directory_;
  const Clock& clock_;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tollgate
