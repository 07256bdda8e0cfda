// `pgkeel inject-webhook`: flag parsing, --check, and the server's lifetime (until SIGTERM/SIGINT).
#include "inject/command.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <ctime>
#include <iostream>

#include "common/logging.h"
#include "inject/certificate_store.h"
#include "inject/sidecar_config.h"
#include "inject/webhook_flags.h"
#include "inject/webhook_server.h"

#ifndef PGKEEL_VERSION
#define PGKEEL_VERSION "unknown"
#endif

namespace pgkeel::inject {
namespace {

// "ADDR:PORT" or "[V6]:PORT" (already checked by the flag parser) into host and port.
void splitListen(const std::string& listen, std::string& host, int& port) {
  size_t colon = listen.rfind(':');
  host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  port = std::stoi(listen.substr(colon + 1));
}

// Blocks SIGTERM and SIGINT in this thread (and the threads it starts), so sigtimedwait takes them.
sigset_t blockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Waits for SIGTERM/SIGINT; returns false when the server ended by itself first.
bool waitForStopSignal(const sigset_t& signals, const WebhookServer& server) {
  const timespec tick{0, 200'000'000};
  while (!server.stopped()) {
    int signal = sigtimedwait(&signals, nullptr, &tick);
    if (signal > 0) {
      spdlog::info("{} received, stopping", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      return true;
    }
  }
  return false;
}

// /readyz fails for delayMs while /mutate is still answered, so the API server's requests move to
// other replicas before this one stops; a second SIGTERM or SIGINT ends the wait.
void drain(const sigset_t& signals, WebhookServer& server, long delayMs) {
  if (delayMs <= 0) return;
  server.startDraining();
  spdlog::info("draining: /readyz fails, /mutate still served for {} ms", delayMs);
  const timespec wait{delayMs / 1000, (delayMs % 1000) * 1'000'000L};
  if (sigtimedwait(&signals, nullptr, &wait) > 0) spdlog::info("second signal: stopping now");
}

int check(const WebhookOptions& options) {
  SidecarConfigResult loaded = loadSidecarConfig(options.sidecarConfig);
  for (const std::string& error : loaded.errors) std::cerr << error << "\n";
  if (!loaded.ok()) return 1;
  std::cout << "sidecar config OK\n";
  return 0;
}

int serve(const WebhookOptions& options) {
  common::setupLogging(options.logLevel, options.logFormat == "json" ? common::LogStyle::Json
                                                                     : common::LogStyle::Text);
  SidecarConfigResult loaded = loadSidecarConfig(options.sidecarConfig);
  for (const std::string& error : loaded.errors) spdlog::error("{}", error);
  if (!loaded.ok()) return 1;
  CertificateStore certificates(options.tlsCert, options.tlsKey);
  if (std::string problem = certificates.load(); !problem.empty()) {
    spdlog::error("{}", problem);
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a peer that hangs up mid-answer must not end the process
  sigset_t signals = blockStopSignals();
  WebhookServer server(std::move(loaded.config), certificates);
  std::string host, error;
  int port = 0;
  splitListen(options.listen, host, port);
  if (!server.start(host, port, &error)) {
    spdlog::error("{}", error);
    return 1;
  }
  spdlog::info("pgkeel {} inject-webhook listening on {}", PGKEEL_VERSION, options.listen);
  bool asked = waitForStopSignal(signals, server);
  if (asked) drain(signals, server, options.drainDelayMs);
  server.stop();
  if (!asked) spdlog::error("the HTTPS server stopped by itself");
  return asked ? 0 : 1;
}

}  // namespace

int runCommand(std::span<const std::string> args) {
  WebhookFlagsResult parsed = parseWebhookFlags(args);
  if (parsed.options.help) {
    std::cout << webhookUsage();
    return 0;
  }
  for (const std::string& error : parsed.errors)
    std::cerr << "pgkeel inject-webhook: " << error << "\n";
  if (!parsed.ok()) return 2;
  return parsed.options.check ? check(parsed.options) : serve(parsed.options);
}

}  // namespace pgkeel::inject
