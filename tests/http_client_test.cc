// The upstream client against a raw TCP server that answers exactly the bytes a test
// gives it: framings, broken answers, silence, and connections closed while idle.
#include "net/http_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>
#include <vector>

#include "proxy/upstream_pool.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

// Accepts `connections` connections one after another; on each, reads one request
// head and runs `answer(fd, index)`, then closes the connection.
class RawServer {
 public:
  RawServer(int connections, std::function<void(int fd, int index)> answer)
      : answer_(std::move(answer)) {
    listen_fd_ = testing::LoopbackSocket(&port_);
    thread_ = std::thread([this, connections] {
      for (int i = 0; i < connections; ++i) {
        int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) return;
        testing::ReadRequestHead(fd);
        answer_(fd, i);
        close(fd);
      }
    });
  }
  ~RawServer() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::function<void(int, int)> answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

void Write(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

TEST(HttpClient, ReadsEachFraming) {
  RawServer server(3, [](int fd, int i) {
    if (i == 0) Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    if (i == 1)
      Write(fd,
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n");
    if (i == 2) Write(fd, "HTTP/1.0 200 OK\r\n\r\nuntil the end");  // no length: until close
  });
  UpstreamPool pool(server.url(), {});
  auto length = testing::Ask(pool);
  EXPECT_EQ(length.error, ClientError::kNone);
  EXPECT_EQ(length.status, 200);
  EXPECT_EQ(length.body, "hello");
  auto chunked = testing::Ask(pool);
  EXPECT_EQ(chunked.status, 201);
  EXPECT_EQ(chunked.body, "abcde");
  auto until_close = testing::Ask(pool);
  EXPECT_EQ(until_close.error, ClientError::kNone);
  EXPECT_EQ(until_close.body, "until the end");
}

TEST(HttpClient, AConnectionTheUpstreamClosedWhileIdleIsReplaced) {
  // Each connection answers once, claiming keep-alive, then closes.
  RawServer server(2, [](int fd, int i) {
    Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + std::to_string(i));
  });
  UpstreamPool pool(server.url(), {});
  EXPECT_EQ(testing::Ask(pool).body, "0");
  auto second = testing::Ask(pool);
  EXPECT_EQ(second.error, ClientError::kNone);
  EXPECT_EQ(second.body, "1") << "the second request went to a new connection";
}

TEST(HttpClient, BrokenAnswersAndSilenceAreErrors) {
  RawServer server(3, [](int fd, int i) {
    if (i == 0) Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");  // then closes
    if (i == 1) Write(fd, "SMTP ready\r\n\r\n");
    if (i == 2) {
      char byte;
      recv(fd, &byte, 1, 0);  // says nothing until the client gives up and closes
    }
  });
  UpstreamPool pool(server.url(), ClientTimeouts{.connect_ms = 5000, .read_ms = 200});
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kClosed);
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kProtocol);
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kTimeout);
}

// Framings a lenient reader would take one way and another hop (or the provider)
// another: refused, as a malformed answer (502), never relayed.
TEST(HttpClient, RefusesLooseChunkFramingAndConflictingLengths) {
  const std::vector<std::string> answers = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
  };
  RawServer server(static_cast<int>(answers.size()), [&](int fd, int i) { Write(fd, answers[i]); });
  UpstreamPool pool(server.url(), {});
  for (const std::string& answer : answers) {
    auto a = testing::Ask(pool);
    EXPECT_EQ(a.error, ClientError::kProtocol) << answer;
  }
}

