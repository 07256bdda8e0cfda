// The flags of `pgkeel inject-webhook`: the one list, the parser and the --help text.
#include "inject/webhook_flags.h"

#include "config/keys.h"
#include "config/options.h"
#include "config/values.h"

namespace pgkeel::inject {
namespace {

// A pgkeel key's own check (log_level, log_format), then the text stored in lower case.
WebhookFlag viaKey(std::string name, const char* key, std::string WebhookOptions::*field) {
  const config::Key* catalogued = config::findKey(key);
  auto set = [=](WebhookOptions& o, const std::string& value) {
    config::Options scratch;
    std::string problem = catalogued->set(scratch, value);
    if (problem.empty()) o.*field = config::toLower(config::trim(value));
    return problem;
  };
  return {std::move(name), catalogued->valueName, catalogued->description, set,
          [=](const WebhookOptions& o) { return o.*field; }};
}

WebhookFlag pathFlag(std::string name, std::string WebhookOptions::*field,
                     std::string description) {
  auto set = [=](WebhookOptions& o, const std::string& value) -> std::string {
    if (config::trim(value).empty()) return "needs a file name";
    o.*field = value;
    return "";
  };
  return {std::move(name), "FILE", std::move(description), set,
          [=](const WebhookOptions& o) { return o.*field; }};
}

WebhookFlag switchFlag(std::string name, bool WebhookOptions::*field, std::string description) {
  auto set = [=](WebhookOptions& o, const std::string&) {
    o.*field = true;
    return std::string();
  };
  return {std::move(name), "", std::move(description), set,
          [](const WebhookOptions&) { return std::string(); }};
}

std::string setListen(WebhookOptions& o, const std::string& value) {
  std::string problem = config::checkHostPort(value);
  if (problem.empty()) o.listen = value;
  return problem;
}

std::string setDrainDelay(WebhookOptions& o, const std::string& value) {
  config::Millis delay{0};
  std::string problem = config::parseDuration(value, delay);
  if (problem.empty() && delay > std::chrono::minutes(10)) problem = "at most 10m";
  if (problem.empty()) o.drainDelayMs = delay.count();
  return problem;
}

std::vector<WebhookFlag> buildFlags() {
  return {
      {"--listen", "ADDR:PORT", "where the HTTPS server listens", setListen,
       [](const WebhookOptions& o) { return o.listen; }},
      pathFlag("--tls-cert", &WebhookOptions::tlsCert,
               "PEM certificate (chain) it serves; read again when the file changes"),
      pathFlag("--tls-key", &WebhookOptions::tlsKey,
               "PEM private key of that certificate; read again when it changes"),
      pathFlag("--sidecar-config", &WebhookOptions::sidecarConfig,
               "the sidecar config file (YAML) for injected containers"),
      {"--drain-delay", "DURATION",
       "after SIGTERM, how long /readyz fails while /mutate is still served (so the Service "
       "stops sending requests before the server stops); a second SIGTERM ends it",
       setDrainDelay,
       [](const WebhookOptions& o) {
         return config::formatDuration(config::Millis(o.drainDelayMs));
       }},
      switchFlag("--check", &WebhookOptions::check,
                 "only check the sidecar config file: print \"sidecar config OK\" (exit 0) or "
                 "every problem (exit 1)"),
      viaKey("--log-level", "log_level", &WebhookOptions::logLevel),
      viaKey("--log-format", "log_format", &WebhookOptions::logFormat),
      switchFlag("--help", &WebhookOptions::help, "print this help and exit"),
  };
}

// Reads the flag at args[i] (and its value); returns the index of the next argument.
size_t takeFlag(WebhookFlagsResult& result, std::span<const std::string> args, size_t i) {
  const std::string& arg = args[i];
  size_t equals = arg.find('=');
  std::string name = arg.substr(0, equals);
  const WebhookFlag* flag = findWebhookFlag(name);
  if (flag == nullptr) {
    std::vector<std::string> names;
    for (const WebhookFlag& f : webhookFlags()) names.push_back(f.name);
    std::string near = config::closestMatch(name, names);
    result.errors.push_back("unknown flag " + name +
                            (near.empty() ? " (see --help)" : " (did you mean " + near + "?)"));
    return i + 1;
  }
  std::string value;
  size_t next = i + 1;
  if (flag->valueName.empty() && equals != std::string::npos) {
    result.errors.push_back("flag " + name + " takes no value");
    return next;
  }
  if (!flag->valueName.empty() && equals != std::string::npos) {
    value = arg.substr(equals + 1);
  } else if (!flag->valueName.empty()) {
    if (next >= args.size() || args[next].starts_with("--")) {
      result.errors.push_back("flag " + name + " needs a value: " + flag->usageName());
      return next;
    }
    value = args[next++];
  }
  std::string problem = flag->set(result.options, value);
  if (!problem.empty()) result.errors.push_back("flag " + name + ": " + problem);
  return next;
}

void checkNeeds(WebhookFlagsResult& result) {
  const WebhookOptions& o = result.options;
  if (o.sidecarConfig.empty()) result.errors.push_back("--sidecar-config FILE is required");
  if (o.check) return;
  if (o.tlsCert.empty()) result.errors.push_back("--tls-cert FILE is required");
  if (o.tlsKey.empty()) result.errors.push_back("--tls-key FILE is required");
}

}  // namespace

std::string WebhookFlag::usageName() const {
  return valueName.empty() ? name : name + " " + valueName;
}

std::string WebhookFlag::defaultText() const {
  return get(WebhookOptions{});
}

const std::vector<WebhookFlag>& webhookFlags() {
  static const std::vector<WebhookFlag> kFlags = buildFlags();
  return kFlags;
}

const WebhookFlag* findWebhookFlag(std::string_view name) {
  for (const WebhookFlag& flag : webhookFlags()) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

WebhookFlagsResult parseWebhookFlags(std::span<const std::string> args) {
  WebhookFlagsResult result;
  for (size_t i = 0; i < args.size();) {
    if (!args[i].starts_with("-")) {
      result.errors.push_back("unexpected argument " + config::inQuotes(args[i]) +
                              " (flags start with --, see --help)");
      ++i;
      continue;
    }
    i = takeFlag(result, args, i);
  }
  if (!result.options.help && result.errors.empty()) checkNeeds(result);
  return result;
}

std::string webhookUsage() {
  std::string text =
      "Usage: pgkeel inject-webhook --tls-cert FILE --tls-key FILE --sidecar-config FILE "
      "[FLAGS]\n"
      "       pgkeel inject-webhook --check --sidecar-config FILE\n\n"
      "The mutating admission webhook that adds pgkeel as a native sidecar (init container\n"
      "with restartPolicy Always) to pods annotated pgkeel.io/inject: \"true\".\n"
      "HTTPS endpoints: POST /mutate (AdmissionReview admission.k8s.io/v1), GET /healthz, "
      "GET /readyz.\n\nFlags:\n";
  for (const WebhookFlag& flag : webhookFlags()) {
    text += "  " + flag.usageName() + "\n      " + flag.description;
    if (!flag.defaultText().empty()) text += " (default " + flag.defaultText() + ")";
    text += "\n";
  }
  return text;
}

}  // namespace pgkeel::inject
