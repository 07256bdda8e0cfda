// Tests for the API client's TLS: server verification against the kubeconfig CA, insecure mode,
// and client certificates, against an in-process httplib::SSLServer with generated certificates.
#include "k8s_fake_apiserver.h"  // httplib with the library's build flags

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <thread>

#include "../../discovery/src/k8s/api_client.h"  // private to the library; tests reach in

namespace pgkeel::discovery::k8s {
namespace {

using testing::TempDir;

// A self-signed certificate for 127.0.0.1 (its own CA) and its key.
class TestCertificate {
 public:
  explicit TestCertificate(const std::string& commonName) {
    key_ = EVP_EC_gen("P-256");
    cert_ = X509_new();
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 3600);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(commonName.c_str()), -1, -1,
                               0);
    X509_set_issuer_name(cert_, name);
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, cert_, cert_, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
      X509_add_ext(cert_, extension, -1);
      X509_EXTENSION_free(extension);
    }
    X509_sign(cert_, key_, EVP_sha256());
  }
  ~TestCertificate() {
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  X509* cert() const { return cert_; }
  EVP_PKEY* key() const { return key_; }
  std::string certPem() const {
    return pem([this](BIO* bio) { PEM_write_bio_X509(bio, cert_); });
  }
  std::string keyPem() const {
    return pem([this](BIO* bio) {
      PEM_write_bio_PrivateKey(bio, key_, nullptr, nullptr, 0, nullptr, nullptr);
    });
  }

 private:
  template <typename F>
  static std::string pem(F write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    long length = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<std::size_t>(length));
    BIO_free(bio);
    return text;
  }

  EVP_PKEY* key_;
  X509* cert_;
};

// An HTTPS server on 127.0.0.1 answering every GET with an empty PodList.
class TlsServer {
 public:
  TlsServer(const TestCertificate& identity, X509_STORE* clientCas = nullptr)
      : server_(identity.cert(), identity.key(), clientCas) {
    server_.Get(".*", [](const httplib::Request&, httplib::Response& response) {
      response.set_content(R"({"kind":"PodList","metadata":{"resourceVersion":"1"},"items":[]})",
                           "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (port_ > 0 && !server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~TlsServer() {
    server_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return static_cast<std::uint16_t>(port_); }

 private:
  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
};

HttpResponse getPods(const KubeConfig& config) {
  HttpSession session(std::make_shared<ApiClient>(
      config, HttpTimeouts{std::chrono::milliseconds(1000), std::chrono::milliseconds(2000)}));
  return session.get("/api/v1/namespaces/db/pods");
}

KubeConfig httpsConfig(std::uint16_t port) {
  KubeConfig config;
  config.origin = "test";
  config.host = "127.0.0.1";
  config.port = port;
  config.token = "t";
  return config;
}

// The server is verified against the CA from the kubeconfig (data or file); the system store
// or another CA refuses it; insecure-skip-tls-verify accepts it.
TEST(K8sTls, VerifiesTheServerAgainstTheConfiguredCa) {
  TestCertificate serverCert("apiserver");
  TestCertificate otherCa("other");
  TlsServer server(serverCert);
  KubeConfig config = httpsConfig(server.port());

  config.ca.data = serverCert.certPem();
  HttpResponse trusted = getPods(config);
  EXPECT_EQ(trusted.status, 200) << trusted.error;
  EXPECT_NE(trusted.body.find("PodList"), std::string::npos);

  TempDir dir;
  testing::writeFile(dir.file("ca.crt"), serverCert.certPem());
  config.ca = PemSource{dir.file("ca.crt"), ""};
  EXPECT_EQ(getPods(config).status, 200);

  config.ca = PemSource{"", otherCa.certPem()};
  HttpResponse wrongCa = getPods(config);
  EXPECT_EQ(wrongCa.status, 0);
  EXPECT_NE(wrongCa.error, "");

  config.ca = PemSource{};
  EXPECT_EQ(getPods(config).status, 0);  // the system's trust store does not know it

  config.insecureSkipTlsVerify = true;
  config.ca = PemSource{"", otherCa.certPem()};
  EXPECT_EQ(getPods(config).status, 200);

  config.insecureSkipTlsVerify = false;
  config.ca = PemSource{dir.file("missing.crt"), ""};
  HttpResponse missing = getPods(config);
  EXPECT_EQ(missing.status, 0);
  EXPECT_NE(missing.error.find("missing.crt"), std::string::npos) << missing.error;
}

// A server that requires client certificates accepts the kubeconfig's certificate and key.
TEST(K8sTls, SendsTheClientCertificate) {
  TestCertificate serverCert("apiserver");
  TestCertificate clientCert("pgkeel");
  X509_STORE* clientCas = X509_STORE_new();
  X509_STORE_add_cert(clientCas, clientCert.cert());
  TlsServer server(serverCert, clientCas);
  KubeConfig config = httpsConfig(server.port());
  config.ca.data = serverCert.certPem();
  EXPECT_EQ(getPods(config).status, 0);  // no client certificate

  config.clientCert.data = clientCert.certPem();
  config.clientKey.data = clientCert.keyPem();
  HttpResponse response = getPods(config);
  EXPECT_EQ(response.status, 200) << response.error;
}

}  // namespace
}  // namespace pgkeel::discovery::k8s