// Found by tests/fuzz/fuzz_upstream_answer: "000" was taken as the answer's status (and
// relayed as such), as anything below 100 or past 599 was.
TEST(HttpClient, AStatusHttpDoesNotDefineIsAProtocolError) {
  RawServer server(3, [](int fd, int i) {
    if (i == 0)
      Write(fd, "HTTP/1.1 000 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nContent-Length: 2\r\n\r\n{}");
    if (i == 1) Write(fd, "HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n");
    if (i == 2) Write(fd, "HTTP/1.1 599 Last\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });
  UpstreamPool pool(server.url(), {});
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kProtocol);
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kProtocol);
  auto last = testing::Ask(pool);
  EXPECT_EQ(last.error, ClientError::kNone);
  EXPECT_EQ(last.status, 599);
}

TEST(HttpClient, NothingListeningIsAConnectError) {
  int port = 0;
  int fd = testing::LoopbackSocket(&port, false);  // bound, never listening: refused
  UpstreamPool pool("http://127.0.0.1:" + std::to_string(port), {});
  EXPECT_EQ(testing::Ask(pool).error, ClientError::kConnect);
  close(fd);
}

// Drives a connection from OpenWithoutWaiting as an event loop would, waiting for the
// socket to be writable between calls: the connect's outcome, and why when it failed.
HttpConnection::Progress Connect(HttpConnection& c, ClientError* error, std::string* reason) {
  for (;;) {
    auto p = c.FinishConnect(error, reason);
    if (p != HttpConnection::Progress::kWouldBlock) return p;
    pollfd w{.fd = c.fd(), .events = POLLOUT, .revents = 0};
    if (poll(&w, 1, 5000) != 1) return HttpConnection::Progress::kWouldBlock;
  }
}

UpstreamAddress Address(const std::string& url) { return *ParseBaseUrl(url); }

TEST(HttpClient, PlainHttpToAnIpAddressOpensWithoutWaiting) {
  RawServer server(
      1, [](int fd, int) { Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); });
  ClientError error = ClientError::kNone;
  std::string detail, reason;
  auto c = HttpConnection::OpenWithoutWaiting(Address(server.url()), {}, &error, &detail);
  ASSERT_TRUE(c) << detail;
  ASSERT_EQ(Connect(*c, &error, &reason), HttpConnection::Progress::kDone) << reason;
  EXPECT_FALSE(c->connecting());
  ASSERT_EQ(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ClientError::kNone);
  ResponseHead head;
  ASSERT_EQ(c->ReadHead(&head, "GET"), ClientError::kNone);
  EXPECT_EQ(head.status, 200);
}

TEST(HttpClient, NamesAndTlsAreNotOpenedWithoutWaiting) {
  // A name may wait for DNS, and https for a handshake: those are for a worker.
  for (const char* url : {"http://localhost:80", "https://127.0.0.1:443", "https://[::1]:443"}) {
    EXPECT_FALSE(HttpConnection::OpensWithoutWaiting(Address(url))) << url;
    ClientError error = ClientError::kNone;
    std::string detail;
    EXPECT_FALSE(HttpConnection::OpenWithoutWaiting(Address(url), {}, &error, &detail)) << url;
    EXPECT_EQ(error, ClientError::kConnect);
  }
  EXPECT_TRUE(HttpConnection::OpensWithoutWaiting(Address("http://[::1]:11434")));
}

TEST(HttpClient, ARefusedConnectWithoutWaitingIsAConnectError) {
  int port = 0;
  int fd = testing::LoopbackSocket(&port, false);  // bound, never listening: refused
  ClientError error = ClientError::kNone;
  std::string detail, reason;
  auto url = "http://127.0.0.1:" + std::to_string(port);
  auto c = HttpConnection::OpenWithoutWaiting(Address(url), {}, &error, &detail);
  // Refused at once (then nothing to watch), or once the connect ends: the same error.
  if (c) {
    EXPECT_EQ(Connect(*c, &error, &reason), HttpConnection::Progress::kFailed);
    detail = reason;
  }
  EXPECT_EQ(error, ClientError::kConnect);
  EXPECT_NE(detail.find("Connection refused"), std::string::npos) << detail;
  close(fd);
}

TEST(HttpClient, APoolKeepsAtMostItsBoundOfIdleConnections) {
  int port = 0;
  int listener = testing::LoopbackSocket(&port);
  std::vector<int> accepted;
  std::thread server([&] {  // answers one request on each of three connections, keeps them
    for (int i = 0; i < 3; ++i) {
      int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      testing::ReadRequestHead(fd);
      Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      accepted.push_back(fd);
    }
  });
  UpstreamPool pool("http://127.0.0.1:" + std::to_string(port), {}, "", /*max_idle=*/2);
  std::vector<std::unique_ptr<HttpConnection>> held;
  for (int i = 0; i < 3; ++i) {  // three at once: each on a connection of its own
    ResponseHead head;
    ClientError error = ClientError::kNone;
    std::string detail;
    auto c = pool.Begin({.method = "POST", .target = "/x", .headers = {}, .body = "{}"}, &head,
                        &error, &detail);
    ASSERT_TRUE(c) << detail;
    ASSERT_EQ(c->ReadBody([](std::string_view) { return true; }), ClientError::kNone);
    held.push_back(std::move(c));
  }
  server.join();
  ASSERT_EQ(accepted.size(), 3u);
  for (auto& c : held) pool.Release(std::move(c));
  EXPECT_TRUE(pool.TakeIdle());
  EXPECT_TRUE(pool.TakeIdle());
  EXPECT_FALSE(pool.TakeIdle()) << "a third idle connection was kept beyond the bound";
  for (int fd : accepted) close(fd);
  close(listener);
}

}  // namespace
}  // namespace tollgate
