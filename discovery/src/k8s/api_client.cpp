// Kubernetes API requests: paths, query strings, TLS set-up and abortable GETs over cpp-httplib.
#include "k8s/api_client.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cctype>
#include <stdexcept>

namespace pgkeel::discovery::k8s {
namespace {

constexpr std::size_t kMaxBodyBytes = 64 * 1024 * 1024;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

BioPtr memoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in `pem`, in a new store (which the httplib client takes over).
X509_STORE* certificateStore(const std::string& pem, const std::string& what) {
  X509_STORE* store = X509_STORE_new();
  BioPtr bio = memoryBio(pem);
  int count = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    ++count;
  }
  ERR_clear_error();
  if (count == 0) {
    X509_STORE_free(store);
    throw std::runtime_error(what + ": no PEM certificate found");
  }
  return store;
}

std::unique_ptr<httplib::SSLClient> tlsClient(const KubeConfig& config) {
  if (config.clientCert.empty()) {
    return std::make_unique<httplib::SSLClient>(config.host, config.port);
  }
  std::string certPem = config.clientCert.load();  // the BIOs read these in place
  std::string keyPem = config.clientKey.load();
  BioPtr certBio = memoryBio(certPem);
  BioPtr keyBio = memoryBio(keyPem);
  X509* cert = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr);
  ERR_clear_error();
  if (cert == nullptr || key == nullptr) {
    X509_free(cert);
    EVP_PKEY_free(key);
    throw std::runtime_error(config.origin + ": the client certificate or key is not valid PEM");
  }
  auto client = std::make_unique<httplib::SSLClient>(config.host, config.port, cert, key);
  X509_free(cert);  // the SSL_CTX holds its own references
  EVP_PKEY_free(key);
  if (!client->is_valid()) {
    throw std::runtime_error(config.origin + ": the client certificate and key do not match");
  }
  return client;
}

std::string hostHeader(const KubeConfig& config) {
  std::string host =
      config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
  return host + ":" + std::to_string(config.port);
}

void appendParam(std::string* query, const char* name, const std::string& value) {
  if (value.empty()) return;
  *query += query->empty() ? "?" : "&";
  *query += name;
  *query += "=";
  *query += urlEncode(value);
}

}  // namespace

std::string urlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

std::string Collection::path() const {
  std::string path = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (!ns.empty()) path += "/namespaces/" + urlEncode(ns);
  return path + "/" + plural;
}

std::string Collection::resource() const {
  return group.empty() ? plural : plural + "." + group;
}

std::string listQuery(const Selectors& selectors, int limit, const std::string& continueToken) {
  std::string query;
  appendParam(&query, "labelSelector", selectors.label);
  appendParam(&query, "fieldSelector", selectors.field);
  if (limit > 0) appendParam(&query, "limit", std::to_string(limit));
  appendParam(&query, "continue", continueToken);
  return query;
}

std::string watchQuery(const Selectors& selectors, const std::string& resourceVersion,
                       int timeoutSeconds) {
  std::string query = "?watch=1&allowWatchBookmarks=true";
  appendParam(&query, "resourceVersion", resourceVersion);
  if (timeoutSeconds > 0) appendParam(&query, "timeoutSeconds", std::to_string(timeoutSeconds));
  appendParam(&query, "labelSelector", selectors.label);
  appendParam(&query, "fieldSelector", selectors.field);
  return query;
}

std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty() || value.size() > 9) return std::nullopt;
  long seconds = 0;
  for (char c : value) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    seconds = seconds * 10 + (c - '0');
  }
  return std::chrono::seconds(seconds);
}

std::string errorKind(int status) {
  switch (status) {
    case 0:
      return "network";
    case 401:
    case 403:
    case 410:
    case 429:
      return std::to_string(status);
    default:
      return status >= 500 && status <= 599 ? "5xx" : "other_http";
  }
}

ApiClient::ApiClient(KubeConfig config, HttpTimeouts timeouts)
    : config_(std::move(config)), timeouts_(timeouts), token_(config_.token, config_.tokenFile) {}

std::shared_ptr<httplib::ClientImpl> ApiClient::makeClient() const {
  if (config_.scheme == "http") {
    return std::make_shared<httplib::ClientImpl>(config_.host, config_.port);
  }
  std::unique_ptr<httplib::SSLClient> client = tlsClient(config_);
  client->enable_server_certificate_verification(!config_.insecureSkipTlsVerify);
  if (!config_.insecureSkipTlsVerify && !config_.ca.empty()) {
    std::string what = config_.ca.file.empty() ? config_.origin + ": the CA data" : config_.ca.file;
    client->set_ca_cert_store(certificateStore(config_.ca.load(), what));
  }
  return client;
}

HttpResponse HttpSession::get(const std::string& target) {
  return run(target, api_->timeouts().read, nullptr);
}

HttpResponse HttpSession::stream(const std::string& target, std::chrono::milliseconds readTimeout,
                                 const std::function<bool(std::string_view)>& onData) {
  return run(target, readTimeout, &onData);
}

void HttpSession::abort() {
  std::shared_ptr<httplib::ClientImpl> client;
  {
    std::lock_guard lock(mutex_);
    client = current_;
  }
  if (client) client->stop();
}

HttpResponse HttpSession::run(const std::string& target, std::chrono::milliseconds readTimeout,
                              const std::function<bool(std::string_view)>* onData) {
  HttpResponse response;
  std::shared_ptr<httplib::ClientImpl> client;
  try {
    client = api_->makeClient();
  } catch (const std::exception& e) {
    response.error = e.what();
    return response;
  }
  const KubeConfig& config = api_->config();
  client->set_connection_timeout(api_->timeouts().connect);
  client->set_read_timeout(readTimeout);
  client->set_url_encode(false);
  httplib::Headers headers{{"Accept", "application/json"},
                           {"Host", hostHeader(config)},
                           {"User-Agent", "pgkeel/" PGKEEL_VERSION}};
  std::string token = api_->token().get();
  if (!token.empty()) {
    headers.emplace("Authorization", "Bearer " + token);
  } else if (!config.username.empty()) {
    client->set_basic_auth(config.username, config.password);
  }
  bool streaming = false;
  auto onResponse = [&](const httplib::Response& r) {
    response.status = r.status;
    if (r.has_header("Retry-After")) {
      response.retryAfter = parseRetryAfter(r.get_header_value("Retry-After"));
    }
    streaming = onData != nullptr && r.status == 200;
    return true;
  };
  auto onBody = [&](const char* data, std::size_t length) {
    if (streaming) {
      if ((*onData)(std::string_view(data, length))) return true;
      response.aborted = true;
      return false;
    }
    if (response.body.size() + length > kMaxBodyBytes) return false;
    response.body.append(data, length);
    return true;
  };
  {
    std::lock_guard lock(mutex_);
    current_ = client;
  }
  httplib::Result result = client->Get(config.pathPrefix + target, headers, onResponse, onBody);
  {
    std::lock_guard lock(mutex_);
    current_.reset();
  }
  if (!result && !response.aborted) response.error = httplib::to_string(result.error());
  return response;
}

}  // namespace pgkeel::discovery::k8s
