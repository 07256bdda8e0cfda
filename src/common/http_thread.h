// HttpThread: a cpp-httplib server's listen loop on a thread of its own (bind first, stop safely);
// header-only, for the modules that link cpp-httplib (admin, inject).
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace pgkeel::common {

class HttpThread {
 public:
  ~HttpThread() { stop(); }

  // Binds host:port (0: any free port) and serves on the thread; the bound port, or -1.
  int start(httplib::Server& server, const std::string& host, int port) {
    server_ = &server;
    port =
        port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
    if (port <= 0) return -1;
    thread_ = std::thread([this] {
      server_->listen_after_bind();
      returned_ = true;
    });
    return port;
  }

  // Stops the server and joins the thread. Idempotent.
  void stop() {
    if (!thread_.joinable()) return;
    // httplib's stop() does nothing until the listen loop runs: wait for it to start (or fail).
    while (!server_->is_running() && !returned_)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server_->stop();
    thread_.join();
    returned_ = true;
  }

  // True once the listen loop has ended (by itself or after stop()).
  bool returned() const { return returned_; }

 private:
  httplib::Server* server_ = nullptr;
  std::thread thread_;
  std::atomic<bool> returned_{false};
};

}  // namespace pgkeel::common
