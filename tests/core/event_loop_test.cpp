// Tests for the event loop: timers fire in order and can be cancelled; posts cross threads.
#include "core/event_loop.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace pgkeel::core {
namespace {

using namespace std::chrono_literals;

// Timers run by due time, a cancelled one never runs, and stop() ends run().
TEST(EventLoop, RunsTimersInOrderAndSkipsCancelled) {
  EventLoop loop;
  std::vector<int> order;
  loop.addTimer(20ms, [&] { order.push_back(2); });
  loop.addTimer(5ms, [&] { order.push_back(1); });
  auto cancelled = loop.addTimer(10ms, [&] { order.push_back(99); });
  loop.cancelTimer(cancelled);
  loop.addTimer(30ms, [&] { loop.stop(); });
  loop.run();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A task posted from another thread runs on the loop's thread.
TEST(EventLoop, PostRunsOnLoopThread) {
  EventLoop loop;
  std::thread::id ranOn;
  std::thread loopThread([&] { loop.run(); });
  loop.post([&] {
    ranOn = std::this_thread::get_id();
    loop.stop();
  });
  const auto loopId = loopThread.get_id();
  loopThread.join();
  EXPECT_EQ(ranOn, loopId);
}

// Deferred tasks run after the current batch, before the loop sleeps again.
TEST(EventLoop, DeferredTasksRun) {
  EventLoop loop;
  bool ran = false;
  loop.addTimer(1ms, [&] {
    loop.defer([&] {
      ran = true;
      loop.stop();
    });
  });
  loop.run();
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace pgkeel::core
