// EventLoop: one thread's epoll loop with a timer heap and a cross-thread post queue.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <vector>

#include "core/fd.h"

namespace pgkeel::core {

using Clock = std::chrono::steady_clock;

// Receives readiness for the one fd it was registered with (an owner with two fds has two
// handlers). `events` is the epoll mask (EPOLLIN, EPOLLOUT...).
class IoHandler {
 public:
  virtual void onIo(std::uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

class EventLoop {
 public:
  using TimerId = std::uint64_t;
  using Task = std::function<void()>;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Level-triggered registration. The handler must outlive the registration.
  void add(int fd, std::uint32_t events, IoHandler* handler);
  void modify(int fd, std::uint32_t events, IoHandler* handler);
  void remove(int fd);

  TimerId addTimer(Clock::duration after, Task task);
  void cancelTimer(TimerId id);

  // Thread-safe: runs `task` on the loop's thread soon.
  void post(Task task);
  // Runs `task` after the current dispatch batch (for destroying handlers safely).
  void defer(Task task) { deferred_.push_back(std::move(task)); }

  // Runs until stop(); stop() is thread-safe.
  void run();
  void stop();

 private:
  struct Timer {
    Clock::time_point due;
    TimerId id;
    bool operator>(const Timer& other) const { return due > other.due; }
  };
  int nextTimeoutMs();
  void runTimers();
  void runPosted();
  void runDeferred();

  Fd epoll_;
  Fd wakeFd_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::unordered_map<TimerId, Task> timerTasks_;
  TimerId nextTimer_ = 1;
  std::vector<Task> deferred_;
  std::mutex postMutex_;
  std::vector<Task> posted_;
  bool stopping_ = false;  // guarded by postMutex_ for writers from other threads
};

}  // namespace pgkeel::core
