// What code running on an event loop may ask of it. A handler that answers on the
// loop, and what it waits on (Redis, the upstream), run on the loop's one thread and
// never block: they watch their sockets here and are called back when those are ready.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace tollgate {

class EventLoop {
 public:
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // `events`: the epoll events that are ready (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).
    virtual void OnEvents(uint32_t events) = 0;
  };
  virtual ~EventLoop() = default;

  // Loop thread only. Starts or changes watching `fd` (level-triggered). A watcher may
  // still be called for events of the current batch after Unwatch, so free it through
  // Post(), which runs after the batch.
  virtual void Watch(int fd, uint32_t events, Watcher* watcher) = 0;
  virtual void Unwatch(int fd) = 0;
  // Any thread: runs `task` on the loop thread after the current batch of events.
  virtual void Post(std::function<void()> task) = 0;
  // Loop thread only: `tick` runs about once a second (timeouts) while the loop runs.
  virtual void EverySecond(std::function<void()> tick) = 0;
  // Loop thread only: `task` runs once, after a batch of events, `delay` or up to a
  // millisecond more from now; dropped if the loop stops first.
  virtual void RunAfter(std::chrono::milliseconds delay, std::function<void()> task) = 0;
  virtual bool InLoopThread() const = 0;
};

}  // namespace tollgate
