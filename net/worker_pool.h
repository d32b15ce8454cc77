// Threads for handlers that block (on Redis, Postgres, the upstream, a slow client).
// Grows on demand up to a bound and shrinks again when threads sit idle, so a burst
// of 2,000 streams does not leave 2,000 threads behind.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

#include "net/boundary.h"

namespace tollgate {

class WorkerPool {
 public:
  // Each task runs inside `boundary`: one that throws is logged and counted, and the
  // thread goes on to the next.
  explicit WorkerPool(size_t max_threads, Boundary boundary = Boundary(),
                      std::chrono::milliseconds idle_exit = std::chrono::seconds(30));
  // Runs what is queued, then waits for every thread to end.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `task` on an idle thread, a new one while under the bound, or else the next
  // thread to come free.
  void Submit(std::function<void()> task);
  size_t threads() const;

 private:
  void Run();

  const size_t max_threads_;
  const Boundary boundary_;
  const std::chrono::milliseconds idle_exit_;
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable exited_;
  std::deque<std::function<void()>> tasks_;
  size_t threads_ = 0;
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace tollgate
