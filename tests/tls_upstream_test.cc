// TLS to an upstream verifies the certificate: a self-signed upstream is refused
// unless its certificate is trusted. Real sockets, a real TLS server (cpp-httplib
// with OpenSSL), a certificate made by the openssl command for this test.
#include <gtest/gtest.h>

#include <thread>

#include "proxy/upstream_pool.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

class TlsUpstream : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "tls_" + RandomHex(4);
    auto made = testing::Run("mkdir -p " + dir_ +
                             " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
                             "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                             dir_ + "/key.pem -out " + dir_ + "/cert.pem");
    ASSERT_EQ(made.exit_code, 0) << made.output;
    server_ = std::make_unique<httplib::SSLServer>((dir_ + "/cert.pem").c_str(),
                                                   (dir_ + "/key.pem").c_str());
    ASSERT_TRUE(server_->is_valid());
    server_->Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"usage":{"prompt_tokens":1,"completion_tokens":1}})", "application/json");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    // Bound and listening already: connections wait in the backlog until it accepts.
    thread_ = std::thread([this] { server_->listen_after_bind(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }

  std::string dir_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

using testing::Ask;

TEST_F(TlsUpstream, AnUntrustedCertificateIsRefused) {
  UpstreamPool pool("https://127.0.0.1:" + std::to_string(port_), {});
  auto a = Ask(pool, "/v1/chat/completions");
  EXPECT_EQ(a.error, ClientError::kTls);
  EXPECT_NE(a.detail.find("certificate not trusted"), std::string::npos) << a.detail;
}

TEST_F(TlsUpstream, ATrustedCertificateIsAcceptedAndItsConnectionReused) {
  UpstreamPool pool("https://127.0.0.1:" + std::to_string(port_), {}, dir_ + "/cert.pem");
  for (int i = 0; i < 2; ++i) {
    auto a = Ask(pool, "/v1/chat/completions");
    EXPECT_EQ(a.error, ClientError::kNone) << a.detail;
    EXPECT_EQ(a.status, 200);
    EXPECT_NE(a.body.find("completion_tokens"), std::string::npos) << a.body;
    EXPECT_TRUE(a.reusable);
  }
}

TEST_F(TlsUpstream, SslCertFileAddsATrustedCertificate) {
  // As README says: OpenSSL's SSL_CERT_FILE replaces the system's store.
  setenv("SSL_CERT_FILE", (dir_ + "/cert.pem").c_str(), 1);
  UpstreamPool pool("https://127.0.0.1:" + std::to_string(port_), {});
  unsetenv("SSL_CERT_FILE");
  auto a = Ask(pool, "/v1/chat/completions");
  EXPECT_EQ(a.error, ClientError::kNone) << a.detail;
  EXPECT_EQ(a.status, 200);
}

TEST_F(TlsUpstream, ACertificateForAnotherNameIsRefusedEvenIfTrusted) {
  // The certificate names 127.0.0.1 only; "localhost" reaches the same server.
  UpstreamPool pool("https://localhost:" + std::to_string(port_), {}, dir_ + "/cert.pem");
  auto a = Ask(pool, "/v1/chat/completions");
  EXPECT_EQ(a.error, ClientError::kTls) << a.detail;
}

}  // namespace
}  // namespace tollgate
