// Worker: a thread running one EventLoop.
#pragma once

#include <string>
#include <thread>

#include "core/event_loop.h"

namespace pgkeel::core {

class Worker {
 public:
  explicit Worker(int index) : index_(index) {}
  ~Worker() { join(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int index() const { return index_; }
  EventLoop& loop() { return loop_; }
  void start();
  void stop() { loop_.stop(); }
  void join();

 private:
  int index_;
  EventLoop loop_;
  std::thread thread_;
};

}  // namespace pgkeel::core
