// Tests for the HTTPS server: the endpoints over real TLS, 400 and 413, and certificate reload.
#include "inject/webhook_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_httplib.h"
#include "test_certs.h"
#include "test_pods.h"

namespace pgkeel::inject {
namespace {

using nlohmann::json;
using namespace fixtures;

class InjectWebhookServer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("pgkeel-webhook-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    writeTestPki(dir_.string(), "first CA");
    store_ = std::make_unique<CertificateStore>(path("tls.crt"), path("tls.key"));
    ASSERT_EQ(store_->load(), "");
    std::string error;
    server_ = std::make_unique<WebhookServer>(testConfig(), *store_);
    ASSERT_TRUE(server_->start("127.0.0.1", 0, &error)) << error;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A client that trusts only the CA in caFile and checks the certificate is for 127.0.0.1.
  std::unique_ptr<httplib::SSLClient> client(const std::string& caFile) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port());
    c->set_ca_cert_path(caFile.c_str());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(5);
    c->set_read_timeout(5);
    return c;
  }
  std::string path(const char* name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
  std::unique_ptr<CertificateStore> store_;
  std::unique_ptr<WebhookServer> server_;
};

// /healthz and /readyz answer 200 over TLS verified against the CA.
TEST_F(InjectWebhookServer, HealthAndReadiness) {
  auto c = client(path("ca.pem"));
  for (const char* endpoint : {"/healthz", "/readyz"}) {
    auto response = c->Get(endpoint);
    ASSERT_TRUE(response) << endpoint << ": " << httplib::to_string(response.error());
    EXPECT_EQ(response->status, 200);
  }
}

// POST /mutate answers an annotated pod with a patch and a non-JSON body with 400, and the
// server keeps answering after it.
TEST_F(InjectWebhookServer, MutateAnswersAndSurvivesGarbage) {
  auto c = client(path("ca.pem"));
  auto bad = c->Post("/mutate", "{not json", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, ::testing::HasSubstr("not JSON"));
  auto good =
      c->Post("/mutate", reviewFor(realisticPod(cnpgAnnotations())).dump(), "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  json answer = json::parse(good->body);
  EXPECT_EQ(answer["response"]["patchType"], "JSONPatch");
  EXPECT_EQ(answer["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
}

// A body over the limit is refused with 413 without reading it whole.
TEST_F(InjectWebhookServer, LargeBodyGets413) {
  auto c = client(path("ca.pem"));
  auto response = c->Post("/mutate", std::string(kMaxBodyBytes + 1, ' '), "application/json");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(c->Get("/healthz")->status, 200);
}

// New certificate files from another CA are served at the next handshake, without a restart;
// a key that does not match keeps the previous pair.
TEST_F(InjectWebhookServer, ReloadsChangedCertificate) {
  std::filesystem::copy_file(path("ca.pem"), path("first-ca.pem"));
  std::filesystem::copy_file(path("tls.key"), path("first.key"));
  writeTestPki(dir_.string(), "second CA");
  ASSERT_TRUE(client(path("ca.pem"))->Get("/healthz")) << "new CA refused";
  EXPECT_EQ(store_->generation(), 2);
  EXPECT_FALSE(client(path("first-ca.pem"))->Get("/healthz")) << "old CA still accepted";
  std::filesystem::copy_file(path("first.key"), path("tls.key"),
                             std::filesystem::copy_options::overwrite_existing);
  auto kept = client(path("ca.pem"))->Get("/healthz");
  ASSERT_TRUE(kept) << "a mismatched key must keep the previous certificate";
  EXPECT_EQ(store_->generation(), 2);
}

// stop() returns promptly and is idempotent.
TEST_F(InjectWebhookServer, StopsCleanly) {
  ASSERT_TRUE(client(path("ca.pem"))->Get("/healthz"));
  server_->stop();
  EXPECT_TRUE(server_->stopped());
  server_->stop();
  EXPECT_FALSE(client(path("ca.pem"))->Get("/healthz"));
}

}  // namespace
}  // namespace pgkeel::inject
