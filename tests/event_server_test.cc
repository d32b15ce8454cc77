// The event-driven server over real sockets: keep-alive, pipelining, framing, limits,
// the streaming writer, and that idle connections hold no thread.
#include "net/event_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

namespace tollgate {
namespace {

// A raw client socket, so tests control every byte on the wire.
class RawClient {
 public:
  explicit RawClient(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawClient() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& bytes) {
    ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Reads until `needle` has arrived (or the peer closed / 10 s passed); returns all read.
  std::string ReadUntil(const std::string& needle) {
    while (buffer_.find(needle) == std::string::npos) {
      if (!ReadSome()) break;
    }
    return buffer_;
  }
  // Reads until the server closes the connection; true if it did.
  bool ReadsToClose() {
    while (ReadSome()) {
    }
    return closed_;
  }
  void Clear() { buffer_.clear(); }
  void HangUpWriting() { shutdown(fd_, SHUT_WR); }
  // Whether the server has said something (or closed) within `ms`.
  bool Readable(int ms) {
    pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
    return poll(&p, 1, ms) == 1;
  }
  int fd() const { return fd_; }

 private:
  bool ReadSome() {
    char chunk[4096];
    ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      closed_ = n == 0;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
  std::string buffer_;
};

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1))
    ++n;
  return n;
}

// Each of `parts` is in `all`, each after the one before.
void ExpectInOrder(const std::string& all, std::initializer_list<std::string> parts) {
  size_t from = 0;
  for (const std::string& part : parts) {
    size_t at = all.find(part, from);
    ASSERT_NE(at, std::string::npos) << "no \"" << part << "\" in order in:\n" << all;
    from = at + part.size();
  }
}

class EventServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<EventServer>(
        ServerTuning{.worker_threads = 64, .max_body_bytes = 1024, .keep_alive_seconds = 60});
    server_->Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("got " + req.body + " at " + req.target, "text/plain");
    });
    server_->Get("/query", [](const httplib::Request& req, httplib::Response& res) {
      std::string out;
      for (const auto& [name, value] : req.params) out += "[" + name + "=" + value + "]";
      res.set_content(out + " path " + req.path, "text/plain");
    });
    server_->Get("/items/*", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("item " + std::string(PathSegment(req.path, 1)), "text/plain");
    });
    server_->Streaming("GET", "/stream",
                       [this](const httplib::Request&, httplib::Response&, ResponseWriter& w) {
                         w.Begin(200, {{"Content-Type", "text/event-stream"}});
                         w.Write("first");
                         // The client has the headers and the first chunk before the handler goes
                         // on.
                         first_seen_.get_future().wait();
                         w.Write("second");
                         w.End();
                       });
    server_->Streaming("GET", "/firehose",
                       [this](const httplib::Request&, httplib::Response&, ResponseWriter& w) {
                         w.Begin(200, {});
                         std::string block(64 * 1024, 'x');
                         int writes = 0;
                         while (writes < 100'000 && w.Write(block)) ++writes;
                         firehose_writes_.set_value(writes);
                       });
    server_->Streaming("GET", "/detach",
                       [this](const httplib::Request&, httplib::Response&, ResponseWriter& w) {
                         w.Begin(200, {});
                         detached_.set_value(w.Detach());
                       });
    server_->OnLoop(
        "POST", "/loop/*",
        [this](const httplib::Request& req, const LoopReply& reply) {
          std::string_view what = PathSegment(req.path, 1);
          if (what == "decline") return false;
          if (what == "later") {
            later_.set_value(reply);
            return true;
          }
          if (what == "detach") {
            // Taken on the loop, begun and handed over without a write (a relay's).
            detached_.set_value(reply.DetachWithHead(200, {{"Content-Type", "text/plain"}}));
            return true;
          }
          if (what == "handoff") {
            // Taken on the loop, answered by a worker through a writer: a stream, say.
            reply.ToWorker(
                [this](const httplib::Request& handed, httplib::Response&, ResponseWriter& w) {
                  w.Begin(200, {{"Content-Type", "text/event-stream"}});
                  w.Write("handed " + handed.body);
                  w.Write(server_->InLoopThread() ? " on the loop" : " off the loop");
                  w.End();
                });
            return true;
          }
          httplib::Response res;
          res.set_content("loop " + req.body + (server_->InLoopThread() ? " on the loop" : ""),
                          "text/plain");
          reply.Send(res);
          return true;
        },
        [](const httplib::Request& req, httplib::Response& res, ResponseWriter&) {
          res.set_content("worker " + req.body, "text/plain");
        });
    // Prefix routes, on the loop (POST) and on a worker (GET); a pattern route after them
    // takes what they do not.
    server_->OnLoop(
        "POST", PathPrefix{"/pre/"},
        [](const httplib::Request& req, const LoopReply& reply) {
          httplib::Response res;
          res.set_content(
              "prefix loop [" + req.path + "] groups " + std::to_string(req.matches.size()),
              "text/plain");
          reply.Send(res);
          return true;
        },
        nullptr);
    server_->Streaming("GET", PathPrefix{"/pre/"},
                       [](const httplib::Request& req, httplib::Response& res, ResponseWriter&) {
                         res.set_content("prefix worker [" + req.path + "]", "text/plain");
                       });
    server_->Get("/*/a", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("pattern [" + std::string(PathSegment(req.path, 0)) + "]", "text/plain");
    });
    server_->set_error_renderer([](const httplib::Request& req, int status,
                                   const std::string& message, httplib::Response& res) {
      res.set_content("rendered " + std::to_string(status) + " for [" + req.path + "]: " + message,
                      "text/plain");
    });
    port_ = server_->Start("127.0.0.1", 0);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { server_->Stop(); }

  std::unique_ptr<EventServer> server_;
  int port_ = -1;
  std::promise<void> first_seen_;
  std::promise<int> firehose_writes_;
  std::promise<ResponseWriter::Detached> detached_;
  std::promise<LoopReply> later_;
};

