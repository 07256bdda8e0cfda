// WebhookServer: HTTPS (cpp-httplib over OpenSSL) for POST /mutate, GET /healthz and GET /readyz.
#include "inject/webhook_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>

#include "inject/admission.h"

namespace pgkeel::inject {
namespace {

void logOutcome(const AdmissionOutcome& outcome) {
  switch (outcome.severity) {
    case Severity::Debug:
      return spdlog::debug("{}", outcome.logLine);
    case Severity::Info:
      return spdlog::info("{}", outcome.logLine);
    case Severity::Warning:
      return spdlog::warn("{}", outcome.logLine);
  }
}

void sendJson(httplib::Response& response, int status, const nlohmann::json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                       "application/json");
}

// TLS 1.2 at least, the certificate from the store at every handshake.
std::function<bool(SSL_CTX&)> setupContext(CertificateStore& certificates) {
  return [&certificates](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx,
                        SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    certificates.attach(&ctx);
    return true;
  };
}

}  // namespace

WebhookServer::WebhookServer(SidecarConfig config, CertificateStore& certificates)
    : config_(std::move(config)),
      server_(std::make_unique<httplib::SSLServer>(setupContext(certificates))) {
  server_->set_payload_max_length(kMaxBodyBytes);
  // An answer is written in pieces (headers, body): without TCP_NODELAY, Nagle and the peer's
  // delayed ACK hold the last piece back for 40 ms.
  server_->set_tcp_nodelay(true);
  server_->set_read_timeout(10, 0);
  server_->set_write_timeout(10, 0);
  route();
}

WebhookServer::~WebhookServer() {
  stop();
}

void WebhookServer::route() {
  server_->Post("/mutate", [this](const httplib::Request& request, httplib::Response& response) {
    AdmissionOutcome outcome = admit(request.body, config_);
    logOutcome(outcome);
    sendJson(response, outcome.httpStatus, outcome.body);
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
    response.status = draining_ ? 503 : 200;
    response.set_content(draining_ ? "draining: the webhook is stopping\n" : "ready\n",
                         "text/plain");
  });
  server_->set_exception_handler(
      [](const httplib::Request& request, httplib::Response& response, std::exception_ptr error) {
        std::string what = "unknown error";
        try {
          if (error) std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("{} {}: {}", request.method, request.path, what);
        sendJson(response, 500, {{"message", "internal error: " + what}});
      });
}

bool WebhookServer::start(const std::string& host, int port, std::string* error) {
  if (!server_->is_valid()) {
    *error = "cannot set up TLS";
    return false;
  }
  port_ = http_.start(*server_, host, port);
  if (port_ <= 0) {
    *error = "cannot listen on " + host + ":" + std::to_string(port);
    return false;
  }
  return true;
}

void WebhookServer::stop() {
  http_.stop();
}

}  // namespace pgkeel::inject
