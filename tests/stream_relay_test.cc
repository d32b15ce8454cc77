// The stream relay with real sockets: a raw upstream that writes a large chunked
// answer as fast as it can, and a client socket that at first reads nothing.
#include "net/stream_relay.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <thread>

#include "tests/test_env.h"

namespace tollgate {
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kChunks = 512;  // 32 MiB

char PatternByte(size_t i) { return static_cast<char>('a' + (i * 7 + i / 4096) % 26); }

// Accepts one connection, reads the request head, answers 200 with kChunks chunks.
// `finished` is set once everything was written.
class FastUpstream {
 public:
  FastUpstream() {
    listen_fd_ = testing::LoopbackSocket(&port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FastUpstream() {
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  std::atomic<bool> finished{false};

 private:
  void Serve() {
    int fd = accept(listen_fd_, nullptr, nullptr);
    std::string head;
    char buffer[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) return (void)close(fd);
      head.append(buffer, static_cast<size_t>(n));
    }
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t c = 0; c < kChunks; ++c) {
      char line[16];
      snprintf(line, sizeof(line), "%zx\r\n", kChunk);
      out += line;
      for (size_t i = 0; i < kChunk; ++i) out += PatternByte(c * kChunk + i);
      out += "\r\n";
      SendAll(fd, out);
      out.clear();
    }
    SendAll(fd, "0\r\n\r\n");
    finished = true;
    close(fd);
  }
  void SendAll(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

class PassThrough : public RelayedStream {
 public:
  explicit PassThrough(std::promise<bool>* done) : done_(done) {}
  std::string Transform(std::string_view upstream) override { return std::string(upstream); }
  std::string Finish(bool* complete) override {
    *complete = true;
    return "";
  }
  bool MayDrain() override { return false; }
  void Done(bool client_complete) override { done_->set_value(client_complete); }

 private:
  std::promise<bool>* done_;
};

TEST(StreamRelay, ASlowClientStopsTheUpstreamReadsAndThenGetsEveryByte) {
  FastUpstream upstream;
  UpstreamAddress address{.tls = false,
                          .host = "127.0.0.1",
                          .port = upstream.port(),
                          .authority = "127.0.0.1:" + std::to_string(upstream.port())};
  ClientError error = ClientError::kNone;
  std::string detail;
  auto connection = HttpConnection::Open(address, nullptr, ClientTimeouts{}, &error, &detail);
  ASSERT_NE(connection, nullptr) << detail;
  ASSERT_EQ(connection->Send(FormatRequest("POST", "/stream", address.authority, {}, "{}")),
            ClientError::kNone);
  ResponseHead head;
  ASSERT_EQ(connection->ReadHead(&head), ClientError::kNone);
  ASSERT_EQ(head.status, 200);

  int client[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, client), 0);
  std::promise<bool> done, finished;
  bool released = false;
  {
    StreamRelay relay(RelayTimeouts{});
    relay.Add(
        std::move(connection),
        [&](std::unique_ptr<HttpConnection> used) { released = used && used->reusable(); },
        ResponseWriter::Detached{.fd = client[0],
                                 .finish = [&](bool complete) { finished.set_value(complete); }},
        std::make_unique<PassThrough>(&done));

    // The client reads nothing: the relay must pause the upstream's reads (without
    // back-pressure it would take all 32 MiB in, and the upstream would finish).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (relay.read_pauses() == 0 && !upstream.finished &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    ASSERT_GT(relay.read_pauses(), 0u) << "the relay read on for a client that read nothing";
    EXPECT_FALSE(upstream.finished);

    // Now the client reads it all: the whole body, in order, then the last chunk.
    std::string in, body;
    ChunkedDecoder decoder;
    ChunkedDecoder::State state = ChunkedDecoder::State::kNeedMore;
    char buffer[64 * 1024];
    while (state == ChunkedDecoder::State::kNeedMore) {
      ssize_t n = recv(client[1], buffer, sizeof(buffer), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{.fd = client[1], .events = POLLIN, .revents = 0};
        ASSERT_EQ(poll(&p, 1, 30000), 1) << "the relay stopped writing";
        continue;
      }
      ASSERT_GT(n, 0);
      in.append(buffer, static_cast<size_t>(n));
      state = decoder.Decode(in, body);
    }
    ASSERT_EQ(state, ChunkedDecoder::State::kDone);
    ASSERT_EQ(body.size(), kChunk * kChunks);
    for (size_t i = 0; i < body.size(); i += 4093) ASSERT_EQ(body[i], PatternByte(i)) << i;
    EXPECT_TRUE(done.get_future().get());
    EXPECT_TRUE(finished.get_future().get());
    EXPECT_LE(relay.peak_buffered_bytes(), (1u << 20) + 256 * 1024 + kChunk);
  }
  EXPECT_TRUE(released) << "a connection read to its end goes back to the pool";
  close(client[0]);
  close(client[1]);
}

}  // namespace
}  // namespace tollgate
