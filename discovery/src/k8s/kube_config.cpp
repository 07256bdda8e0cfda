// Loading Kubernetes API settings: in-cluster service account files and kubeconfig YAML.
#include "k8s/kube_config.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace pgkeel::discovery::k8s {
namespace {

bool readFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

std::string trim(std::string text) {
  auto notSpace = [](unsigned char c) { return !std::isspace(c); };
  text.erase(text.begin(), std::find_if(text.begin(), text.end(), notSpace));
  text.erase(std::find_if(text.rbegin(), text.rend(), notSpace).base(), text.end());
  return text;
}

bool parsePort(const std::string& text, std::uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  int value = std::stoi(text);
  if (value < 1 || value > 65535) return false;
  *port = static_cast<std::uint16_t>(value);
  return true;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// Reads one kubeconfig document: the current context's cluster and user.
class KubeConfigReader {
 public:
  KubeConfigReader(const std::string& yaml, std::string path) : path_(std::move(path)) {
    try {
      root_ = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
      fail("line " + std::to_string(e.mark.line + 1), e.msg);
    }
    if (!root_.IsMap()) fail("(document)", "not a YAML mapping");
  }

  KubeConfig read() {
    std::string current = scalar(root_["current-context"], "current-context");
    if (current.empty()) fail("current-context", "missing or empty");
    std::string contextKey = "contexts[name=" + current + "].context";
    YAML::Node context = named("contexts", current, "context", "current-context");
    KubeConfig config;
    config.origin = path_;
    config.ns = scalar(context["namespace"], contextKey + ".namespace");
    if (config.ns.empty()) config.ns = "default";
    std::string clusterName = scalar(context["cluster"], contextKey + ".cluster");
    if (clusterName.empty()) fail(contextKey + ".cluster", "missing or empty");
    readCluster(named("clusters", clusterName, "cluster", contextKey + ".cluster"),
                "clusters[name=" + clusterName + "].cluster", &config);
    std::string userName = scalar(context["user"], contextKey + ".user");
    if (!userName.empty()) {
      readUser(named("users", userName, "user", contextKey + ".user"),
               "users[name=" + userName + "].user", &config);
    }
    return config;
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw std::runtime_error("kubeconfig " + path_ + ": " + key + ": " + problem);
  }

  std::string scalar(const YAML::Node& node, const std::string& key) const {
    if (!node || node.IsNull()) return "";
    if (!node.IsScalar()) fail(key, "expected a string");
    return node.Scalar();
  }

  // The `field` mapping of the entry of list `list` whose name is `name`.
  YAML::Node named(const std::string& list, const std::string& name, const std::string& field,
                   const std::string& from) const {
    YAML::Node entries = root_[list];
    if (entries && !entries.IsNull() && !entries.IsSequence()) fail(list, "expected a list");
    for (std::size_t i = 0; entries && i < entries.size(); ++i) {
      if (!entries[i].IsMap() || scalar(entries[i]["name"], list + ".name") != name) continue;
      YAML::Node value = entries[i][field];
      std::string key = list + "[name=" + name + "]." + field;
      if (!value || value.IsNull()) return YAML::Node(YAML::NodeType::Map);
      if (!value.IsMap()) fail(key, "expected a mapping");
      return value;
    }
    fail(list, "no entry named \"" + name + "\" (named by " + from + ")");
  }

  std::string file(const YAML::Node& node, const std::string& key) const {
    std::string name = scalar(node, key);
    if (name.empty()) return name;
    std::filesystem::path p(name);
    if (p.is_relative()) p = std::filesystem::path(path_).parent_path() / p;
    return p.string();
  }

  std::string base64(const YAML::Node& node, const std::string& key) const {
    std::string text = scalar(node, key);
    std::string decoded;
    if (!text.empty() && !decodeBase64(text, &decoded)) fail(key, "not valid base64");
    return decoded;
  }

  void unsupported(const YAML::Node& parent, const std::string& where, const std::string& field,
                   const std::string& hint) const {
    if (parent[field] && !parent[field].IsNull()) {
      fail(where + "." + field, "not supported; " + hint);
    }
  }

  void readCluster(const YAML::Node& cluster, const std::string& where, KubeConfig* config) const {
    std::string server = scalar(cluster["server"], where + ".server");
    if (server.empty()) fail(where + ".server", "missing or empty");
    parseServerUrl(server, "kubeconfig " + path_ + ": " + where + ".server", config);
    config->ca.data =
        base64(cluster["certificate-authority-data"], where + ".certificate-authority-data");
    if (config->ca.data.empty()) {
      config->ca.file = file(cluster["certificate-authority"], where + ".certificate-authority");
    }
    YAML::Node insecure = cluster["insecure-skip-tls-verify"];
    if (insecure && !insecure.IsNull()) {
      try {
        config->insecureSkipTlsVerify = insecure.as<bool>();
      } catch (const YAML::Exception&) {
        fail(where + ".insecure-skip-tls-verify", "expected true or false");
      }
    }
    unsupported(cluster, where, "proxy-url", "reach the API server directly");
    unsupported(cluster, where, "tls-server-name", "use a server URL the certificate names");
  }

  void readUser(const YAML::Node& user, const std::string& where, KubeConfig* config) const {
    config->token = scalar(user["token"], where + ".token");
    config->tokenFile = file(user["tokenFile"], where + ".tokenFile");
    config->clientCert.data =
        base64(user["client-certificate-data"], where + ".client-certificate-data");
    if (config->clientCert.data.empty()) {
      config->clientCert.file = file(user["client-certificate"], where + ".client-certificate");
    }
    config->clientKey.data = base64(user["client-key-data"], where + ".client-key-data");
    if (config->clientKey.data.empty()) {
      config->clientKey.file = file(user["client-key"], where + ".client-key");
    }
    if (config->clientCert.empty() != config->clientKey.empty()) {
      fail(where, "client-certificate and client-key must be given together");
    }
    config->username = scalar(user["username"], where + ".username");
    config->password = scalar(user["password"], where + ".password");
    unsupported(user, where, "exec", "use a token, tokenFile or client certificate");
    unsupported(user, where, "auth-provider", "use a token, tokenFile or client certificate");
  }

  std::string path_;
  YAML::Node root_;
};

}  // namespace

std::string PemSource::load() const {
  if (!data.empty() || file.empty()) return data;
  std::string text;
  if (!readFile(file, &text)) throw std::runtime_error("cannot read " + file);
  return text;
}

std::string KubeConfig::serverUrl() const {
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return scheme + "://" + shown + ":" + std::to_string(port) + pathPrefix;
}

void parseServerUrl(const std::string& url, const std::string& what, KubeConfig* config) {
  auto fail = [&](const std::string& problem) {
    throw std::runtime_error(what + ": \"" + url + "\": " + problem);
  };
  std::size_t schemeEnd = url.find("://");
  if (schemeEnd == std::string::npos) fail("expected http://HOST[:PORT] or https://HOST[:PORT]");
  std::string scheme = url.substr(0, schemeEnd);
  if (scheme != "http" && scheme != "https") fail("the scheme must be http or https");
  std::string rest = url.substr(schemeEnd + 3);
  std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  std::string host = authority;
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string::npos) fail("unclosed '[' in the host");
    host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') fail("unexpected text after ']'");
    if (!after.empty()) port = after.substr(1);
  } else if (std::count(authority.begin(), authority.end(), ':') == 1) {
    host = authority.substr(0, authority.find(':'));
    port = authority.substr(authority.find(':') + 1);
  }
  if (host.empty()) fail("no host");
  config->scheme = scheme;
  config->host = host;
  config->pathPrefix = prefix;
  config->port = scheme == "https" ? 443 : 80;
  if (!port.empty() && !parsePort(port, &config->port)) fail("bad port \"" + port + "\"");
}

