// Tests for Kubernetes API settings: kubeconfig YAML, in-cluster files and variables, the token.
#include "../../discovery/src/k8s/kube_config.h"  // private to the library; tests reach in

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "k8s_fake_apiserver.h"

namespace pgkeel::discovery::k8s {
namespace {

using testing::TempDir;
using testing::writeFile;

// The message of the std::runtime_error `f` throws ("" when it does not).
template <typename F>
std::string errorOf(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

const char* kKubeConfig = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: other
  cluster: {server: "https://other:1"}
- name: kind
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
- name: prod
  context: {cluster: other, user: admin}
- name: dev
  context: {cluster: kind, user: dev-user, namespace: db}
users:
- name: admin
  user: {exec: {command: aws}}
- name: dev-user
  user:
    token: abc.def
    client-certificate: certs/client.crt
    client-key: /abs/client.key
)";

// The current context picks its cluster, user and namespace; relative paths follow the file.
TEST(K8sKubeConfig, ReadsTheCurrentContext) {
  KubeConfig config = parseKubeConfig(kKubeConfig, "/home/me/.kube/config");
  EXPECT_EQ(config.origin, "/home/me/.kube/config");
  EXPECT_EQ(config.scheme, "https");
  EXPECT_EQ(config.host, "127.0.0.1");
  EXPECT_EQ(config.port, 6443);
  EXPECT_EQ(config.pathPrefix, "");
  EXPECT_EQ(config.ca.data, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(config.ca.file, "");
  EXPECT_EQ(config.token, "abc.def");
  EXPECT_EQ(config.clientCert.file, "/home/me/.kube/certs/client.crt");
  EXPECT_EQ(config.clientKey.file, "/abs/client.key");
  EXPECT_EQ(config.ns, "db");
  EXPECT_FALSE(config.insecureSkipTlsVerify);
}

// http servers, IPv6 hosts, path prefixes, tokenFile, insecure mode and the default namespace.
TEST(K8sKubeConfig, ReadsPlainHttpIpv6AndTokenFile) {
  KubeConfig config = parseKubeConfig(R"(
current-context: c
clusters: [{name: k, cluster: {server: "http://[::1]:8080/k8s/clusters/c-1/",
                                insecure-skip-tls-verify: true,
                                certificate-authority: ca.pem}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {tokenFile: tok}}]
)",
                                      "conf/kubeconfig");
  EXPECT_EQ(config.scheme, "http");
  EXPECT_EQ(config.host, "::1");
  EXPECT_EQ(config.port, 8080);
  EXPECT_EQ(config.pathPrefix, "/k8s/clusters/c-1");
  EXPECT_EQ(config.serverUrl(), "http://[::1]:8080/k8s/clusters/c-1");
  EXPECT_TRUE(config.insecureSkipTlsVerify);
  EXPECT_EQ(config.ca.file, "conf/ca.pem");
  EXPECT_EQ(config.tokenFile, "conf/tok");
  EXPECT_EQ(config.ns, "default");
}

// Every error names the file and the key at fault.
TEST(K8sKubeConfig, ErrorsNameTheFileAndKey) {
  auto parse = [](const std::string& yaml) {
    return errorOf([&] { parseKubeConfig(yaml, "/k/config"); });
  };
  EXPECT_EQ(parse("clusters: []\n"), "kubeconfig /k/config: current-context: missing or empty");
  EXPECT_EQ(parse("current-context: x\ncontexts: []\n"),
            "kubeconfig /k/config: contexts: no entry named \"x\" (named by current-context)");
  std::string exec = kKubeConfig;
  exec.replace(exec.find("current-context: dev"), 20, "current-context: prod");
  EXPECT_NE(parse(exec).find("kubeconfig /k/config: users[name=admin].user.exec: not supported"),
            std::string::npos)
      << parse(exec);
  std::string badCa = kKubeConfig;
  badCa.replace(badCa.find("LS0t"), 4, "LS0_");
  EXPECT_EQ(parse(badCa),
            "kubeconfig /k/config: clusters[name=kind].cluster.certificate-authority-data: not "
            "valid base64");
  EXPECT_NE(parse("current-context: [unclosed\n").find("kubeconfig /k/config: line "),
            std::string::npos);
  std::string ftp = kKubeConfig;
  ftp.replace(ftp.find("https://127"), 5, "ftp");
  EXPECT_NE(parse(ftp).find("clusters[name=kind].cluster.server"), std::string::npos);
  EXPECT_EQ(errorOf([] { loadKubeConfig("/nonexistent/kubeconfig"); }),
            "kubeconfig /nonexistent/kubeconfig: cannot read");
}

// Base64 with padding and line breaks decodes exactly; junk is refused.
TEST(K8sKubeConfig, DecodesBase64) {
  std::string out;
  EXPECT_TRUE(decodeBase64("aGVsbG8=", &out));
  EXPECT_EQ(out, "hello");
  EXPECT_TRUE(decodeBase64("aGVs\nbG8h", &out));
  EXPECT_EQ(out, "hello!");
  EXPECT_TRUE(decodeBase64("aA==", &out));
  EXPECT_EQ(out, "h");
  EXPECT_FALSE(decodeBase64("aGVsbG8", &out));
  EXPECT_FALSE(decodeBase64("a*==", &out));
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old) old_ = old;
    had_ = old != nullptr;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// In-cluster: host and port from the variables (IPv6 bracketed), files from the account dir,
// namespace from POD_NAMESPACE first, then the namespace file, then "default".
TEST(K8sInClusterConfig, ReadsVariablesAndServiceAccountFiles) {
  TempDir dir;
  writeFile(dir.file("ca.crt"), "pem");
  writeFile(dir.file("token"), "t1\n");
  writeFile(dir.file("namespace"), "db\n");
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "fd00::1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  {
    ScopedEnv ns("POD_NAMESPACE", nullptr);
    KubeConfig config = inClusterConfig(dir.path());
    EXPECT_EQ(config.serverUrl(), "https://[fd00::1]:443");
    EXPECT_EQ(config.host, "fd00::1");
    EXPECT_EQ(config.ca.file, dir.file("ca.crt"));
    EXPECT_EQ(config.tokenFile, dir.file("token"));
    EXPECT_EQ(config.token, "");
    EXPECT_EQ(config.ns, "db");
    std::filesystem::remove(dir.file("namespace"));
    EXPECT_EQ(inClusterConfig(dir.path()).ns, "default");
  }
  ScopedEnv ns("POD_NAMESPACE", "from-env");
  EXPECT_EQ(inClusterConfig(dir.path()).ns, "from-env");
}

// Outside a pod (no variables, or no token) the error says what is missing.
TEST(K8sInClusterConfig, ExplainsWhatIsMissing) {
  TempDir dir;
  {
    ScopedEnv host("KUBERNETES_SERVICE_HOST", nullptr);
    EXPECT_NE(errorOf([&] { inClusterConfig(dir.path()); }).find("KUBERNETES_SERVICE_HOST"),
              std::string::npos);
  }
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  writeFile(dir.file("ca.crt"), "pem");
  EXPECT_NE(errorOf([&] { inClusterConfig(dir.path()); }).find(dir.file("token")),
            std::string::npos);
}

// A token file is read again once the last read is older than maxAge, or after invalidate().
TEST(K8sTokenSource, RereadsTheFileWhenOldOrInvalidated) {
  TempDir dir;
  writeFile(dir.file("token"), "one\n");
  TokenSource token("", dir.file("token"), std::chrono::milliseconds(150));
  EXPECT_EQ(token.get(), "one");
  writeFile(dir.file("token"), "two");
  EXPECT_EQ(token.get(), "one");  // still fresh
  token.invalidate();
  EXPECT_EQ(token.get(), "two");
  writeFile(dir.file("token"), "three");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(token.get(), "three");
  std::filesystem::remove(dir.file("token"));
  token.invalidate();
  EXPECT_EQ(token.get(), "three");  // a failed re-read keeps the last token
  EXPECT_EQ(token.reads(), 3u);
  TokenSource fixed("static", "");
  fixed.invalidate();
  EXPECT_EQ(fixed.get(), "static");
}

}  // namespace
}  // namespace pgkeel::discovery::k8s
