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
#include <functional>
#include <future>
#include <stdexcept>
#include <thread>

#include "tests/test_env.h"

namespace tollgate {
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kChunks = 512;  // 32 MiB

char PatternByte(size_t i) { return static_cast<char>('a' + (i * 7 + i / 4096) % 26); }

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Accepts one connection, reads the request head and lets `answer` write to it.
class RawUpstream {
 public:
  explicit RawUpstream(std::function<void(int fd)> answer) : answer_(std::move(answer)) {
    listen_fd_ = testing::LoopbackSocket(&port_);
    thread_ = std::thread([this] {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      testing::ReadRequestHead(fd);
      answer_(fd);
      close(fd);
    });
  }
  ~RawUpstream() {
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  std::function<void(int fd)> answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// Answers 200 with kChunks chunks as fast as the socket takes them; `finished` once all
// were written.
void FastAnswer(int fd, std::atomic<bool>* finished) {
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
  *finished = true;
}

// A connection to a raw upstream on `port` with a streaming request sent on it.
std::unique_ptr<HttpConnection> AskForStream(int port) {
  UpstreamAddress address{.tls = false,
                          .host = "127.0.0.1",
                          .port = port,
                          .authority = "127.0.0.1:" + std::to_string(port)};
  ClientError error = ClientError::kNone;
  std::string detail;
  auto connection = HttpConnection::Open(address, nullptr, ClientTimeouts{}, &error, &detail);
  if (connection == nullptr) {
    ADD_FAILURE() << detail;
  } else if (connection->Send(FormatRequest("POST", "/stream", address.authority, {}, "{}")) !=
             ClientError::kNone) {
    ADD_FAILURE() << "the request could not be sent";
    connection.reset();
  }
  return connection;
}

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

// The client's side of a relayed stream: a socket pair (the relay writes to fd[0], the
// test reads fd[1]) and what the relay reports.
struct Client {
  Client() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0); }
  ~Client() {
    close(fd[0]);
    close(fd[1]);
  }
  void Take(StreamRelay& relay, std::unique_ptr<HttpConnection> upstream,
            std::unique_ptr<RelayedStream> stream, std::string head = "") {
    relay.Add(
        std::move(upstream),
        [this](std::unique_ptr<HttpConnection> used) { released = used && used->reusable(); },
        ResponseWriter::Detached{.fd = fd[0],
                                 .finish = [this](bool complete) { finished.set_value(complete); },
                                 .head = std::move(head)},
        std::move(stream));
  }
  int fd[2] = {-1, -1};
  std::promise<bool> done, finished;
  bool released = false;
};

TEST(StreamRelay, ASlowClientStopsTheUpstreamReadsAndThenGetsEveryByte) {
  std::atomic<bool> upstream_finished{false};
  RawUpstream upstream([&](int fd) { FastAnswer(fd, &upstream_finished); });
  auto connection = AskForStream(upstream.port());
  ASSERT_NE(connection, nullptr);
  ResponseHead head;
  ASSERT_EQ(connection->ReadHead(&head), ClientError::kNone);
  ASSERT_EQ(head.status, 200);

  Client client;
  {
    StreamRelay relay(RelayTimeouts{});
    client.Take(relay, std::move(connection), std::make_unique<PassThrough>(&client.done));

    // The client reads nothing: the relay must pause the upstream's reads (without
    // back-pressure it would take all 32 MiB in, and the upstream would finish).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (relay.read_pauses() == 0 && !upstream_finished &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    ASSERT_GT(relay.read_pauses(), 0u) << "the relay read on for a client that read nothing";
    EXPECT_FALSE(upstream_finished);

    // Now the client reads it all: the whole body, in order, then the last chunk.
    std::string in, body;
    ChunkedDecoder decoder;
    ChunkedDecoder::State state = ChunkedDecoder::State::kNeedMore;
    char buffer[64 * 1024];
    while (state == ChunkedDecoder::State::kNeedMore) {
      ssize_t n = recv(client.fd[1], buffer, sizeof(buffer), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{.fd = client.fd[1], .events = POLLIN, .revents = 0};
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
    EXPECT_TRUE(client.done.get_future().get());
    EXPECT_TRUE(client.finished.get_future().get());
    EXPECT_LE(relay.peak_buffered_bytes(), (1u << 20) + 256 * 1024 + kChunk);
  }
  EXPECT_TRUE(client.released) << "a connection read to its end goes back to the pool";
}

// Answers with the head and a whole short chunked body in one write; `sent` once that
// write is done (on loopback the bytes are then in the reader's queue). Keeps the
// connection until the client closes it.
void OneWriteAnswer(int fd, const std::string& body, std::promise<void>* sent) {
  char size[16];
  snprintf(size, sizeof(size), "%zx\r\n", body.size());
  std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(size) +
                    body + "\r\n0\r\n\r\n";
  EXPECT_EQ(send(fd, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  sent->set_value();
  char rest;
  (void)recv(fd, &rest, 1, 0);
}

// Records which thread transformed the first bytes, where the test can read it after
// the relay has finished with (and deleted) the transform.
class ThreadRecorder : public PassThrough {
 public:
  using PassThrough::PassThrough;
  std::string Transform(std::string_view upstream) override {
    if (*first_thread == std::thread::id()) *first_thread = std::this_thread::get_id();
    return PassThrough::Transform(upstream);
  }
  std::shared_ptr<std::thread::id> first_thread = std::make_shared<std::thread::id>();
};

TEST(StreamRelay, BytesThatCameWithTheHeadLeaveFromTheAddingThread) {
  std::promise<void> sent;
  RawUpstream upstream([&](int fd) { OneWriteAnswer(fd, "data: first event\n\n", &sent); });
  auto connection = AskForStream(upstream.port());
  ASSERT_NE(connection, nullptr);
  sent.get_future().wait();
  ResponseHead head;
  ASSERT_EQ(connection->ReadHead(&head), ClientError::kNone);

  Client client;
  auto recorder = std::make_unique<ThreadRecorder>(&client.done);
  std::shared_ptr<std::thread::id> first_thread = recorder->first_thread;
  {
    StreamRelay relay(RelayTimeouts{});
    const std::string client_head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    client.Take(relay, std::move(connection), std::move(recorder), client_head);
    // Add has returned: the client's head and the first event are in its socket
    // already, in one write, by this thread, not by the relay's once it woke up.
    EXPECT_EQ(*first_thread, std::this_thread::get_id());
    char buffer[256];
    ssize_t n = recv(client.fd[1], buffer, sizeof(buffer), MSG_DONTWAIT);
    ASSERT_GT(n, 0) << "nothing was written before the relay took over";
    std::string in(buffer, static_cast<size_t>(n));
    EXPECT_EQ(in.rfind(client_head, 0), 0u) << in;
    EXPECT_NE(in.find("data: first event"), std::string::npos) << in;

    // The answer had ended too: the relay closes it (the last chunk) and releases the
    // connection for reuse.
    EXPECT_TRUE(client.finished.get_future().get());
    EXPECT_TRUE(client.done.get_future().get());
    while (in.find("0\r\n\r\n") == std::string::npos) {
      pollfd p{.fd = client.fd[1], .events = POLLIN, .revents = 0};
      ASSERT_EQ(poll(&p, 1, 10000), 1) << in;
      n = recv(client.fd[1], buffer, sizeof(buffer), 0);
      ASSERT_GT(n, 0);
      in.append(buffer, static_cast<size_t>(n));
    }
  }
  EXPECT_TRUE(client.released);
}

// A stream whose transform (or settlement) has a bug: it throws.
class Throwing : public PassThrough {
 public:
  Throwing(std::promise<bool>* done, bool in_transform)
      : PassThrough(done), in_transform_(in_transform) {}
  std::string Transform(std::string_view upstream) override {
    if (in_transform_) throw std::runtime_error("an observer's bug");
    return PassThrough::Transform(upstream);
  }
  std::string Finish(bool* complete) override {
    *complete = true;
    return in_transform_ ? "event: error" : "";
  }
  void Done(bool client_complete) override {
    PassThrough::Done(client_complete);
    if (!in_transform_) throw std::runtime_error("a settlement's bug");
  }

 private:
  bool in_transform_;
};

// Reads the client's side until the last chunk (or 10 s of silence).
std::string ReadToLastChunk(int fd) {
  std::string in;
  char buffer[256];
  while (in.find("0\r\n\r\n") == std::string::npos) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 10000) != 1) break;
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    in.append(buffer, static_cast<size_t>(n));
  }
  return in;
}

// Relays a one-event stream through a Throwing stream: what its client read, whether
// its connection was given back complete, and how many exceptions were counted.
struct ThrownStream {
  std::string client_read;
  bool given_back_complete = false;
  uint64_t internal_errors = 0;
};
ThrownStream RelayThrowing(bool in_transform) {
  ThrownStream out;
  std::promise<void> sent;
  RawUpstream upstream([&](int fd) { OneWriteAnswer(fd, "data: first event\n\n", &sent); });
  auto connection = AskForStream(upstream.port());
  if (connection == nullptr) return out;
  sent.get_future().wait();
  ResponseHead head;
  EXPECT_EQ(connection->ReadHead(&head), ClientError::kNone);
  Metrics metrics;
  Client client;
  {
    StreamRelay relay(RelayTimeouts{}, 2, Boundary(&metrics));
    client.Take(relay, std::move(connection),
                std::make_unique<Throwing>(&client.done, in_transform));
    out.client_read = ReadToLastChunk(client.fd[1]);
    EXPECT_TRUE(client.done.get_future().get());
    out.given_back_complete = client.finished.get_future().get();
  }
  out.internal_errors = metrics.Get(Counter::kInternalErrors);
  return out;
}

TEST(StreamRelay, ATransformThatThrowsEndsTheStreamWithItsErrorAndGivesTheClientBack) {
  ThrownStream s = RelayThrowing(true);
  EXPECT_NE(s.client_read.find("c\r\nevent: error\r\n0\r\n\r\n"), std::string::npos)
      << s.client_read;
  EXPECT_EQ(s.client_read.find("first event"), std::string::npos)
      << "bytes the transform did not pass";
  EXPECT_TRUE(s.given_back_complete);
  EXPECT_EQ(s.internal_errors, 1u);
}

TEST(StreamRelay, ASettlementThatThrowsStillGivesTheClientConnectionBack) {
  // Done() throws after the answer went out whole: the connection is still given back.
  ThrownStream s = RelayThrowing(false);
  EXPECT_NE(s.client_read.find("first event"), std::string::npos) << s.client_read;
  EXPECT_TRUE(s.given_back_complete);
  EXPECT_EQ(s.internal_errors, 1u);
}

}  // namespace
}  // namespace tollgate
