#include "net/worker_pool.h"

#include <condition_variable>
#include <thread>

namespace tollgate {

WorkerPool::WorkerPool(size_t max_threads, Boundary boundary, std::chrono::milliseconds idle_exit)
    : max_threads_(max_threads > 0 ? max_threads : 1), boundary_(boundary), idle_exit_(idle_exit) {}

WorkerPool::~WorkerPool() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  work_.notify_all();
  exited_.wait(lock, [&] { return threads_ == 0; });
}

void WorkerPool::Submit(std::function<void()> task) {
  bool spawn = false;
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
    if (tasks_.size() > idle_ && threads_ < max_threads_) {
      ++threads_;
      spawn = true;
    }
  }
  // Both outside the lock: a thread woken while the lock is held would only wait for it.
  if (spawn) {
    std::thread([this] { Run(); }).detach();
  } else {
    work_.notify_one();
  }
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(mu_);
  return threads_;
}

void WorkerPool::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_;
    bool woke = work_.wait_for(lock, idle_exit_, [&] { return stopping_ || !tasks_.empty(); });
    --idle_;
    if (tasks_.empty() && (stopping_ || !woke)) break;
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    boundary_.Run("a worker task", task);
    task = nullptr;  // what the task captured goes before the lock is taken again
    lock.lock();
  }
  // Told while the lock is held, so the destructor sees the count at 0 only after this
  // thread's last unlock, and nothing after it touches the pool. (Not
  // notify_all_at_thread_exit: it unlocks before it notifies, so the pool could be gone
  // by the time it does, which ThreadSanitizer reported.)
  --threads_;
  exited_.notify_all();
}

}  // namespace tollgate
