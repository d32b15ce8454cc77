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

TEST_F(TlsUpstream, AnUntrustedCertificateIsRefused) {
  UpstreamPool pool("https://127.0.0.1:" + std::to_string(port_), {});
  auto client = pool.Acquire();
  auto r = client->Post("/v1/chat/completions", "{}", "application/json");
  EXPECT_FALSE(r);
  EXPECT_EQ(r.error(), httplib::Error::SSLServerVerification);
}

TEST_F(TlsUpstream, ATrustedCertificateIsAccepted) {
  UpstreamPool pool("https://127.0.0.1:" + std::to_string(port_), {});
  auto client = pool.Acquire();
  client->set_ca_cert_path((dir_ + "/cert.pem").c_str());
  auto r = client->Post("/v1/chat/completions", "{}", "application/json");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace tollgate
