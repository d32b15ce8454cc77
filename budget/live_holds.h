// The holds this instance has placed in Redis and not yet seen released: a request's
// reservation from before it is sent until its ledger row is applied (or it is refused),
// a lease's until its requests' rows and its unused part are released. Redis restarted
// empty loses them all while their requests are still running; RedisCounters then
// places them again in the new dataset (RepublishHolds) before any counter is built in
// it, so no instance admits against room that is already promised.
//
// An entry another instance releases (its orphan pass, a spool replayed elsewhere) stays
// here until its expiry: placed again, it holds more than needed, never less, and lapses
// in Redis as any hold. Thread-safe: the event loop and the workers add, the ledger's
// thread releases, the epoch watch reads.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/money.h"

namespace tollgate {

class LiveHolds {
 public:
  struct Hold {
    int64_t account = 0;  // 0: the global cap
    std::string id;       // the field of the account's hold-amt hash
    Money amount;         // still held
    int64_t expires_ms = 0;
  };

  // `amount` held under `id` until `expires_ms`, unless `id` is held already: as in
  // Redis, where the gate script places a hold id once.
  void Add(int64_t account, const std::string& id, Money amount, int64_t expires_ms);
  // Up to `amount` of it released (as the scripts' release).
  void Release(int64_t account, const std::string& id, Money amount);
  // The holds not yet expired at `now_ms`; the expired ones are forgotten.
  std::vector<Hold> Live(int64_t now_ms);
  // Forgets the holds expired at `now_ms` (those whose rows another instance applied).
  void Prune(int64_t now_ms);
  size_t size() const;

 private:
  static std::string Key(int64_t account, const std::string& id);
  mutable std::mutex mu_;
  std::unordered_map<std::string, Hold> holds_;
};

}  // namespace tollgate
