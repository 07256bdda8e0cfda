// AdminServer: cpp-httplib routes for health, readiness, status and metrics.
#include "admin/admin_server.h"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace pgkeel::admin {
namespace {

// "ADDR:PORT" or "[V6]:PORT" into host and port (0 allowed: any free port); false if malformed.
bool splitAddress(const std::string& address, std::string& host, int& port) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  port = 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return false;
    port = port * 10 + (c - '0');
  }
  return !host.empty() && port <= 65535;
}

void answer(httplib::Response& response, const std::string& problem, const std::string& okText) {
  response.status = problem.empty() ? 200 : 503;
  response.set_content((problem.empty() ? okText : problem) + "\n", "text/plain");
}

}  // namespace

AdminServer::AdminServer(AdminSources sources)
    : sources_(std::move(sources)), server_(std::make_unique<httplib::Server>()) {
  server_->set_tcp_nodelay(true);  // no 40 ms Nagle/delayed-ACK wait on multi-part answers
  route();
}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::route() {
  // Changes (POST /reload, POST and DELETE /drain) come only from the pod or host itself: the
  // admin port also serves probes and scrapes, so it usually listens on every address.
  server_->set_pre_routing_handler(
      [](const httplib::Request& request, httplib::Response& response) {
        if (request.method == "GET" || request.method == "HEAD" ||
            isLoopbackAddress(request.remote_addr))
          return httplib::Server::HandlerResponse::Unhandled;
        response.status = 403;
        response.set_content(request.method + " " + request.path +
                                 ": answered only from loopback (127.0.0.1 or ::1); use SIGHUP, or "
                                 "kubectl exec ... pgkeel drain\n",
                             "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      });
  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
    answer(response, sources_.livenessProblem(), "ok");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
    const std::string problem =
        sources_.draining() ? "draining: pgkeel is shutting down"
                            : readinessProblem(*sources_.table(), sources_.readyRequiresReplica);
    answer(response, problem, "ready");
  });
  server_->Post("/reload", [this](const httplib::Request&, httplib::Response& response) {
    std::string text;
    for (const auto& problem : sources_.reload()) text += problem + "\n";
    response.status = text.empty() ? 200 : 400;
    response.set_content(text.empty() ? "configuration reloaded\n" : text, "text/plain");
  });
  routeDrain();
  server_->Get("/status", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(statusJson(*sources_.table(), sources_.process()).dump(2) + "\n",
                         "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(sources_.metricsText(), "text/plain; version=0.0.4");
  });
}

// POST /drain[?wait_ms=N]: /readyz fails from now on; the answer comes once no client session is
// open (200) or after N ms (503, with the count). Listeners keep accepting: a client that still
// connects is served. DELETE /drain undoes a drain asked for here (not one from SIGTERM).
void AdminServer::routeDrain() {
  server_->Post("/drain", [this](const httplib::Request& request, httplib::Response& response) {
    long waitMs = 0;
    const std::string text = request.get_param_value("wait_ms");
    if (!text.empty() && (text.find_first_not_of("0123456789") != std::string::npos ||
                          text.size() > 6 || std::stol(text) > kMaxDrainWaitMs)) {
      response.status = 400;
      response.set_content("wait_ms: expected milliseconds, 0 to 300000\n", "text/plain");
      return;
    }
    if (!text.empty()) waitMs = std::stol(text);
    sources_.requestDrain(true);
    // One drain waits at a time, so waiting requests cannot take every admin thread (and with them
    // /healthz); another answers at once with the count.
    const bool waits = !drainWaiting_.exchange(true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(waitMs);
    std::size_t open = sources_.sessions();
    while (waits && open > 0 && !stopping_ && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      open = sources_.sessions();
    }
    if (waits) drainWaiting_ = false;
    response.status = open == 0 ? 200 : 503;
    response.set_content(
        nlohmann::json{{"draining", true}, {"sessions", open}, {"drained", open == 0}}.dump() +
            "\n",
        "application/json");
  });
  server_->Delete("/drain", [this](const httplib::Request&, httplib::Response& response) {
    sources_.requestDrain(false);
    response.set_content(nlohmann::json{{"draining", sources_.draining()}}.dump() + "\n",
                         "application/json");
  });
}

bool isLoopbackAddress(const std::string& address) {
  return address.starts_with("127.") || address == "::1" || address.starts_with("::ffff:127.");
}

bool AdminServer::start(const std::string& address, std::string* error) {
  std::string host;
  int port = 0;
  if (!splitAddress(address, host, port)) {
    *error = "\"" + address + "\" is not ADDR:PORT";
    return false;
  }
  port_ = http_.start(*server_, host, port);
  if (port_ <= 0) {
    *error = "cannot listen on " + address;
    return false;
  }
  return true;
}

void AdminServer::stop() {
  stopping_ = true;
  http_.stop();
}

}  // namespace pgkeel::admin
