// EventLoop: one thread's epoll loop with a timer heap and a cross-thread post queue.
#include "core/event_loop.h"

#include <sys/eventfd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <system_error>

namespace pgkeel::core {
namespace {

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Marks the wake eventfd in epoll_data; handlers are never at this address.
IoHandler* const kWakeMarker = nullptr;

}  // namespace

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wakeFd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!epoll_ || !wakeFd_) fail("epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = kWakeMarker;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeFd_.get(), &ev) != 0) fail("epoll_ctl");
}

void EventLoop::add(int fd, std::uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  // A failure here means a bad fd from our own code: a broken invariant.
  [[maybe_unused]] int rc = ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  assert(rc == 0);
}

void EventLoop::modify(int fd, std::uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  [[maybe_unused]] int rc = ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
  assert(rc == 0);
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::addTimer(Clock::duration after, Task task) {
  const TimerId id = nextTimer_++;
  timers_.push({Clock::now() + after, id});
  timerTasks_.emplace(id, std::move(task));
  return id;
}

void EventLoop::cancelTimer(TimerId id) {
  timerTasks_.erase(id);
}

void EventLoop::post(Task task) {
  {
    std::lock_guard lock(postMutex_);
    posted_.push_back(std::move(task));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wakeFd_.get(), &one, sizeof one);
}

void EventLoop::stop() {
  post([this] { stopping_ = true; });
}

int EventLoop::nextTimeoutMs() {
  if (!deferred_.empty()) return 0;
  // Cancelled timers stay in the heap until they surface; never wake up for one.
  while (!timers_.empty() && !timerTasks_.contains(timers_.top().id)) timers_.pop();
  if (timers_.empty()) return -1;
  const auto left = timers_.top().due - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  // Round up so a timer never fires early.
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

void EventLoop::runTimers() {
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.top().due <= now) {
    const TimerId id = timers_.top().id;
    timers_.pop();
    auto it = timerTasks_.find(id);
    if (it == timerTasks_.end()) continue;  // cancelled
    Task task = std::move(it->second);
    timerTasks_.erase(it);
    task();
  }
}

void EventLoop::runPosted() {
  std::uint64_t count;
  [[maybe_unused]] auto n = ::read(wakeFd_.get(), &count, sizeof count);
  std::vector<Task> tasks;
  {
    std::lock_guard lock(postMutex_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) task();
}

void EventLoop::runDeferred() {
  while (!deferred_.empty()) {
    std::vector<Task> tasks;
    tasks.swap(deferred_);
    for (auto& task : tasks) task();
  }
}

void EventLoop::run() {
  std::array<epoll_event, 256> events;
  while (!stopping_) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), events.size(), nextTimeoutMs());
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<IoHandler*>(events[i].data.ptr);
      if (handler == kWakeMarker) {
        runPosted();
        continue;
      }
      handler->onIo(events[i].events);
    }
    runDeferred();
    runTimers();
    runDeferred();
  }
}

}  // namespace pgkeel::core
