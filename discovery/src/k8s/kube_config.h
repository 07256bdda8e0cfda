// Kubernetes API connection settings (in-cluster service account or a kubeconfig file) and the
// rotating bearer token.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace pgkeel::discovery::k8s {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// A PEM blob: inline data, or a file read again at every connection (certificates rotate).
struct PemSource {
  std::string file;
  std::string data;
  bool empty() const { return file.empty() && data.empty(); }
  // `data`, else the file's contents. Throws std::runtime_error naming the file.
  std::string load() const;
};

struct KubeConfig {
  std::string origin;  // "in-cluster" or the kubeconfig path, for messages
  std::string scheme = "https";
  std::string host;  // an IPv6 address without brackets
  std::uint16_t port = 443;
  std::string
      pathPrefix;  // a server URL's path ("/k8s/clusters/c-1" behind a proxy), no '/' at end
  PemSource ca;    // empty: the system's trust store
  bool insecureSkipTlsVerify = false;
  PemSource clientCert;
  PemSource clientKey;
  std::string token;      // a fixed bearer token
  std::string tokenFile;  // a bearer token file, re-read every minute and after a 401
  std::string username;   // basic auth (kubeconfig only)
  std::string password;
  std::string ns;  // the default namespace

  // "https://host:port" with IPv6 hosts in brackets.
  std::string serverUrl() const;
};

// Splits "scheme://host[:port][/prefix]" into `config`. Throws std::runtime_error starting with
// `what` (which names the file and key) when the URL is not http(s) or has a bad port.
void parseServerUrl(const std::string& url, const std::string& what, KubeConfig* config);

// client-go's in-cluster config: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, CA
// and token under `serviceAccountDir`, namespace from $POD_NAMESPACE, else the namespace file,
// else "default". Throws std::runtime_error when the variables or the token file are missing.
KubeConfig inClusterConfig(const std::string& serviceAccountDir = kServiceAccountDir);

// The current context of a kubeconfig document. Relative file names are resolved against the
// directory of `path`. Throws std::runtime_error naming `path` and the key.
KubeConfig parseKubeConfig(const std::string& yaml, const std::string& path);
KubeConfig loadKubeConfig(const std::string& path);

// Decodes base64 (whitespace ignored); false on bad input.
bool decodeBase64(const std::string& text, std::string* out);

// A bearer token that follows a rotating file: the file is read again once the last read is
// older than `maxAge` or after invalidate() (a 401). A fixed token never changes.
class TokenSource {
 public:
  TokenSource(std::string token, std::string file,
              std::chrono::steady_clock::duration maxAge = std::chrono::minutes(1));
  // The token to send; empty when there is none. Keeps the last good token if a re-read fails.
  std::string get();
  void invalidate();
  std::uint64_t reads() const;  // successful file reads, for tests

 private:
  std::string file_;
  std::chrono::steady_clock::duration maxAge_;
  mutable std::mutex mutex_;
  std::string token_;
  std::chrono::steady_clock::time_point readAt_{};
  bool stale_ = true;
  std::uint64_t reads_ = 0;
};

}  // namespace pgkeel::discovery::k8s