TEST_F(EventServerTest, AnswersManyRequestsOnOneKeptAliveConnection) {
  RawClient c(port_);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    c.Clear();
    c.Send("POST /echo?n=" + std::to_string(i) +
           " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    std::string expected = "got hello at /echo?n=" + std::to_string(i);
    std::string reply = c.ReadUntil(expected);
    EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
    EXPECT_NE(reply.find("Content-Length: " + std::to_string(expected.size()) + "\r\n"),
              std::string::npos)
        << reply;
    EXPECT_EQ(reply.find("Connection: close"), std::string::npos);
  }
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(EventServerTest, AnswersPipelinedRequestsInOrder) {
  RawClient c(port_);
  c.Send(
      "GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "1\r\n\r\nzGET "
      "/items/3 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string reply = c.ReadUntil("item 3");
  size_t one = reply.find("item 1"), two = reply.find("got z"), three = reply.find("item 3");
  ASSERT_NE(three, std::string::npos) << reply;
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_EQ(Count(reply, "HTTP/1.1 200 OK"), 3u);
}

TEST(EventServer, IdleConnectionsHoldNoThread) {
  // Two workers and 200 open connections, every one of them served, twice: with a thread
  // per open connection (cpp-httplib 0.11) the third connection would wait for one of the
  // first two to close. Here a connection between requests is only an entry in epoll.
  EventServer server(ServerTuning{.worker_threads = 2});
  server.Get("/items/*", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content("item " + std::string(PathSegment(req.path, 1)), "text/plain");
  });
  int port = server.Start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 200; ++i) {
      if (round == 0) clients.push_back(std::make_unique<RawClient>(port));
      std::string item = std::to_string(round * 1000 + i);
      clients[i]->Clear();
      clients[i]->Send("GET /items/" + item + " HTTP/1.1\r\nHost: x\r\n\r\n");
      ASSERT_NE(clients[i]->ReadUntil("item " + item).find("item " + item), std::string::npos);
    }
  }
  EXPECT_EQ(server.connections(), 200u);
  EXPECT_LE(server.worker_threads(), 2u);
  server.Stop();
}

