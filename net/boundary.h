// Where the event loop or a worker thread calls into code that may throw (a handler, a
// loop callback, a posted task, a renderer, a stream's transform): the one place an
// exception stops. It becomes one log line and a count (tollgate_internal_errors_total),
// and the caller learns that the call failed, to answer 500 or cut a stream. Never the
// end of the process. Free when nothing throws.
#pragma once

#include <exception>
#include <string_view>
#include <utility>

#include "net/metrics.h"

namespace tollgate {

class Boundary {
 public:
  // `metrics`: where failures are counted; none (tools, tests) only logs them.
  explicit Boundary(Metrics* metrics = nullptr) : metrics_(metrics) {}

  // Runs `body`: true when it returned, false when it threw (then logged and counted).
  template <typename F>
  bool Run(std::string_view where, F&& body) const noexcept {
    try {
      std::forward<F>(body)();
      return true;
    } catch (const std::exception& e) {
      Report(where, e.what());
    } catch (...) {
      Report(where, "an exception of unknown type");
    }
    return false;
  }

 private:
  void Report(std::string_view where, std::string_view what) const noexcept;
  Metrics* metrics_;
};

}  // namespace tollgate
