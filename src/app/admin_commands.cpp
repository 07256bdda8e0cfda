// `pgkeel drain` and `pgkeel reload`: flag parsing, the request to the admin server, the answer.
#include "app/admin_commands.h"

#include <httplib.h>

#include <array>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "admin/admin_server.h"
#include "config/values.h"

namespace pgkeel::app {
namespace {

constexpr CommandFlag kAdminFlag{"--admin", "ADDR:PORT",
                                 "the admin server of the pgkeel to ask (default 127.0.0.1:9432)"};
constexpr CommandFlag kHelpFlag{"--help", "", "print this help and exit"};
constexpr std::array<CommandFlag, 3> kDrainFlags{{
    kAdminFlag,
    {"--timeout", "DURATION",
     "how long to wait for client sessions to end, at most 5m (default 25s; keep it under the "
     "pod's terminationGracePeriodSeconds)"},
    kHelpFlag,
}};
constexpr std::array<CommandFlag, 2> kReloadFlags{{kAdminFlag, kHelpFlag}};

struct CommandArgs {
  std::string host = "127.0.0.1";
  int port = 9432;
  config::Millis timeout{25000};
  bool help = false;

  std::string where() const { return host + ":" + std::to_string(port); }
};

struct Command {
  const char* name;  // "drain"
  const char* synopsis;
  const char* summary;
  std::span<const CommandFlag> flags;
};

constexpr Command kDrain{
    "drain", "[--admin ADDR:PORT] [--timeout DURATION]",
    "Makes a running pgkeel's /readyz fail and waits until no client session is open (a\n"
    "sidecar's preStop hook). Exit status: 0 drained, 1 sessions still open at the timeout or\n"
    "the admin server unreachable, 2 bad usage.\n",
    kDrainFlags};
constexpr Command kReload{
    "reload", "[--admin ADDR:PORT]",
    "Makes a running pgkeel re-read its configuration, as SIGHUP does. Exit status: 0 reloaded,\n"
    "1 refused (every problem printed; the running configuration stays) or the admin server\n"
    "unreachable, 2 bad usage.\n",
    kReloadFlags};

std::string usage(const Command& command) {
  std::string text = std::string("Usage: pgkeel ") + command.name + " " + command.synopsis +
                     "\n\n" + command.summary + "\nFlags:\n";
  for (const CommandFlag& flag : command.flags) {
    std::string name = std::string(flag.name) + (*flag.valueName ? " " : "") + flag.valueName;
    text += "  " + name + std::string(name.size() < 22 ? 22 - name.size() : 1, ' ') +
            flag.description + "\n";
  }
  return text;
}

// "ADDR:PORT" or "[V6]:PORT"; "" when fine, else the problem.
std::string setAdmin(const std::string& value, CommandArgs& out) {
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

std::string setTimeout(const std::string& value, CommandArgs& out) {
  std::string problem = config::parseDuration(value, out.timeout);
  if (problem.empty() && out.timeout.count() > admin::kMaxDrainWaitMs) problem = "at most 5m";
  return problem.empty() ? "" : "--timeout: " + problem;
}

bool accepts(const Command& command, const std::string& name) {
  for (const CommandFlag& flag : command.flags) {
    if (name == flag.name) return true;
  }
  return false;
}

std::optional<CommandArgs> parse(const Command& command, std::span<const std::string> args) {
  CommandArgs out;
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
    if (!accepts(command, name)) {
      problem = "unknown flag " + name + " (see pgkeel " + command.name + " --help)";
    } else if (name == "--help") {
      out.help = true;
    } else {
      problem = name == "--admin" ? setAdmin(value, out) : setTimeout(value, out);
    }
    if (!problem.empty()) {
      std::cerr << "pgkeel " << command.name << ": " << problem << "\n";
      return std::nullopt;
    }
  }
  return out;
}

// POSTs path; the response, or null after printing why there is none.
httplib::Result post(const Command& command, const CommandArgs& args, const std::string& path,
                     std::chrono::seconds readTimeout) {
  httplib::Client client(args.host, args.port);
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(readTimeout);
  httplib::Result response = client.Post(path);
  if (!response) {
    std::cerr << "pgkeel " << command.name << ": no answer from " << args.where() << ": "
              << httplib::to_string(response.error()) << "\n";
  }
  return response;
}

int drain(const CommandArgs& args) {
  const auto wait = std::chrono::duration_cast<std::chrono::seconds>(args.timeout);
  const auto response = post(kDrain, args, "/drain?wait_ms=" + std::to_string(args.timeout.count()),
                             wait + std::chrono::seconds(5));
  if (!response) return 1;
  const auto body = nlohmann::json::parse(response->body, nullptr, false);
  if (response->status == 200) {
    std::cout << "drained: no client session open on " << args.where() << "\n";
    return 0;
  }
  if (response->status == 503 && body.is_object() && body.contains("sessions")) {
    std::cout << "timeout: " << body["sessions"].dump() << " client session(s) still open on "
              << args.where() << " after " << config::formatDuration(args.timeout) << "\n";
    return 1;
  }
  std::cerr << "pgkeel drain: " << args.where() << " answered " << response->status << ": "
            << response->body;
  return 1;
}

int reload(const CommandArgs& args) {
  const auto response = post(kReload, args, "/reload", std::chrono::seconds(30));
  if (!response) return 1;
  if (response->status == 200) {
    std::cout << "reloaded: " << args.where() << " runs the new configuration\n";
    return 0;
  }
  std::cerr << "pgkeel reload: " << args.where() << " answered " << response->status << ":\n"
            << response->body;
  return 1;
}

int run(const Command& command, std::span<const std::string> args,
        int (*action)(const CommandArgs&)) {
  const std::optional<CommandArgs> parsed = parse(command, args);
  if (!parsed) return 2;
  if (parsed->help) {
    std::cout << usage(command);
    return 0;
  }
  return action(*parsed);
}

}  // namespace

std::span<const CommandFlag> drainFlags() {
  return kDrainFlags;
}

std::span<const CommandFlag> reloadFlags() {
  return kReloadFlags;
}

int runDrainCommand(std::span<const std::string> args) {
  return run(kDrain, args, drain);
}

int runReloadCommand(std::span<const std::string> args) {
  return run(kReload, args, reload);
}

}  // namespace pgkeel::app
