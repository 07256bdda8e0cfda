// WebhookServer: HTTPS (cpp-httplib over OpenSSL) for POST /mutate, GET /healthz and GET /readyz.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "common/http_thread.h"
#include "inject/certificate_store.h"
#include "inject/sidecar_config.h"

namespace httplib {
class SSLServer;
}

namespace pgkeel::inject {

inline constexpr size_t kMaxBodyBytes = 4 * 1024 * 1024;  // larger bodies get 413

class WebhookServer {
 public:
  // certificates must outlive the server.
  WebhookServer(SidecarConfig config, CertificateStore& certificates);
  ~WebhookServer();
  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  // Binds host:port (port 0: any free port) and serves on a thread of its own; false with error
  // set when it cannot.
  bool start(const std::string& host, int port, std::string* error);
  int port() const { return port_; }

  // True once the serving thread has ended by itself (or after stop()).
  bool stopped() const { return http_.returned(); }

  // Stops accepting, lets requests in progress finish, joins the threads. Idempotent.
  void stop();

  // From now on /readyz answers 503 while /mutate still works (a drain before stopping).
  void startDraining() { draining_ = true; }

 private:
  void route();

  const SidecarConfig config_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::atomic<bool> draining_{false};
  int port_ = -1;
  common::HttpThread http_;  // after server_: destroyed (and so stopped) before it
};

}  // namespace pgkeel::inject
