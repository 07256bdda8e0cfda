// The flags of `pgkeel inject-webhook`: the one list, the parser and the --help text.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgkeel::inject {

struct WebhookOptions {
  std::string listen = "0.0.0.0:8443";
  std::string tlsCert;
  std::string tlsKey;
  std::string sidecarConfig;
  long drainDelayMs = 10000;
  std::string logLevel = "info";
  std::string logFormat = "text";
  bool check = false;
  bool help = false;
};

struct WebhookFlag {
  // Sets the option from the flag's value (empty for a flag without one); returns the problem.
  using Setter = std::function<std::string(WebhookOptions&, const std::string&)>;
  using Getter = std::function<std::string(const WebhookOptions&)>;  // "" for a switch

  std::string name;         // "--listen"
  std::string valueName;    // "ADDR:PORT"; empty when the flag takes no value
  std::string description;  // one line
  Setter set;
  Getter get;

  std::string usageName() const;    // "--listen ADDR:PORT"
  std::string defaultText() const;  // get(WebhookOptions{}): defaults are declared once, above
};

// Every flag, in usage order.
const std::vector<WebhookFlag>& webhookFlags();
const WebhookFlag* findWebhookFlag(std::string_view name);

struct WebhookFlagsResult {
  WebhookOptions options;
  std::vector<std::string> errors;  // every problem, one a line

  bool ok() const { return errors.empty(); }
};

// args exclude "pgkeel inject-webhook". "--flag value" and "--flag=value" both work. Checks
// values and what the mode needs (--check: --sidecar-config; serving: the TLS files too).
WebhookFlagsResult parseWebhookFlags(std::span<const std::string> args);

std::string webhookUsage();

}  // namespace pgkeel::inject