KubeConfig inClusterConfig(const std::string& serviceAccountDir) {
  std::string host = env("KUBERNETES_SERVICE_HOST");
  std::string port = env("KUBERNETES_SERVICE_PORT");
  if (host.empty() || port.empty()) {
    throw std::runtime_error(
        "in-cluster Kubernetes config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must "
        "be set (not running in a pod? set kubeconfig)");
  }
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  KubeConfig config;
  parseServerUrl("https://" + shown + ":" + port,
                 "in-cluster Kubernetes config: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT",
                 &config);
  config.origin = "in-cluster";
  config.ca.file = serviceAccountDir + "/ca.crt";
  config.tokenFile = serviceAccountDir + "/token";
  std::string probe;
  for (const std::string& needed : {config.ca.file, config.tokenFile}) {
    if (!readFile(needed, &probe)) {
      throw std::runtime_error("in-cluster Kubernetes config: cannot read " + needed +
                               " (is a service account token mounted?)");
    }
  }
  config.ns = env("POD_NAMESPACE");
  if (config.ns.empty() && readFile(serviceAccountDir + "/namespace", &probe)) {
    config.ns = trim(probe);
  }
  if (config.ns.empty()) config.ns = "default";
  return config;
}

KubeConfig parseKubeConfig(const std::string& yaml, const std::string& path) {
  return KubeConfigReader(yaml, path).read();
}

KubeConfig loadKubeConfig(const std::string& path) {
  std::string text;
  if (!readFile(path, &text)) throw std::runtime_error("kubeconfig " + path + ": cannot read");
  return parseKubeConfig(text, path);
}

bool decodeBase64(const std::string& text, std::string* out) {
  std::string clean;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
  }
  if (clean.size() % 4 != 0) return false;
  std::string decoded(clean.size() / 4 * 3, '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                               reinterpret_cast<const unsigned char*>(clean.data()),
                               static_cast<int>(clean.size()));
  if (length < 0) return false;
  std::size_t padding = 0;
  while (padding < 2 && padding < clean.size() && clean[clean.size() - 1 - padding] == '=') {
    ++padding;
  }
  decoded.resize(static_cast<std::size_t>(length) - padding);
  *out = std::move(decoded);
  return true;
}

TokenSource::TokenSource(std::string token, std::string file,
                         std::chrono::steady_clock::duration maxAge)
    : file_(std::move(file)), maxAge_(maxAge), token_(std::move(token)) {}

std::string TokenSource::get() {
  std::lock_guard lock(mutex_);
  if (file_.empty()) return token_;
  auto now = std::chrono::steady_clock::now();
  if (stale_ || now - readAt_ >= maxAge_) {
    std::string text;
    if (readFile(file_, &text) && !trim(text).empty()) {
      token_ = trim(text);
      ++reads_;
    } else {
      spdlog::warn("kubernetes: cannot read the token file {}; keeping the last token", file_);
    }
    readAt_ = now;
    stale_ = false;
  }
  return token_;
}

void TokenSource::invalidate() {
  std::lock_guard lock(mutex_);
  stale_ = true;
}

std::uint64_t TokenSource::reads() const {
  std::lock_guard lock(mutex_);
  return reads_;
}

}  // namespace pgkeel::discovery::k8s
