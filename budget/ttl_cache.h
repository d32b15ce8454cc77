// A small time-bounded cache with single-flight loading: when an entry is missing or
// older than `ttl`, one caller loads it; concurrent callers for the same key wait for
// that load when there is no value yet, and get the expired value while it reloads,
// instead of stampeding the database. Failed loads are not cached; when
// a reload fails as Unavailable (the database is briefly away), the last good value is
// served for up to `max_stale` so traffic goes on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "config/clock.h"
#include "config/status.h"

namespace tollgate {

template <typename Key, typename Value>
class TtlCache {
 public:
  TtlCache(const Clock& clock, std::chrono::milliseconds ttl,
           std::chrono::milliseconds max_stale = std::chrono::minutes(10),
           size_t max_entries = 200000)
      : clock_(clock), ttl_(ttl), max_stale_(max_stale), max_entries_(max_entries) {}

  // `fresh(value, now)` may veto a cached value early (e.g. a window that ended).
  Result<Value> Get(const Key& key, const std::function<Result<Value>()>& load,
                    const std::function<bool(const Value&, Timestamp)>& fresh = nullptr) {
    std::unique_lock lock(mu_);
    while (true) {
      Timestamp now = clock_.Now();
      auto it = entries_.find(key);
      if (it != entries_.end() && Usable(it->second, now, fresh)) return it->second.value;
      if (it == entries_.end() || !it->second.loading) break;
      loaded_.wait(lock);  // someone else is loading this key
    }
    if (entries_.size() >= max_entries_) entries_.clear();  // bound memory
    entries_[key].loading = true;
    lock.unlock();
    Result<Value> loaded = load();
    lock.lock();
    Entry& e = entries_[key];
    e.loading = false;
    if (loaded.ok()) {
      e.value = *loaded;
      e.has_value = true;
      e.loaded_at = clock_.Now();
    }
    loaded_.notify_all();
    if (!loaded.ok() && loaded.status().code() == Status::Code::kUnavailable && e.has_value &&
        clock_.Now() - e.loaded_at < max_stale_)
      return e.value;
    return loaded;
  }

  // Without loading or waiting (an event loop's thread): the value Get would return
  // at once, or nullopt. `stale_ok` also takes an expired value.
  std::optional<Value> Peek(const Key& key,
                            const std::function<bool(const Value&, Timestamp)>& fresh = nullptr,
                            bool stale_ok = false) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || !it->second.has_value) return std::nullopt;
    if (stale_ok || Usable(it->second, clock_.Now(), fresh)) return it->second.value;
    return std::nullopt;
  }

  void Erase(const Key& key) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && !it->second.loading) entries_.erase(it);
  }

 private:
  struct Entry {
    Value value{};
    bool has_value = false;
    bool loading = false;
    Timestamp loaded_at;
  };
  // Fresh, or being reloaded by another caller: an expired value goes on serving
  // until the reload lands, so the key's traffic never queues behind it.
  bool Usable(const Entry& e, Timestamp now,
              const std::function<bool(const Value&, Timestamp)>& fresh) const {
    if (!e.has_value || (fresh && !fresh(e.value, now))) return false;
    auto age = now - e.loaded_at;
    return age < ttl_ || (e.loading && age < max_stale_);
  }

  const Clock& clock_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::milliseconds max_stale_;
  const size_t max_entries_;
  std::mutex mu_;
  std::condition_variable loaded_;
  std::unordered_map<Key, Entry> entries_;
};

}  // namespace tollgate
