// The boundary: an exception stops there, is counted, and the thread goes on.
#include "net/boundary.h"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>

#include "net/worker_pool.h"

namespace tollgate {
namespace {

TEST(Boundary, AnExceptionIsCountedAndReportedAsAFailedCall) {
  Metrics metrics;
  Boundary boundary(&metrics);
  bool ran = false;
  EXPECT_TRUE(boundary.Run("a test", [&] { ran = true; }));
  EXPECT_TRUE(ran);
  EXPECT_EQ(metrics.Get(Counter::kInternalErrors), 0u);
  EXPECT_FALSE(boundary.Run("a test", [] { throw std::runtime_error("last read: '\xff'"); }));
  EXPECT_FALSE(boundary.Run("a test", [] { throw 42; }));  // not even a std::exception
  EXPECT_EQ(metrics.Get(Counter::kInternalErrors), 2u);
  EXPECT_NE(metrics.RenderPrometheus().find("tollgate_internal_errors_total 2\n"),
            std::string::npos);
}

TEST(Boundary, AWorkerTaskThatThrowsLeavesThePoolWorking) {
  Metrics metrics;
  std::promise<void> next_ran;
  {
    WorkerPool pool(1, Boundary(&metrics));
    pool.Submit([] { throw std::logic_error("a bug"); });
    pool.Submit([&] { next_ran.set_value(); });  // the same, only thread
    next_ran.get_future().get();
  }
  EXPECT_EQ(metrics.Get(Counter::kInternalErrors), 1u);
}

}  // namespace
}  // namespace tollgate
