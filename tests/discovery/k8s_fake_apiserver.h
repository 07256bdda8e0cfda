// A scriptable Kubernetes API server for tests: cpp-httplib on 127.0.0.1 port 0, plain
// responses for lists and chunked, optionally held-open bodies for watches.
#pragma once

#include <unistd.h>
#include "../test_httplib.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pgkeel::discovery::testing {

inline std::string readFixture(const std::string& name) {
  std::ifstream in(std::string(PGKEEL_SHARED_DIR) + "/fixtures/k8s/" + name, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A fresh directory under the temp dir, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "pgkeel-k8s-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `condition` every 5 ms until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

class FakeApiServer {
 public:
  struct Reply {
    int status = 200;
    std::string body;                 // a plain body (lists, errors)
    std::vector<std::string> chunks;  // a chunked body (watches), written with a short pause
    bool hold = false;                // after the chunks, keep the stream open and idle
    bool drop = false;                // after the chunks, cut the connection (no final chunk)
    // After the chunks: each step waits for its gate to open, then writes its text.
    struct Step {
      std::function<bool()> gate;
      std::string text;
    };
    std::vector<Step> steps;
    std::map<std::string, std::string> headers;
  };
  struct Seen {
    std::string path;
    std::map<std::string, std::string> params;
    std::string authorization;
    std::chrono::steady_clock::time_point at;
    bool watch() const { return params.count("watch") != 0; }
  };
  using Handler = std::function<Reply(const Seen&)>;

  explicit FakeApiServer(Handler handler) : handler_(std::move(handler)) {
    server_.Get(".*", [this](const httplib::Request& request, httplib::Response& response) {
      serve(request, response);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (port_ > 0 && !server_.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeApiServer() {
    shutting_ = true;
    server_.stop();
    thread_.join();
  }
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<Seen> seen(bool watches) const {
    std::vector<Seen> some;
    for (const Seen& s : seen()) {
      if (s.watch() == watches) some.push_back(s);
    }
    return some;
  }
  // Holding streams end (cleanly) when released.
  void release() { released_ = true; }

 private:
  void serve(const httplib::Request& request, httplib::Response& response) {
    Seen seen{request.path,
              {},
              request.get_header_value("Authorization"),
              std::chrono::steady_clock::now()};
    for (const auto& [key, value] : request.params) seen.params[key] = value;
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(seen);
    }
    Reply reply = handler_(seen);
    response.status = reply.status;
    for (const auto& [key, value] : reply.headers) response.set_header(key, value);
    if (reply.chunks.empty() && reply.steps.empty() && !reply.hold && !reply.drop) {
      response.set_content(reply.body, "application/json");
      return;
    }
    response.set_chunked_content_provider(
        "application/json", [this, reply](std::size_t, httplib::DataSink& sink) {
          for (const std::string& chunk : reply.chunks) {
            if (!sink.write(chunk.data(), chunk.size())) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
          for (const Reply::Step& step : reply.steps) {
            while (!step.gate() && !shutting_) {
              std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            if (shutting_ || !sink.write(step.text.data(), step.text.size())) return false;
          }
          if (reply.drop) return false;
          while (reply.hold && !released_ && !shutting_) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
          sink.done();
          return true;
        });
  }

  Handler handler_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> shutting_{false};
  std::atomic<bool> released_{false};
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
};

// Splits `text` into pieces of `size` bytes (the last may be shorter).
inline std::vector<std::string> splitEvery(const std::string& text, std::size_t size) {
  std::vector<std::string> pieces;
  for (std::size_t at = 0; at < text.size(); at += size) pieces.push_back(text.substr(at, size));
  return pieces;
}

}  // namespace pgkeel::discovery::testing