TEST_F(EventServerTest, ReadsChunkedBodiesAndAnswersExpectContinue) {
  RawClient c(port_);
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_NE(c.ReadUntil("got abcde").find("got abcde at /echo"), std::string::npos);
  c.Clear();
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  EXPECT_EQ(c.ReadUntil("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  c.Clear();
  c.Send("xyz");
  EXPECT_NE(c.ReadUntil("got xyz").find("200 OK"), std::string::npos);
}

TEST_F(EventServerTest, UnreadableRequestsGetARenderedErrorAndAClosedConnection) {
  struct Case {
    std::string wire;
    std::string status_line;
    std::string rendered;
  } cases[] = {
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", "HTTP/1.1 413",
       "rendered 413 for [/echo]: request body is larger than 1024 bytes"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
       "HTTP/1.1 400", "rendered 400 for [/echo]: both Content-Length"},
      {"BROKEN\r\n\r\n", "HTTP/1.1 400", "rendered 400 for []: malformed request line"},
      {"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404", "rendered 404 for [/nowhere]"},
      {"DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404", "rendered 404 for [/echo]"},
  };
  for (const Case& k : cases) {
    RawClient c(port_);
    c.Send(k.wire);
    std::string reply = c.ReadUntil(k.rendered);
    EXPECT_EQ(reply.rfind(k.status_line, 0), 0u) << reply;
    EXPECT_NE(reply.find(k.rendered), std::string::npos) << reply;
    if (k.status_line != "HTTP/1.1 404") {
      EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
      EXPECT_TRUE(c.ReadsToClose()) << k.wire;
    }
  }
}

TEST_F(EventServerTest, QueryParametersAreDecodedAndThePathIsNot) {
  RawClient c(port_);
  c.Send(
      "GET /query?q=a+b%20c%25&q=%F0%9F%98%80&bad=100%&empty=&flag&&x%3Dy=1 HTTP/1.1\r\nHost: "
      "x\r\n\r\n");
  std::string reply = c.ReadUntil("path /query");
  EXPECT_NE(
      reply.find("[bad=100%][empty=][flag=][q=a b c%][q=\xF0\x9F\x98\x80][x=y=1] path /query"),
      std::string::npos)
      << reply;
}

TEST_F(EventServerTest, ConnectionCloseIsHonoured) {
  RawClient c(port_);
  c.Send("GET /items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(c.ReadUntil("item 7").find("Connection: close"), std::string::npos);
  EXPECT_TRUE(c.ReadsToClose());
}

TEST_F(EventServerTest, TheWriterSendsEachChunkAsItIsWritten) {
  RawClient c(port_);
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string start = c.ReadUntil("first\r\n");
  EXPECT_EQ(start.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(start.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(start.find("\r\n\r\n5\r\nfirst\r\n"), std::string::npos) << start;
  EXPECT_EQ(start.find("second"), std::string::npos);
  first_seen_.set_value();
  std::string all = c.ReadUntil("0\r\n\r\n");
  EXPECT_NE(all.find("6\r\nsecond\r\n0\r\n\r\n"), std::string::npos) << all;
  // The connection stays usable after a complete streamed answer.
  c.Clear();
  c.Send("GET /items/9 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.ReadUntil("item 9").find("200 OK"), std::string::npos);
}

TEST_F(EventServerTest, ADetachedConnectionIsLeftAloneUntilItsOwnerGivesItBack) {
  RawClient c(port_);
  // A pipelined request waits behind the detached answer, then is served after it.
  c.Send("GET /detach HTTP/1.1\r\nHost: x\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  ResponseWriter::Detached d = detached_.get_future().get();
  std::string rest = ChunkFrame("late") + std::string(kLastChunk);
  ASSERT_EQ(send(d.fd, rest.data(), rest.size(), MSG_NOSIGNAL), static_cast<ssize_t>(rest.size()));
  std::string before = c.ReadUntil("0\r\n\r\n");
  EXPECT_EQ(before.find("item 2"), std::string::npos) << "served while detached";
  d.finish(true);
  std::string all = c.ReadUntil("item 2");
  size_t late = all.find("4\r\nlate\r\n0\r\n\r\n"), item = all.find("item 2");
  ASSERT_NE(late, std::string::npos) << all;
  ASSERT_NE(item, std::string::npos) << all;
  EXPECT_LT(late, item);
}

TEST_F(EventServerTest, ADetachedConnectionGivenBackIncompleteIsClosed) {
  RawClient c(port_);
  c.Send("GET /detach HTTP/1.1\r\nHost: x\r\n\r\n");
  detached_.get_future().get().finish(false);
  EXPECT_TRUE(c.ReadsToClose());
}

TEST_F(EventServerTest, ALoopRouteMayHandItsConnectionOverWithTheHeadUnwritten) {
  RawClient c(port_);
  c.Send(
      "POST /loop/detach HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nd"
      "POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nc");
  ResponseWriter::Detached d = detached_.get_future().get();
  EXPECT_EQ(d.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << d.head;
  // The new owner writes the head and the body; given back complete, the connection
  // serves the pipelined request.
  std::string out = d.head + ChunkFrame("owned") + std::string(kLastChunk);
  ASSERT_EQ(send(d.fd, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  d.finish(true);
  std::string all = c.ReadUntil("loop c on the loop");
  // One head each: the server wrote none for the detached answer.
  ExpectInOrder(all, {"HTTP/1.1 200 OK\r\n", "Content-Type: text/plain\r\n",
                      "Transfer-Encoding: chunked\r\n\r\n5\r\nowned\r\n0\r\n\r\n",
                      "HTTP/1.1 200 OK\r\n", "loop c on the loop"});
  EXPECT_EQ(Count(all, "HTTP/1.1 200 OK"), 2u) << all;
}

TEST_F(EventServerTest, LoopRoutesAnswerOnTheLoopOrHandTheRequestToAWorker) {
  RawClient c(port_);
  // Pipelined: answered in order, a declined one (its body intact) by the worker handler.
  c.Send(
      "POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
      "POST /loop/decline HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"
      "POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nc");
  std::string all = c.ReadUntil("loop c on the loop");
  ExpectInOrder(all, {"loop a on the loop", "worker b", "loop c on the loop"});
  EXPECT_EQ(Count(all, "HTTP/1.1 200 OK"), 3u);
}

TEST_F(EventServerTest, ALoopRouteMayHandItsRequestToAWorkerThatStreamsTheAnswer) {
  RawClient c(port_);
  // Pipelined: the handed-off request's answer, then the next request's, in order, on
  // the one kept-alive connection.
  c.Send(
      "POST /loop/handoff HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nc");
  std::string all = c.ReadUntil("loop c on the loop");
  // Off the loop thread; the stream's last chunk before the next answer.
  ExpectInOrder(all, {"Transfer-Encoding: chunked", "handed hello", " off the loop",
                      "0\r\n\r\nHTTP/1.1 200 OK", "loop c on the loop"});
  EXPECT_EQ(Count(all, "HTTP/1.1 200 OK"), 2u);
}

TEST_F(EventServerTest, PrefixRoutesTakeEveryPathThatStartsWithTheirPrefixAndNoOther) {
  auto ask = [&](const std::string& request, const std::string& expected) {
    RawClient c(port_);
    c.Send(request);
    std::string reply = c.ReadUntil(expected);
    EXPECT_NE(reply.find(expected), std::string::npos) << request << " got:\n" << reply;
  };
  ask("POST /pre/v1/chat/completions?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
      "prefix loop [/pre/v1/chat/completions] groups 0");
  ask("POST /pre/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
      "prefix loop [/pre/] groups 0");
  ask("GET /pre/a/b HTTP/1.1\r\nHost: x\r\n\r\n", "prefix worker [/pre/a/b]");
  // Not the prefix: the next route (a pattern) or none.
  ask("GET /pre HTTP/1.1\r\nHost: x\r\n\r\n", "rendered 404 for [/pre]");
  ask("GET /prefix/a HTTP/1.1\r\nHost: x\r\n\r\n", "pattern [prefix]");
  ask("GET /x/pre/a HTTP/1.1\r\nHost: x\r\n\r\n", "rendered 404 for [/x/pre/a]");
  ask("PUT /pre/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "rendered 404 for [/pre/a]");
}

TEST_F(EventServerTest, StopWaitsForARequestTakenByTheLoopAndKeepsTheLoopRunning) {
  RawClient c(port_);
  c.Send("POST /loop/later HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
  LoopReply reply = later_.get_future().get();
  auto stopped = std::async(std::launch::async, [this] { server_->Stop(); });
  // Answered from another thread through the loop, while the server stops.
  reply.loop().Post([reply] {
    httplib::Response res;
    res.set_content("late answer", "text/plain");
    reply.Send(res);
  });
  EXPECT_NE(c.ReadUntil("late answer").find("late answer"), std::string::npos);
  EXPECT_TRUE(c.ReadsToClose()) << "a stopping server closes the connection after the answer";
  stopped.get();
}

// A task set to run after a delay runs once it has passed, on the loop, and what it
// posts runs too (the leased costs' flush depends on both).
TEST_F(EventServerTest, ATaskSetToRunAfterADelayRunsOnceItHasPassed) {
  using namespace std::chrono_literals;
  auto ran = std::make_shared<std::promise<std::chrono::steady_clock::duration>>();
  auto posted = std::make_shared<std::promise<bool>>();
  auto ran_after = ran->get_future();
  auto posted_ran = posted->get_future();
  EventServer* loop = server_.get();
  loop->Post([loop, ran, posted] {
    auto set = std::chrono::steady_clock::now();
    loop->RunAfter(20ms, [loop, ran, posted, set] {
      ran->set_value(std::chrono::steady_clock::now() - set);
      loop->Post([loop, posted] { posted->set_value(loop->InLoopThread()); });
    });
  });
  ASSERT_EQ(ran_after.wait_for(10s), std::future_status::ready);
  EXPECT_GE(ran_after.get(), 20ms) << "not before its delay";
  ASSERT_EQ(posted_ran.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(posted_ran.get());
}

// The loop keeps a connection in its epoll set while it answers: what the client sends
// meanwhile waits until the answer is out, then is read as the next request.
TEST_F(EventServerTest, WhatAClientSendsWhileTheLoopAnswersIsTheNextRequest) {
  RawClient c(port_);
  c.Send("POST /loop/later HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx");
  LoopReply reply = later_.get_future().get();
  c.Send("POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Len");
  c.Send("gth: 1\r\n\r\ny");
  reply.loop().Post([reply] {
    httplib::Response res;
    res.set_content("late answer", "text/plain");
    reply.Send(res);
  });
  std::string all = c.ReadUntil("loop y on the loop");
  ASSERT_NE(all.find("late answer"), std::string::npos) << all;
  ASSERT_NE(all.find("loop y on the loop"), std::string::npos) << all;
  EXPECT_LT(all.find("late answer"), all.find("loop y"));
  EXPECT_EQ(Count(all, "HTTP/1.1 200 OK"), 2u);
}

TEST_F(EventServerTest, AClientHangingUpWhileTheLoopAnswersGetsItsAnswerThenTheClose) {
  RawClient c(port_);
  c.Send("POST /loop/later HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx");
  LoopReply reply = later_.get_future().get();
  c.HangUpWriting();
  reply.loop().Post([reply] {
    httplib::Response res;
    res.set_content("late answer", "text/plain");
    reply.Send(res);
  });
  EXPECT_NE(c.ReadUntil("late answer").find("late answer"), std::string::npos);
  EXPECT_TRUE(c.ReadsToClose());
  // The loop still serves others.
  RawClient d(port_);
  d.Send("POST /loop/here HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nd");
  EXPECT_NE(d.ReadUntil("loop d on the loop").find("loop d on the loop"), std::string::npos);
}

TEST_F(EventServerTest, TheWriterReportsAClientThatHungUp) {
  auto c = std::make_unique<RawClient>(port_);
  c->Send("GET /firehose HTTP/1.1\r\nHost: x\r\n\r\n");
  c->ReadUntil("xxxx");
  c.reset();  // hang up mid-answer
  int writes = firehose_writes_.get_future().get();
  EXPECT_LT(writes, 100'000) << "Write() must return false once the client is gone";
}

// ---- a boundary nothing crosses ---------------------------------------------------

// Routes that throw, a renderer that throws on one path, and a plain route: whatever
// throws, the server answers and goes on.
class ServerBoundary : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<EventServer>(ServerTuning{.worker_threads = 4}, Boundary(&metrics_));
    server_->Get("/throws", [](const httplib::Request&, httplib::Response&) {
      throw std::runtime_error("a handler's bug \xff");
    });
    server_->Streaming("GET", "/throws-mid-answer",
                       [](const httplib::Request&, httplib::Response&, ResponseWriter& w) {
                         w.Begin(200, {});
                         w.Write("part");
                         throw std::logic_error("a bug after the answer began");
                       });
    server_->Get("/throws-in-provider", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [](size_t offset, httplib::DataSink& sink) {
        if (offset > 0) throw std::runtime_error("a content provider's bug");
        sink.write("part", 4);
        return true;
      });
    });
    server_->OnLoop(
        "POST", "/throws-on-loop",
        [](const httplib::Request&, const LoopReply&) -> bool {
          throw std::runtime_error("a loop handler's bug");
        },
        nullptr);
    server_->Get("/fine", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("fine", "text/plain");
    });
    server_->set_error_renderer([](const httplib::Request& req, int status,
                                   const std::string& message, httplib::Response& res) {
      if (req.path == "/renderer-throws") throw std::runtime_error("a renderer's bug");
      res.set_content("rendered " + std::to_string(status) + ": " + message, "text/plain");
    });
    port_ = server_->Start("127.0.0.1", 0);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { server_->Stop(); }

  // The server still answers, on a new connection.
  void ExpectStillServing() {
    RawClient c(port_);
    c.Send("GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(c.ReadUntil("fine").find("HTTP/1.1 200 OK"), std::string::npos);
  }
  // Sends `wire` on a new connection and returns the answer, read until `until` has come
  // (or the close); then one exception was counted, and the server still serves.
  std::string AskOneFailure(const std::string& wire, const std::string& until) {
    RawClient c(port_);
    c.Send(wire);
    std::string reply = c.ReadUntil(until);
    EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 1u);
    ExpectStillServing();
    return reply;
  }

  Metrics metrics_;
  std::unique_ptr<EventServer> server_;
  int port_ = -1;
};

TEST_F(ServerBoundary, AHandlerThatThrowsGets500InTheRenderersShapeAndTheServerGoesOn) {
  RawClient c(port_);
  c.Send("GET /throws HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string reply = c.ReadUntil("internal error");
  EXPECT_EQ(reply.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("rendered 500: internal error"), std::string::npos) << reply;
  EXPECT_EQ(reply.find('\xff'), std::string::npos) << "the exception's text stays in the log";
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 1u);
  // The same connection serves the next request.
  c.Clear();
  c.Send("GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.ReadUntil("fine").find("200 OK"), std::string::npos);
  ExpectStillServing();
}

TEST_F(ServerBoundary, AnAnswerBegunWhenItsHandlerThrowsIsCutNotCompleted) {
  // Read to the close: what never comes.
  std::string all = AskOneFailure("GET /throws-mid-answer HTTP/1.1\r\nHost: x\r\n\r\n", "never sent");
  EXPECT_NE(all.find("4\r\npart\r\n"), std::string::npos) << all;
  EXPECT_EQ(all.find("0\r\n\r\n"), std::string::npos) << "a cut answer must not look whole";
}

TEST_F(ServerBoundary, AContentProviderThatThrowsCutsItsAnswer) {
  std::string all = AskOneFailure("GET /throws-in-provider HTTP/1.1\r\nHost: x\r\n\r\n", "never sent");
  EXPECT_NE(all.find("4\r\npart\r\n"), std::string::npos) << all;
  EXPECT_EQ(all.find("0\r\n\r\n"), std::string::npos) << "a cut answer must not look whole";
}

TEST_F(ServerBoundary, ALoopHandlerThatThrowsGets500AndTheLoopGoesOn) {
  std::string reply =
      AskOneFailure("POST /throws-on-loop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "internal error");
  EXPECT_EQ(reply.rfind("HTTP/1.1 500", 0), 0u) << reply;
  EXPECT_NE(reply.find("rendered 500: internal error"), std::string::npos) << reply;
}

TEST_F(ServerBoundary, ARendererThatThrowsLeavesTheServersPlainAnswer) {
  std::string reply = AskOneFailure("GET /renderer-throws HTTP/1.1\r\nHost: x\r\n\r\n", "Not Found");
  EXPECT_EQ(reply.rfind("HTTP/1.1 404", 0), 0u) << reply;
  EXPECT_NE(reply.find("\r\n\r\nNot Found"), std::string::npos) << reply;
}

TEST_F(ServerBoundary, PostedTasksAndTimersThatThrowLeaveTheLoopRunning) {
  auto after = std::make_shared<std::promise<bool>>();
  auto ran = after->get_future();
  EventServer* loop = server_.get();
  loop->Post([] { throw std::runtime_error("a posted task's bug"); });
  loop->Post([loop, after] {
    loop->RunAfter(std::chrono::milliseconds(1), [] { throw std::runtime_error("a timer's bug"); });
    loop->RunAfter(std::chrono::milliseconds(2),
                   [loop, after] { after->set_value(loop->InLoopThread()); });
  });
  ASSERT_EQ(ran.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(ran.get());
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 2u);
  ExpectStillServing();
}

TEST_F(ServerBoundary, ThePathAnErrorQuotesIsValidUtf8) {
  RawClient c(port_);
  c.Send("GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string reply = c.ReadUntil("rendered 404");
  EXPECT_NE(reply.find("rendered 404: no route for GET /\\xFF\\xFE"), std::string::npos) << reply;
  ExpectStillServing();
}

// ---- request targets: bounded, and routes matched without recursion ---------------

TEST_F(ServerBoundary, ATargetLongerThanTheLimitGets414) {
  RawClient whole(port_);
  whole.Send("GET /fine?q=" + std::string(9000, 'q') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string reply = whole.ReadUntil("rendered 414");
  EXPECT_EQ(reply.rfind("HTTP/1.1 414 URI Too Long\r\n", 0), 0u) << reply.substr(0, 200);
  EXPECT_NE(reply.find("request target is longer than 8192 bytes"), std::string::npos);
  EXPECT_TRUE(whole.ReadsToClose());
  // A request line still coming is refused once it is past any target allowed.
  RawClient endless(port_);
  endless.Send("POST /api/v1/budget/admin/reset/" + std::string(40'000, 'A'));
  EXPECT_EQ(endless.ReadUntil("rendered 414").rfind("HTTP/1.1 414", 0), 0u);
  ExpectStillServing();
}

TEST(EventServer, APatternRouteTakesASegmentOfAnyLengthTheTargetLimitAllows) {
  // std::regex_match recursed per character: 40,000 bytes overflowed a worker's stack.
  EventServer server(ServerTuning{.worker_threads = 2, .max_target_bytes = 60'000});
  server.Post("/reset/*", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content("id of " + std::to_string(PathSegment(req.path, 1).size()) + " bytes",
                    "text/plain");
  });
  int port = server.Start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  RawClient c(port);
  c.Send("POST /reset/" + std::string(50'000, 'A') + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_NE(c.ReadUntil("bytes").find("id of 50000 bytes"), std::string::npos);
  server.Stop();
}

// ---- limits: deadlines, the connection cap, the head check ----------------------

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A server with one route, answering on a worker, for the limit tests.
class LimitedServer {
 public:
  explicit LimitedServer(ServerTuning tuning) : server_(tuning) {
    server_.Post("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      ++handled_;
      res.set_content("got " + std::to_string(req.body.size()) + " bytes", "text/plain");
    });
    server_.set_error_renderer([](const httplib::Request& req, int status,
                                  const std::string& message, httplib::Response& res) {
      res.set_content("rendered " + std::to_string(status) + " for [" + req.path + "]: " + message,
                      "text/plain");
    });
    server_.set_metrics(&metrics_);
  }
  ~LimitedServer() { server_.Stop(); }
  int Start() { return server_.Start("127.0.0.1", 0); }
  EventServer& server() { return server_; }
  int handled() const { return handled_.load(); }
  const Metrics& metrics() const { return metrics_; }

 private:
  Metrics metrics_;
  std::atomic<int> handled_{0};
  EventServer server_;
};

// Sends `bytes` one at a time, `gap_ms` apart, until the server speaks or closes (or
// they are all sent): how many went, and when the server spoke.
struct Trickled {
  size_t sent = 0;
  Clock::duration took{};
};
Trickled Trickle(RawClient& c, const std::string& bytes, int gap_ms) {
  Trickled t;
  auto start = Clock::now();
  while (t.sent < bytes.size()) {
    if (send(c.fd(), bytes.data() + t.sent, 1, MSG_NOSIGNAL) != 1) break;
    ++t.sent;
    if (c.Readable(gap_ms)) break;
  }
  if (t.sent == bytes.size()) c.Readable(10'000);
  t.took = Clock::now() - start;
  return t;
}

// A 408 with the renderer's `text`, then the close.
void ExpectTimedOut(RawClient& c, const std::string& text) {
  std::string reply = c.ReadUntil(text);
  EXPECT_EQ(reply.rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find(text), std::string::npos) << reply;
  EXPECT_TRUE(c.ReadsToClose());
}

TEST(EventServerLimits, AHeadTrickledByteByByteIsClosedAtItsDeadline) {
  LimitedServer s(ServerTuning{.worker_threads = 4, .head_timeout_seconds = 1});
  int port = s.Start();
  ASSERT_GT(port, 0);
  RawClient c(port);
  // Each byte restarted the old read timeout; the head's deadline counts from its first.
  std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a');
  Trickled t = Trickle(c, head, 50);
  EXPECT_GT(t.sent, 10u) << "bytes kept coming";
  EXPECT_LT(t.sent, head.size()) << "the server waited for the whole trickle";
  EXPECT_GE(t.took, milliseconds(1000));
  EXPECT_LT(t.took, milliseconds(3500)) << "closed within a sweep of its deadline";
  ExpectTimedOut(c, "rendered 408 for []: the request head did not arrive in time");
  EXPECT_EQ(s.metrics().Get(Counter::kRequestsTimedOut), 1u);
  EXPECT_EQ(s.handled(), 0);
}

TEST(EventServerLimits, ABodyHasABaseDeadlinePlusItsSizeAtTheMinimumRate) {
  // 1 s plus 1 s per KiB: 3,000 bytes have ~3.9 s.
  LimitedServer s(ServerTuning{.worker_threads = 4,
                               .max_body_bytes = 1 << 20,
                               .body_timeout_seconds = 1,
                               .body_min_bytes_per_second = 1024});
  int port = s.Start();
  ASSERT_GT(port, 0);
  std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n";
  {
    // Slower than the base allows, faster than the rate: ~2 s, and answered.
    RawClient c(port);
    c.Send(head);
    auto start = Clock::now();
    for (int i = 0; i < 19; ++i) {
      c.Send(std::string(150, 'b'));
      EXPECT_FALSE(c.Readable(100)) << "answered before the body was whole";
    }
    c.Send(std::string(150, 'b'));
    EXPECT_GT(Clock::now() - start, milliseconds(1500));
    EXPECT_NE(c.ReadUntil("got 3000 bytes").find("HTTP/1.1 200 OK"), std::string::npos);
  }
  {
    // Slower than the rate: cut at its deadline with a 408 in the route's shape.
    RawClient c(port);
    c.Send(head);
    Trickled t = Trickle(c, std::string(3000, 'b'), 100);
    EXPECT_GE(t.took, milliseconds(3900));
    EXPECT_LT(t.took, milliseconds(6500));
    ExpectTimedOut(c, "rendered 408 for [/echo]: the request body did not arrive in time");
  }
  EXPECT_EQ(s.handled(), 1);
}

TEST(EventServerLimits, ConnectionsPastTheCapAreRefusedAndTheOthersStillServed) {
  LimitedServer s(ServerTuning{.worker_threads = 4, .max_connections = 2});
  int port = s.Start();
  ASSERT_GT(port, 0);
  const std::string ask = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz";
  RawClient a(port), b(port);
  for (RawClient* c : {&a, &b}) {  // answered: accepted, and counted
    c->Send(ask);
    ASSERT_NE(c->ReadUntil("got 1 bytes").find("200 OK"), std::string::npos);
    c->Clear();
  }
  RawClient refused(port);
  ASSERT_TRUE(refused.connected()) << "accepted by the kernel, refused by the server";
  refused.Send(ask);
  std::string reply = refused.ReadUntil("too many connections");
  EXPECT_EQ(reply.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("Retry-After: 1\r\n"), std::string::npos) << reply;
  EXPECT_TRUE(refused.ReadsToClose());
  EXPECT_EQ(s.metrics().Get(Counter::kConnectionsRefused), 1u);
  EXPECT_EQ(s.server().connections(), 2u);
  // The two open ones are still served; once one closes, a new one is taken.
  for (RawClient* c : {&a, &b}) {
    c->Send(ask);
    EXPECT_NE(c->ReadUntil("got 1 bytes").find("200 OK"), std::string::npos);
  }
  a.Send("POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz");
  EXPECT_TRUE(a.ReadsToClose());
  RawClient next(port);
  next.Send(ask);
  EXPECT_NE(next.ReadUntil("got 1 bytes").find("200 OK"), std::string::npos);
}

// A head check that takes "X-Key: good", refuses anything else with a 401, and decides
// on a worker when the loop is told "X-Key: ask".
class HeadChecked : public LimitedServer {
 public:
  HeadChecked() : LimitedServer(ServerTuning{.worker_threads = 4, .max_body_bytes = 16 << 20}) {
    server().set_head_check(
        [this](const ParsedRequest& head, bool on_loop, httplib::Response& res) {
          ++checks_;
          std::string key = httplib::detail::get_header_value(head.headers, "X-Key", 0, "");
          if (key == "ask" && on_loop) return EventServer::HeadVerdict::kUndecided;
          if (key == "ask" || key == "good") {
            if (!on_loop) decided_on_worker_ = !server().InLoopThread();
            return EventServer::HeadVerdict::kProceed;
          }
          res.status = 401;
          res.set_content("bad key", "text/plain");
          return EventServer::HeadVerdict::kRefuse;
        });
  }
  int checks() const { return checks_.load(); }
  bool decided_on_worker() const { return decided_on_worker_.load(); }

 private:
  std::atomic<int> checks_{0};
  std::atomic<bool> decided_on_worker_{false};
};

TEST(EventServerLimits, ARefusedHeadIsAnsweredWithoutReadingTheBody) {
  HeadChecked s;
  int port = s.Start();
  ASSERT_GT(port, 0);
  RawClient c(port);
  int small = 64 * 1024;  // the client can get little ahead of a server that stops reading
  setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  const size_t body = 10 << 20;
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nX-Key: bad\r\nContent-Length: " + std::to_string(body) +
         "\r\n\r\n");
  std::atomic<size_t> sent{0};
  std::thread sender([&] {
    std::string block(64 * 1024, 'x');
    while (sent < body) {
      ssize_t n = send(c.fd(), block.data(), block.size(), MSG_NOSIGNAL);
      if (n <= 0) return;  // reset by the server, which closed with the body unread
      sent += static_cast<size_t>(n);
    }
  });
  std::string reply = c.ReadUntil("bad key");
  sender.join();
  EXPECT_EQ(reply.rfind("HTTP/1.1 401", 0), 0u) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  EXPECT_LT(sent.load(), body / 4) << "the server read the body";
  EXPECT_EQ(s.handled(), 0);
  EXPECT_EQ(s.checks(), 1);
}

TEST(EventServerLimits, AClientThatExpectsContinueGetsTheRefusalInstead) {
  HeadChecked s;
  int port = s.Start();
  ASSERT_GT(port, 0);
  RawClient c(port);
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nX-Key: bad\r\nExpect: 100-continue\r\n"
      "Content-Length: 5000000\r\n\r\n");
  std::string reply = c.ReadUntil("bad key");
  EXPECT_EQ(reply.rfind("HTTP/1.1 401", 0), 0u) << reply;
  EXPECT_EQ(reply.find("100 Continue"), std::string::npos) << reply;
  EXPECT_TRUE(c.ReadsToClose());
}

TEST(EventServerLimits, AnUndecidedHeadIsDecidedOnAWorkerAndItsBodyThenRead) {
  HeadChecked s;
  int port = s.Start();
  ASSERT_GT(port, 0);
  RawClient c(port);
  // Asked to continue only once the worker has let it in.
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nX-Key: ask\r\nExpect: 100-continue\r\n"
      "Content-Length: 200000\r\n\r\n");
  EXPECT_EQ(c.ReadUntil("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  c.Clear();
  c.Send(std::string(200000, 'y'));
  EXPECT_NE(c.ReadUntil("got 200000 bytes").find("200 OK"), std::string::npos);
  EXPECT_TRUE(s.decided_on_worker());
  EXPECT_EQ(s.checks(), 2);  // on the loop, then on the worker
  // Whole with its head in one read: never checked (the hot path pays nothing).
  c.Clear();
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nX-Key: bad\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(c.ReadUntil("got 3 bytes").find("200 OK"), std::string::npos);
  EXPECT_EQ(s.checks(), 2);
}

}  // namespace
}  // namespace tollgate
