// TLS certificate and key from PEM files, read again at a handshake after the files change.
#include "inject/certificate_store.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <tuple>

namespace pgkeel::inject {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// The last OpenSSL error as text (and the queue cleared), or fallback.
std::string sslError(const std::string& fallback) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return fallback + " (" + text + ")";
}

std::string describe(X509* cert) {
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  BIO* bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, X509_get0_notAfter(cert));
  char* text = nullptr;
  long length = BIO_get_mem_data(bio, &text);
  std::string notAfter(text, static_cast<size_t>(length));
  BIO_free(bio);
  return std::string(subject) + ", valid until " + notAfter;
}

}  // namespace

struct TlsMaterial {
  std::unique_ptr<X509, X509Free> cert;
  std::unique_ptr<EVP_PKEY, KeyFree> key;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain;
};

struct FileStamp {
  struct stat cert {};
  struct stat key {};

  bool operator==(const FileStamp& other) const {
    auto fields = [](const struct stat& s) {
      return std::tuple(s.st_dev, s.st_ino, s.st_size, s.st_mtim.tv_sec, s.st_mtim.tv_nsec);
    };
    return fields(cert) == fields(other.cert) && fields(key) == fields(other.key);
  }
};

namespace {

// Reads the leaf, the rest of the chain and the key; null with problem set when unusable.
std::shared_ptr<TlsMaterial> readPair(const std::string& certPath, const std::string& keyPath,
                                      std::string& problem) {
  auto material = std::make_shared<TlsMaterial>();
  std::unique_ptr<BIO, BioFree> certBio(BIO_new_file(certPath.c_str(), "r"));
  if (certBio) material->cert.reset(PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr));
  if (!material->cert) {
    problem = sslError(certPath + ": no PEM certificate");
    return nullptr;
  }
  material->chain.reset(sk_X509_new_null());
  while (X509* extra = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(material->chain.get(), extra);
  }
  ERR_clear_error();  // the end of the file ends the loop with an error on the queue
  std::unique_ptr<BIO, BioFree> keyBio(BIO_new_file(keyPath.c_str(), "r"));
  if (keyBio) material->key.reset(PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr));
  if (!material->key) {
    problem = sslError(keyPath + ": no PEM private key");
    return nullptr;
  }
  if (X509_check_private_key(material->cert.get(), material->key.get()) != 1) {
    problem = sslError(keyPath + " is not the key of " + certPath);
    return nullptr;
  }
  return material;
}

}  // namespace

CertificateStore::CertificateStore(std::string certPath, std::string keyPath)
    : certPath_(std::move(certPath)), keyPath_(std::move(keyPath)) {}

CertificateStore::~CertificateStore() = default;

std::string CertificateStore::load() {
  auto stamp = std::make_unique<FileStamp>();
  stat(certPath_.c_str(), &stamp->cert);
  stat(keyPath_.c_str(), &stamp->key);
  std::string problem;
  std::shared_ptr<const TlsMaterial> material = readPair(certPath_, keyPath_, problem);
  if (!material) return problem;
  spdlog::info("TLS certificate {}", describe(material->cert.get()));
  std::lock_guard lock(mutex_);
  material_ = std::move(material);
  seen_ = std::move(stamp);
  ++generation_;
  return "";
}

void CertificateStore::attach(SSL_CTX* ctx) {
  SSL_CTX_set_cert_cb(ctx, &CertificateStore::onHandshake, this);
}

int CertificateStore::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

std::shared_ptr<const TlsMaterial> CertificateStore::current() const {
  std::lock_guard lock(mutex_);
  return material_;
}

void CertificateStore::refreshIfChanged() {
  FileStamp now;
  if (stat(certPath_.c_str(), &now.cert) != 0 || stat(keyPath_.c_str(), &now.key) != 0) return;
  std::lock_guard lock(mutex_);
  if (seen_ && *seen_ == now) return;
  seen_ = std::make_unique<FileStamp>(now);
  std::string problem;
  std::shared_ptr<const TlsMaterial> material = readPair(certPath_, keyPath_, problem);
  if (!material) {
    spdlog::warn("TLS files changed but cannot be used, keeping the previous certificate: {}",
                 problem);
    return;
  }
  material_ = std::move(material);
  ++generation_;
  spdlog::info("TLS certificate reloaded: {}", describe(material_->cert.get()));
}

int CertificateStore::onHandshake(SSL* ssl, void* self) {
  auto* store = static_cast<CertificateStore*>(self);
  store->refreshIfChanged();
  std::shared_ptr<const TlsMaterial> material = store->current();
  if (!material) return 0;
  return SSL_use_cert_and_key(ssl, material->cert.get(), material->key.get(), material->chain.get(),
                              1) == 1
             ? 1
             : 0;
}

}  // namespace pgkeel::inject
