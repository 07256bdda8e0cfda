// Worker: a thread running one EventLoop.
#include "core/worker.h"

#include <pthread.h>

namespace pgkeel::core {

void Worker::start() {
  thread_ = std::thread([this] {
    const std::string name = "pgkeel-w" + std::to_string(index_);
    ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
    loop_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace pgkeel::core
