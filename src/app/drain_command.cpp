// `pgkeel drain`: flag parsing, POST /drain on the admin server, the answer printed.
#include "app/drain_command.h"

#include <httplib.h>

#include <array>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "admin/admin_server.h"
#include "config/values.h"

namespace pgkeel::app {
namespace {

constexpr std::array<DrainFlag, 3> kFlags{{
    {"--admin", "ADDR:PORT", "the admin server of the pgkeel to drain (default 127.0.0.1:9432)"},
    {"--timeout", "DURATION",
     "how long to wait for client sessions to end, at most 5m (default 25s; keep it under the "
     "pod's terminationGracePeriodSeconds)"},
    {"--help", "", "print this help and exit"},
}};

struct DrainArgs {
  std::string host = "127.0.0.1";
  int port = 9432;
  config::Millis timeout{25000};
  bool help = false;
};

std::string usage() {
  std::string text =
      "Usage: pgkeel drain [--admin ADDR:PORT] [--timeout DURATION]\n\n"
      "Makes a running pgkeel's /readyz fail and waits until no client session is open (a\n"
      "sidecar's preStop hook). Exit status: 0 drained, 1 sessions still open at the timeout or\n"
      "the admin server unreachable, 2 bad usage.\n\nFlags:\n";
  for (const DrainFlag& flag : kFlags) {
    std::string name = std::string(flag.name) + (*flag.valueName ? " " : "") + flag.valueName;
    text += "  " + name + std::string(name.size() < 22 ? 22 - name.size() : 1, ' ') +
            flag.description + "\n";
  }
  return text;
}

// "ADDR:PORT" or "[V6]:PORT"; "" when fine, else the problem.
std::string setAdmin(const std::string& value, DrainArgs& out) {
  const std::size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) return "--admin: expected ADDR:PORT";
  std::string host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = value.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
      std::stoi(port) > 65535)
    return "--admin: \"" + port + "\" is not a port (1-65535)";
  out.host = host;
  out.port = std::stoi(port);
  return "";
}

std::optional<DrainArgs> parse(std::span<const std::string> args) {
  DrainArgs out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i], value;
    const std::size_t equals = name.find('=');
    if (equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    } else if (name != "--help" && i + 1 < args.size()) {
      value = args[++i];
    }
    std::string problem;
    if (name == "--help") {
      out.help = true;
    } else if (name == "--admin") {
      problem = setAdmin(value, out);
    } else if (name == "--timeout") {
      problem = config::parseDuration(value, out.timeout);
      if (problem.empty() && out.timeout.count() > admin::kMaxDrainWaitMs) problem = "at most 5m";
      if (!problem.empty()) problem = "--timeout: " + problem;
    } else {
      problem = "unknown flag " + name + " (see pgkeel drain --help)";
    }
    if (!problem.empty()) {
      std::cerr << "pgkeel drain: " << problem << "\n";
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

std::span<const DrainFlag> drainFlags() {
  return kFlags;
}

int runDrainCommand(std::span<const std::string> args) {
  const std::optional<DrainArgs> parsed = parse(args);
  if (!parsed) return 2;
  if (parsed->help) {
    std::cout << usage();
    return 0;
  }
  httplib::Client client(parsed->host, parsed->port);
  const auto waitSeconds = std::chrono::duration_cast<std::chrono::seconds>(parsed->timeout);
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(waitSeconds + std::chrono::seconds(5));
  const std::string path = "/drain?wait_ms=" + std::to_string(parsed->timeout.count());
  const auto response = client.Post(path);
  const std::string where = parsed->host + ":" + std::to_string(parsed->port);
  if (!response) {
    std::cerr << "pgkeel drain: no answer from " << where << ": "
              << httplib::to_string(response.error()) << "\n";
    return 1;
  }
  const auto body = nlohmann::json::parse(response->body, nullptr, false);
  if (response->status == 200) {
    std::cout << "drained: no client session open on " << where << "\n";
    return 0;
  }
  if (response->status == 503 && body.is_object() && body.contains("sessions")) {
    std::cout << "timeout: " << body["sessions"].dump() << " client session(s) still open on "
              << where << " after " << config::formatDuration(parsed->timeout) << "\n";
    return 1;
  }
  std::cerr << "pgkeel drain: " << where << " answered " << response->status << ": "
            << response->body;
  return 1;
}

}  // namespace pgkeel::app
