// A fake Patroni REST API for tests: GET /cluster on loopback (a port the kernel picks) with a
// body and status the test can change, and a count of the requests served.
#pragma once

#include "../test_httplib.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace pgkeel::discovery::testing {

class FakePatroniRest {
 public:
  explicit FakePatroniRest(std::string body, int status = 200, std::string host = "127.0.0.1")
      : host_(std::move(host)), body_(std::move(body)), status_(status) {
    server_.Get("/cluster", [this](const httplib::Request&, httplib::Response& response) {
      ++requests_;
      std::lock_guard lock(mutex_);
      response.status = status_;
      response.set_content(body_, "application/json");
    });
    port_ = server_.bind_to_any_port(host_);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (port_ > 0 && !server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~FakePatroniRest() { shutdown(); }
  FakePatroniRest(const FakePatroniRest&) = delete;
  FakePatroniRest& operator=(const FakePatroniRest&) = delete;

  bool ok() const { return port_ > 0; }
  std::string url() const {
    bool v6 = host_.find(':') != std::string::npos;
    return "http://" + (v6 ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
  }
  int requests() const { return requests_; }
  void set(std::string body, int status = 200) {
    std::lock_guard lock(mutex_);
    body_ = std::move(body);
    status_ = status;
  }
  // Stops answering (the port is closed afterwards).
  void shutdown() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }

 private:
  std::string host_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  std::string body_;
  int status_;
};

// Polls `condition` every few milliseconds until it holds or `limit` passes.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace pgkeel::discovery::testing
