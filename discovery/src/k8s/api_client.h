// Kubernetes API requests over cpp-httplib: collection paths, list/watch query strings, and a
// per-thread HTTP session whose request in flight another thread can abort.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kube_config.h"

namespace httplib {
class ClientImpl;
}

namespace pgkeel::discovery::k8s {

// Percent-encodes everything except RFC 3986 unreserved characters (A-Z a-z 0-9 - _ . ~).
std::string urlEncode(std::string_view text);

// A namespaced collection: core ("" group) or a custom resource group.
struct Collection {
  std::string group;  // "" for the core API (pods, configmaps, endpoints)
  std::string version = "v1";
  std::string plural;
  std::string ns;  // empty: all namespaces

  // /api/v1/namespaces/db/pods, /apis/postgresql.cnpg.io/v1/namespaces/db/clusters
  std::string path() const;
  // "pods", "clusters.postgresql.cnpg.io": as RBAC rules and kubectl name it.
  std::string resource() const;
};

struct Selectors {
  std::string label;  // e.g. "cnpg.io/cluster=pg-main,cnpg.io/podRole=instance"
  std::string field;  // e.g. "metadata.name=pg-main"
};

// "?labelSelector=...&fieldSelector=...&limit=N[&continue=...]" (empty parts left out).
std::string listQuery(const Selectors& selectors, int limit, const std::string& continueToken);
// "?watch=1&allowWatchBookmarks=true&resourceVersion=RV&timeoutSeconds=T&...selectors".
std::string watchQuery(const Selectors& selectors, const std::string& resourceVersion,
                       int timeoutSeconds);

// A Retry-After header value in seconds (the form the API server sends); nullopt otherwise.
std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value);

// The SourceStats::errors key for an HTTP status: "401", "403", "410", "429", "5xx" or
// "other_http"; "network" for 0 (no response).
std::string errorKind(int status);

struct HttpResponse {
  int status = 0;     // 0: no response (connection failed, TLS failed, aborted, timed out)
  std::string error;  // why, when status == 0
  std::string body;   // the body, unless it was streamed to a callback
  std::optional<std::chrono::seconds> retryAfter;
  bool aborted = false;  // abort() or the stream callback ended the request
};

struct HttpTimeouts {
  std::chrono::milliseconds connect{5000};
  std::chrono::milliseconds read{30000};  // a single request; watches pass their own
};

// Settings shared by every session: the server, TLS material and the bearer token.
class ApiClient {
 public:
  explicit ApiClient(KubeConfig config, HttpTimeouts timeouts = {});
  const KubeConfig& config() const { return config_; }
  const HttpTimeouts& timeouts() const { return timeouts_; }
  TokenSource& token() { return token_; }
  // A new httplib client (TLS files are read again each time). Throws std::runtime_error when
  // the certificate material cannot be loaded.
  std::shared_ptr<httplib::ClientImpl> makeClient() const;

 private:
  KubeConfig config_;
  HttpTimeouts timeouts_;
  mutable TokenSource token_;
};

// Requests from one thread; abort() from any thread ends the request in flight.
class HttpSession {
 public:
  explicit HttpSession(std::shared_ptr<ApiClient> api) : api_(std::move(api)) {}
  // GET `target` (path + query, without the server's path prefix); the whole body is returned.
  HttpResponse get(const std::string& target);
  // GET `target` and hand a 200 body to `onData` as it arrives (return false to stop). Other
  // statuses collect their body into HttpResponse::body.
  HttpResponse stream(const std::string& target, std::chrono::milliseconds readTimeout,
                      const std::function<bool(std::string_view)>& onData);
  void abort();
  ApiClient& api() { return *api_; }

 private:
  HttpResponse run(const std::string& target, std::chrono::milliseconds readTimeout,
                   const std::function<bool(std::string_view)>* onData);

  std::shared_ptr<ApiClient> api_;
  std::mutex mutex_;
  std::shared_ptr<httplib::ClientImpl> current_;  // guarded by mutex_
};

}  // namespace pgkeel::discovery::k8s
