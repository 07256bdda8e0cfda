// TLS certificate and key from PEM files, read again at a handshake after the files change.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>

namespace pgkeel::inject {

struct TlsMaterial;  // a certificate, its chain and its key
struct FileStamp;    // what stat(2) says about both files

// Hands every TLS handshake the newest good certificate (cert-manager renewals need no restart).
// A changed pair that cannot be used (unreadable, key not matching) is logged and the previous
// one kept; it is tried again when the files change again.
class CertificateStore {
 public:
  CertificateStore(std::string certPath, std::string keyPath);
  ~CertificateStore();
  CertificateStore(const CertificateStore&) = delete;
  CertificateStore& operator=(const CertificateStore&) = delete;

  // Reads both files now; returns the problem, or "" once a usable pair is loaded.
  std::string load();

  // Makes ctx take the certificate from this store at each handshake (SSL_CTX_set_cert_cb).
  // The store must outlive ctx's connections.
  void attach(SSL_CTX* ctx);

  // How many pairs were loaded so far (1 after load(), +1 per reload).
  int generation() const;

 private:
  static int onHandshake(SSL* ssl, void* self);
  void refreshIfChanged();
  std::shared_ptr<const TlsMaterial> current() const;

  std::string certPath_;
  std::string keyPath_;
  mutable std::mutex mutex_;
  std::shared_ptr<const TlsMaterial> material_;  // guarded by mutex_
  std::unique_ptr<FileStamp> seen_;              // the files' state last tried; guarded by mutex_
  int generation_ = 0;                           // guarded by mutex_
};

}  // namespace pgkeel::inject
