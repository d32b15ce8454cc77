#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/proxy_fixture.h"

namespace tollgate::testing {
namespace {

using namespace std::chrono_literals;

class Proxy : public ProxyFixture {};

// ---- per provider: answers unchanged, usage and cost to the nano-dollar ---------

TEST_F(Proxy, AnthropicMessagesNonStreaming) {
  json body = Chat("claude-haiku-4-5", false);
  body["max_tokens"] = 10;
  httplib::Headers h = {
      {"x-sim-cache-read", "100"}, {"x-sim-cache-write", "20"}, {"x-sim-cache-write-1h", "7"}};
  h.emplace("x-api-key", key_);
  auto r = client_->Post("/anthropic/v1/messages", h, body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json answer = json::parse(r->body);
  EXPECT_EQ(answer["content"][0]["text"], "Hello w1 w2 w3 w4 w5 w6 w7 w8 w9");
  EXPECT_TRUE(r->has_header("request-id"));  // upstream headers pass through
  EXPECT_TRUE(r->has_header("x-tollgate-request-id"));
  UsageRecord row = LastRow();
  EXPECT_EQ(row.usage.input_tokens, 3);
  EXPECT_EQ(row.usage.output_tokens, 10);
  EXPECT_EQ(row.usage.cache_read_tokens, 100);
  EXPECT_EQ(row.usage.cache_write_5m_tokens, 20);
  EXPECT_EQ(row.usage.cache_write_1h_tokens, 7);
  // Haiku 4.5: in $1, out $5, read $0.10, 5m write $1.25, 1h write $2 per million:
  // 3x1000 + 10x5000 + 100x100 + 20x1250 + 7x2000 nanos.
  EXPECT_EQ(row.cost.nanos(), 3000 + 50000 + 10000 + 25000 + 14000);
  EXPECT_EQ(row.price_id, "anthropic/claude-haiku-4-5@2025-01-01");
  EXPECT_EQ(row.status, 200);
  EXPECT_FALSE(row.streamed);
  EXPECT_FALSE(row.estimated);
  EXPECT_EQ(gate_->spend(user_.id).nanos(), row.cost.nanos());
  EXPECT_EQ(gate_->open_holds(), 0u);
  EXPECT_EQ(metrics_.Count(Histogram::kUpstreamLatency, "anthropic"), 1u);
  EXPECT_EQ(metrics_.Count(Histogram::kUpstreamLatency, "mistral"), 0u);

  json saw = SimSaw();
  EXPECT_EQ(saw["headers"]["x-api-key"], "sk-ant-UPSTREAM-SECRET");
  EXPECT_EQ(saw["headers"]["anthropic-version"], "2023-06-01");
  EXPECT_EQ(saw.dump().find(key_), std::string::npos) << "the tollgate key reached the upstream";
  EXPECT_EQ(r->body.find("UPSTREAM-SECRET"), std::string::npos);
}

TEST_F(Proxy, AnthropicStreamTakesTheLastCumulativeUsage) {
  json body = Chat("claude-sonnet-4-5", true);
  body["max_tokens"] = 12;
  httplib::Headers h = {{"x-api-key", key_}, {"x-sim-cache-read", "50"}};
  auto r = client_->Post("/anthropic/v1/messages", h, body.dump(), "application/json");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_NE(r->body.find("event: message_stop"), std::string::npos);
  UsageRecord row = LastRow();
  EXPECT_EQ(row.usage.output_tokens, 12);  // not 1 + 12 (placeholder + cumulative)
  EXPECT_EQ(row.usage.input_tokens, 3);
  EXPECT_EQ(row.usage.cache_read_tokens, 50);
  EXPECT_TRUE(row.streamed);
  // Sonnet 4.5: $3 in, $15 out, $0.30 read.
  EXPECT_EQ(row.cost.nanos(), 3 * 3000 + 12 * 15000 + 50 * 300);
}

TEST_F(Proxy, DeepSeekStreamHidesTheUsageChunkItAskedFor) {
  auto r =
      Post("/deepseek/chat/completions", Chat("deepseek-flash", true), {{"x-sim-keepalive", "2"}});
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->body.rfind(": keep-alive", 0), 0u);  // comments relayed untouched
  for (const json& c : SseData(r->body))
    EXPECT_FALSE(c["choices"].empty()) << "usage chunk leaked: " << c;
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
  json saw = SimSaw();
  EXPECT_TRUE(json::parse(saw["body"].get<std::string>())["stream_options"]["include_usage"]);
  EXPECT_EQ(saw["headers"]["Authorization"], "Bearer sk-ds-UPSTREAM-SECRET");
  UsageRecord row = LastRow();
  EXPECT_EQ(row.usage.output_tokens, 16);
  // Off-peak flash: $0.15 in, $0.60 out -> 3x150 + 16x600.
  EXPECT_EQ(row.cost.nanos(), 450 + 9600);
  EXPECT_EQ(row.price_id, "deepseek/deepseek-flash@2026-11-15");
}

TEST_F(Proxy, DeepSeekStreamShowsTheUsageChunkWhenTheClientAsked) {
  json body = Chat("deepseek-flash", true);
  body["stream_options"] = {{"include_usage", true}};
  auto r = Post("/deepseek/v1/chat/completions", body);
  auto chunks = SseData(r->body);
  ASSERT_FALSE(chunks.empty());
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 16);
}

TEST_F(Proxy, DeepSeekPeakHoursCostDouble) {
  clock_.Set(Timestamp(std::chrono::microseconds(kOffPeakMicros)) - 10h);  // Monday 02:00 UTC
  json body = Chat("deepseek-flash", false);
  auto r = Post("/deepseek/chat/completions", body,
                {{"x-sim-cache-read", "2"}, {"x-sim-reasoning", "5"}});
  ASSERT_EQ(r->status, 200) << r->body;
  UsageRecord row = LastRow();
  EXPECT_EQ(row.price_id, "deepseek/deepseek-flash@2026-11-15#peak");
  EXPECT_EQ(row.usage.cache_read_tokens, 2);
  EXPECT_EQ(row.usage.input_tokens, 1);
  EXPECT_EQ(row.usage.output_tokens, 21);  // 16 + 5 reasoning
  EXPECT_EQ(row.usage.reasoning_tokens, 5);
  // Peak: $0.30 miss, $0.006 hit, $1.20 out.
  EXPECT_EQ(row.cost.nanos(), 1 * 300 + 2 * 6 + 21 * 1200);
}

TEST_F(Proxy, MistralNeverReceivesStreamOptions) {
  json body = Chat("mistral-large-latest", true);
  body["stream_options"] = {{"include_usage", true}};
  auto r = Post("/mistral/v1/chat/completions", body);
  ASSERT_EQ(r->status, 200) << r->body;  // the sim answers 422 when it sees stream_options
  EXPECT_FALSE(json::parse(SimSaw()["body"].get<std::string>()).contains("stream_options"));
  UsageRecord row = LastRow();
  EXPECT_EQ(row.usage.output_tokens, 16);
  // mistral-large-2512: $0.50 in, $1.50 out.
  EXPECT_EQ(row.cost.nanos(), 3 * 500 + 16 * 1500);
  EXPECT_EQ(row.price_id, "mistral/mistral-large-2512@2025-12-01");
}

TEST_F(Proxy, ABodyNothingChangesGoesUpstreamByteForByte) {
  // Spacing, key order and number spelling are the caller's; nothing is re-serialised.
  const std::string sent =
      R"({ "temperature": 1E0,  "model":"mistral-large-latest", "max_tokens": 16,)"
      R"( "messages": [ {"role":"user", "content":"caf\u00e9"} ] })";
  httplib::Headers headers{{"Authorization", "Bearer " + key_}};
  auto r = client_->Post("/mistral/v1/chat/completions", headers, sent, "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(SimSaw()["body"].get<std::string>(), sent);
  // A key written twice: the upstream gets the one member the gate read and priced.
  const std::string twice =
      R"({"model":"mistral-large-latest","max_tokens":16,"messages":[],"model":"mistral-small-latest"})";
  ASSERT_EQ(
      client_->Post("/mistral/v1/chat/completions", headers, twice, "application/json")->status,
      200);
  json seen = json::parse(SimSaw()["body"].get<std::string>());
  EXPECT_EQ(seen["model"], LastRow().model);
  EXPECT_EQ(SimSaw()["body"].get<std::string>(), json::parse(twice).dump());
  // A body tollgate must change (a clamp, a quirk) is written anew.
  json quirky = Chat("mistral-large-latest", true);
  quirky["stream_options"] = {{"include_usage", true}};
  ASSERT_EQ(Post("/mistral/v1/chat/completions", quirky)->status, 200);
  EXPECT_NE(SimSaw()["body"].get<std::string>(), quirky.dump());
}

TEST_F(Proxy, MistralEmbeddingsAndModels) {
  auto e = Post("/mistral/v1/embeddings", {{"model", "mistral-embed"}, {"input", {"abcdefgh"}}});
  ASSERT_EQ(e->status, 200) << e->body;
  UsageRecord row = LastRow();
  EXPECT_EQ(row.usage.input_tokens, 2);
  EXPECT_EQ(row.cost.nanos(), 2 * 100);
  auto m = client_->Get("/mistral/v1/models", {{"Authorization", "Bearer " + key_}});
  ASSERT_EQ(m->status, 200);
  EXPECT_FALSE(json::parse(m->body)["data"].empty());
  EXPECT_EQ(LastRow(2).cost.nanos(), 0);
  // Paging parameters of a models list reach the provider as sent.
  auto paged =
      client_->Get("/anthropic/v1/models?limit=5&after_id=claude%2Dx", {{"x-api-key", key_}});
  ASSERT_EQ(paged->status, 200);
  EXPECT_EQ(SimSaw()["target"], "/v1/models?limit=5&after_id=claude%2Dx");
}

TEST_F(Proxy, RequestsTheServerCannotReadGetTheProvidersShape) {
  // Sent by hand: no HTTP client writes these.
  auto raw = [&](const std::string& wire) { return RawExchange(proxy_->port(), wire); };
  std::string smuggle = raw("POST /anthropic/v1/messages HTTP/1.1\r\nx-api-key: " + key_ +
                            "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  ASSERT_EQ(smuggle.rfind("HTTP/1.1 400", 0), 0u) << smuggle;
  json body = json::parse(smuggle.substr(smuggle.find("\r\n\r\n") + 4));
  EXPECT_EQ(body["type"], "error");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("Transfer-Encoding"),
            std::string::npos);
  std::string garbage = raw("NOT HTTP\r\n\r\n");
  ASSERT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  EXPECT_EQ(json::parse(garbage.substr(garbage.find("\r\n\r\n") + 4))["error"]["type"],
            "invalid_request_error");
  EXPECT_TRUE(ledger_.rows().empty());
}

TEST_F(Proxy, OllamaNativeNdjsonStream) {
  json body = {{"model", "llama3.2"},
               {"messages", {{{"role", "user"}, {"content", "hello world!"}}}}};
  auto r = Post("/ollama/api/chat", body);  // streams by default
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/x-ndjson");
  EXPECT_NE(r->body.find("\"done\":true"), std::string::npos);
  UsageRecord row = LastRow();
  EXPECT_TRUE(row.streamed);
  EXPECT_EQ(row.usage.input_tokens, 3);
  EXPECT_EQ(row.usage.output_tokens, 16);
  EXPECT_EQ(row.cost.nanos(), 0);  // local models are free, usage still recorded
}

TEST_F(Proxy, OllamaOpenAILayerAndTags) {
  auto r = Post("/ollama/v1/chat/completions", Chat("llama3.2", true));
  ASSERT_EQ(r->status, 200);
  for (const json& c : SseData(r->body)) EXPECT_FALSE(c["choices"].empty());
  EXPECT_EQ(LastRow().usage.output_tokens, 16);
  auto tags = client_->Get("/ollama/api/tags", {{"Authorization", "Bearer " + key_}});
  EXPECT_EQ(json::parse(tags->body)["models"][0]["name"], "llama3.2:latest");
}

// ---- failures -------------------------------------------------------------------

TEST_F(Proxy, UpstreamErrorsPassThroughUnchanged) {
  json body = Chat("claude-haiku-4-5", false);
  body["max_tokens"] = 5;
  auto r = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}, {"x-sim-error", "429"}},
                         body.dump(), "application/json");
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(r->get_header_value("retry-after"), "1");
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "rate_limit_error");
  UsageRecord row = LastRow();
  EXPECT_EQ(row.status, 429);
  EXPECT_EQ(row.cost.nanos(), 0);
  EXPECT_EQ(gate_->open_holds(), 0u);

  auto s =
      Post("/deepseek/chat/completions", Chat("deepseek-flash", true), {{"x-sim-error", "500"}});
  EXPECT_EQ(s->status, 500);
  EXPECT_EQ(LastRow(2).status, 500);
}

TEST_F(Proxy, UpstreamDownIs502InTheNativeShape) {
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000),
        [](Config& c) { c.upstreams["deepseek"].base_url = "http://127.0.0.1:1"; });
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  ASSERT_EQ(r->status, 502);
  EXPECT_FALSE(r->has_header("x-should-retry")) << "an upstream failure stays retryable";
  EXPECT_EQ(json::parse(r->body)["error"]["message"],
            "deepseek upstream is unreachable (cannot connect to 127.0.0.1:1: Connection refused)");
  auto s = Post("/deepseek/chat/completions", Chat("deepseek-flash", true));
  ASSERT_EQ(s->status, 502);
  // The key is cached now: the event loop connects, and words the refusal the same way.
  auto t = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  ASSERT_EQ(t->status, 502);
  EXPECT_EQ(json::parse(t->body)["error"]["message"],
            "deepseek upstream is unreachable (cannot connect to 127.0.0.1:1: Connection refused)");
  EXPECT_EQ(LastRow(3).cost.nanos(), 0);
  EXPECT_EQ(gate_->open_holds(), 0u);
}

TEST_F(Proxy, AnUpstreamAnswerOverTheCapIs502InTheNativeShape) {
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000), [](Config& c) { c.max_upstream_answer_bytes = 64; });
  auto on_loop = [&] { return metrics_.Get(Counter::kProxyAnsweredOnLoop); };
  const std::string expected =
      "mistral upstream sent an answer larger than server.max_upstream_answer_bytes (64 bytes) "
      "(while reading the answer)";
  // On a worker (the key is not cached yet), then on the loop.
  for (uint64_t loop_answers : {0u, 1u}) {
    auto r = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
    ASSERT_EQ(r->status, 502) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["message"], expected);
    EXPECT_EQ(on_loop(), loop_answers);
  }
  // A stream's error answer is read whole too, under the same bound.
  auto s =
      Post("/deepseek/chat/completions", Chat("deepseek-flash", true), {{"x-sim-error", "500"}});
  EXPECT_EQ(s->status, 502) << s->body;
  EXPECT_EQ(LastRow(3).status, 502);
  for (const UsageRecord& row : ledger_.rows()) EXPECT_EQ(row.cost.nanos(), 0);
  EXPECT_EQ(gate_->open_holds(), 0u);
}

// A body larger than one read waits for its key: a bad one is refused from the head,
// and the body is never read (the client's send stalls, then the connection is reset).
TEST_F(Proxy, ALargeBodyWithABadKeyIsRefusedBeforeItIsRead) {
  Stop();
  Start(Money::FromNanos(1'000'000'000'000), [](Config& c) { c.max_body_bytes = 16 << 20; });
  auto open = [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    timeval tv{.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(proxy_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  };
  const size_t size = 10 << 20;
  std::string head =
      "POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer tg-" +
      std::string(43, 'x') +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
  int fd = open();
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  std::atomic<size_t> sent{0};
  std::thread sender([&] {
    std::string block(64 * 1024, ' ');
    while (sent < size) {
      ssize_t n = send(fd, block.data(), block.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  });
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) reply.append(buf, size_t(n));
  sender.join();
  close(fd);
  ASSERT_EQ(reply.rfind("HTTP/1.1 401", 0), 0u) << reply;
  EXPECT_EQ(json::parse(reply.substr(reply.find("\r\n\r\n") + 4))["error"]["type"],
            "authentication_error");
  EXPECT_LT(sent.load(), size / 4) << "the proxy read the body";
  EXPECT_EQ(metrics_.Get(Counter::kProxyRefusedAuth), 1u);
  // With a good key the large body is read and forwarded as before.
  json chat = Chat("mistral-small-latest", false);
  chat["messages"][0]["content"] = std::string(1 << 20, 'a');
  auto r = Post("/mistral/v1/chat/completions", chat);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(metrics_.Get(Counter::kProxyRefusedAuth), 1u);
  EXPECT_EQ(LastRow(1).status, 200);
}

TEST_F(Proxy, AConnectThatNeverEndsTimesOutOnTheLoopToo) {
  // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
  // stays in progress until it gives up.
  int port = 0;
  int listener = LoopbackSocket(&port, false);
  listen(listener, 0);
  std::vector<int> queued;
  for (int i = 0; i < 2; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    queued.push_back(fd);
  }
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000), [port](Config& c) {
    c.upstreams["deepseek"].base_url = "http://127.0.0.1:" + std::to_string(port);
    c.upstream_connect_timeout_ms = 300;
  });
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));  // a worker's
  ASSERT_EQ(r->status, 504);
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 0u);
  auto s = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));  // the loop's
  ASSERT_EQ(s->status, 504);
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 1u);
  EXPECT_EQ(json::parse(s->body)["error"]["message"],
            "deepseek upstream timed out (while connecting)");
  EXPECT_EQ(LastRow(2).cost.nanos(), 0);
  EXPECT_EQ(gate_->open_holds(), 0u);
  for (int fd : queued) close(fd);
  close(listener);
}

TEST_F(Proxy, UpstreamCutMidStreamBillsAnEstimate) {
  auto r =
      Post("/deepseek/chat/completions", Chat("deepseek-flash", true), {{"x-sim-cut-after", "4"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.find("[DONE]"), std::string::npos);
  EXPECT_NE(r->body.find("\"error\""), std::string::npos);  // OpenAI-style in-stream error frame
  UsageRecord row = LastRow();
  EXPECT_TRUE(row.estimated);
  EXPECT_GT(row.usage.input_tokens, 0);
  // "Hello w1 w2 w3" relayed: 14 bytes -> 4 tokens.
  EXPECT_EQ(row.usage.output_tokens, 4);
  EXPECT_GT(row.cost.nanos(), 0);
}

TEST_F(Proxy, ClientDisconnectStillBillsTheFullAnswer) {
  json body = Chat("claude-haiku-4-5", true);
  body["max_tokens"] = 40;
  httplib::Client c("127.0.0.1", proxy_->port());
  int chunks = 0;
  httplib::Headers h = {
      {"x-api-key", key_}, {"x-sim-output-tokens", "40"}, {"x-sim-token-delay-ms", "5"}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/anthropic/v1/messages";
  req.headers = h;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
    return ++chunks < 3;
  };  // hang up
  c.send(req);
  UsageRecord row = LastRow();
  EXPECT_FALSE(row.estimated) << "the drain should have reached the final usage";
  EXPECT_EQ(row.usage.output_tokens, 40);
  EXPECT_EQ(row.cost.nanos(), 3 * 1000 + 40 * 5000);
}

TEST_F(Proxy, ClientDisconnectWithoutDrainBillsAnEstimate) {
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000'000), [](Config& c) { c.drain_max_concurrent = 0; });
  json body = Chat("claude-haiku-4-5", true);
  body["max_tokens"] = 200;
  httplib::Client c("127.0.0.1", proxy_->port());
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/anthropic/v1/messages";
  req.headers = {
      {"x-api-key", key_}, {"x-sim-output-tokens", "200"}, {"x-sim-token-delay-ms", "5"}};
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  c.send(req);
  UsageRecord row = LastRow();
  EXPECT_TRUE(row.estimated);
  EXPECT_EQ(row.usage.input_tokens, 3);  // exact input side from message_start
  EXPECT_LT(row.usage.output_tokens, 200);
  EXPECT_GT(row.cost.nanos(), 0) << "a disconnect must never make a request free";
}

TEST_F(Proxy, OpenStreamsHoldNoWorkerThread) {
  // Two workers, 40 long streams: were a stream to hold its worker, the third could
  // only start once one of the first two had ended.
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000'000), [](Config& c) { c.worker_threads = 2; });
  constexpr int kStreams = 40;
  auto run = RunConcurrentStreams(proxy_->port(), kStreams, "/deepseek/chat/completions",
                                  {{"Authorization", "Bearer " + key_},
                                   {"x-sim-output-tokens", "100"},
                                   {"x-sim-token-delay-ms", "30"}},
                                  Chat("deepseek-flash", true).dump());
  EXPECT_EQ(run.ended, kStreams);
  EXPECT_EQ(run.ended_before_all_begun, 0) << "streams waited for workers";
  LastRow(kStreams);
  ASSERT_EQ(ledger_.rows().size(), static_cast<size_t>(kStreams));
  for (const UsageRecord& row : ledger_.rows()) {
    EXPECT_FALSE(row.estimated);
    EXPECT_EQ(row.usage.output_tokens, 100);
  }
}

TEST_F(Proxy, BufferedRequestsTakeTheEventLoopOnceCallerAndConnectionAreKnown) {
  auto on_loop = [&] { return metrics_.Get(Counter::kProxyAnsweredOnLoop); };
  // The first request finds neither the key cached nor a kept-alive connection: a worker.
  ASSERT_EQ(Post("/deepseek/chat/completions", Chat("deepseek-flash", false))->status, 200);
  EXPECT_EQ(on_loop(), 0u);
  for (int i = 0; i < 5; ++i) {
    auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
    ASSERT_EQ(r->status, 200);
    EXPECT_FALSE(r->get_header_value("x-tollgate-request-id").empty());
  }
  EXPECT_EQ(on_loop(), 5u);
  // A refusal is answered on the loop too.
  auto refused = Post("/deepseek/chat/completions", Chat("no-such-model", false));
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(on_loop(), 6u);
  // Billed exactly as on a worker: six rows, the gate's spend their sum, no hold left.
  ASSERT_EQ(LastRow(6).status, 200);
  int64_t billed = 0;
  for (const UsageRecord& row : ledger_.rows()) {
    EXPECT_EQ(row.usage.output_tokens, 16);
    billed += row.cost.nanos();
  }
  EXPECT_GT(billed, 0);
  EXPECT_EQ(gate_->spend(user_.id).nanos(), billed);
  EXPECT_EQ(gate_->open_holds(), 0u);
  EXPECT_EQ(metrics_.Get(Counter::kProxyRequests), 7u);
}

TEST_F(Proxy, StreamsTakeTheEventLoopOnceCallerAndConnectionAreKnown) {
  auto on_loop = [&] { return metrics_.Get(Counter::kProxyAnsweredOnLoop); };
  auto stream = [&](httplib::Headers headers = {}) {
    return Post("/deepseek/chat/completions", Chat("deepseek-flash", true), std::move(headers));
  };
  // The first request finds its key not cached and no kept-alive connection: a worker
  // does it all. Once it is settled its upstream connection is back in the pool.
  ASSERT_EQ(stream()->status, 200);
  LastRow(1);
  EXPECT_EQ(gate_->reserved_without_waiting(), 0u);
  EXPECT_EQ(on_loop(), 0u);
  // Then the loop reads, prices and admits a stream, asks the upstream on a kept-alive
  // connection and hands both connections to the relay: no worker.
  for (size_t i = 1; i <= 3; ++i) {
    auto r = stream();
    ASSERT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
    EXPECT_FALSE(r->get_header_value("x-tollgate-request-id").empty());
    LastRow(1 + i);
    EXPECT_EQ(on_loop(), i);
  }
  EXPECT_EQ(gate_->reserved_without_waiting(), 3u);
  // An upstream's error answer to a stream is read whole on the loop and passed on.
  auto failed = stream({{"x-sim-error", "429"}});
  EXPECT_EQ(failed->status, 429);
  EXPECT_EQ(LastRow(5).status, 429);
  EXPECT_EQ(on_loop(), 4u);
  // A stream refused (a model without a price) is answered on the loop, natively.
  auto refused = Post("/deepseek/chat/completions", Chat("no-such-model", true));
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("no-such-model"), std::string::npos);
  EXPECT_EQ(on_loop(), 5u);
  // A stream the gate leaves to a worker to decide: reserved and begun there.
  gate_->set_leave_to_worker(true);
  auto decided_on_worker = stream();
  ASSERT_EQ(decided_on_worker->status, 200);
  EXPECT_NE(decided_on_worker->body.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(gate_->reserved_without_waiting(), 5u);
  EXPECT_EQ(on_loop(), 5u);
  // Billed as on a worker: one row each, the gate's spend their sum, no hold left.
  LastRow(6);
  int64_t billed = 0;
  for (const UsageRecord& row : ledger_.rows()) {
    EXPECT_TRUE(row.streamed);
    EXPECT_EQ(row.usage.output_tokens, row.status == 200 ? 16 : 0);
    EXPECT_FALSE(row.estimated);
    billed += row.cost.nanos();
  }
  EXPECT_EQ(billed, 5 * (450 + 9600));
  EXPECT_EQ(gate_->spend(user_.id).nanos(), billed);
  EXPECT_EQ(gate_->open_holds(), 0u);
}

TEST_F(Proxy, RequestIdsAreTimeOrderedForTheLedgersIndex) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
    ASSERT_EQ(r->status, 200);
    ids.push_back(r->get_header_value("x-tollgate-request-id"));
    clock_.Advance(std::chrono::microseconds(1));
  }
  for (const std::string& id : ids) {
    EXPECT_EQ(id.size(), 4u + 14 + 12) << id;
    EXPECT_EQ(id.rfind("tgr_", 0), 0u) << id;
  }
  EXPECT_LT(ids[0], ids[1]);
  EXPECT_LT(ids[1], ids[2]);
  EXPECT_EQ(ids[0].substr(4, 14), "066063846c9000") << "microseconds since the epoch, in hex";
}

// Reads one request (head and Content-Length body) from `fd`; false once it closed.
bool ReadOneRequest(int fd) {
  std::string in;
  char buffer[4096];
  for (;;) {
    size_t end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      size_t at = in.find("Content-Length: ");
      size_t length = at == std::string::npos ? 0 : std::stoul(in.substr(at + 16));
      if (in.size() >= end + 4 + length) return true;
    }
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) return false;
    in.append(buffer, static_cast<size_t>(n));
  }
}

// A raw upstream's answer: a DeepSeek chat completion of 3 + 1 tokens.
const std::string& CannedAnswer() {
  static const std::string answer =
      R"({"id":"x","object":"chat.completion","model":"deepseek-flash","choices":[],)"
      R"("usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})";
  static const std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(answer.size()) + "\r\n\r\n" + answer;
  return out;
}

TEST_F(Proxy, ASilentUpstreamTimesOutOnTheLoopPath) {
  // An upstream that answers the first request on a kept-alive connection, then is
  // silent: the second request goes out on that connection from the event loop.
  int port = 0;
  int listener = LoopbackSocket(&port);
  std::thread upstream([listener] {
    int fd = accept(listener, nullptr, nullptr);
    if (ReadOneRequest(fd)) send(fd, CannedAnswer().data(), CannedAnswer().size(), MSG_NOSIGNAL);
    while (ReadOneRequest(fd)) {
    }  // the second request: read, never answered, until the proxy gives up
    close(fd);
  });
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000), [port](Config& c) {
    c.upstreams["deepseek"].base_url = "http://127.0.0.1:" + std::to_string(port);
    c.upstream_read_timeout_ms = 500;
  });
  ASSERT_EQ(Post("/deepseek/chat/completions", Chat("deepseek-flash", false))->status, 200);
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 504);
  EXPECT_EQ(json::parse(r->body)["error"]["message"],
            "deepseek upstream timed out (while waiting for the answer)");
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 1u);
  EXPECT_EQ(LastRow(2).status, 504);
  EXPECT_EQ(gate_->open_holds(), 0u);
  Stop();  // closes the connection the upstream thread waits on
  upstream.join();
  close(listener);
}

// Whether a socket of this process's machine that the far end closed (CLOSE_WAIT) is
// still open towards 127.0.0.1:`port`.
bool HalfClosedTo(int port) {
  std::ifstream tcp("/proc/net/tcp");
  char remote[16];
  std::snprintf(remote, sizeof(remote), "0100007F:%04X", port);
  for (std::string line; std::getline(tcp, line);) {
    std::istringstream fields(line);
    std::string slot, local, peer, state;
    fields >> slot >> local >> peer >> state;
    if (peer == remote && state == "08") return true;
  }
  return false;
}

TEST_F(Proxy, TheLoopKeepsItsUpstreamConnectionUntilTheUpstreamClosesIt) {
  // The first connection answers three requests and is then closed by the upstream, as
  // servers close idle keep-alive connections, without a word; the second answers
  // until tollgate closes it.
  int port = 0;
  int listener = LoopbackSocket(&port);
  std::atomic<int> accepted{0};
  std::atomic<bool> first_closed{false};
  std::thread upstream([listener, &accepted, &first_closed] {
    const std::string& out = CannedAnswer();
    for (int answers : {3, -1}) {
      int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted;
      for (int i = 0; i != answers && ReadOneRequest(fd); ++i)
        send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      close(fd);
      first_closed = true;
    }
  });
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000), [port](Config& c) {
    c.upstreams["deepseek"].base_url = "http://127.0.0.1:" + std::to_string(port);
  });
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(Post("/deepseek/chat/completions", Chat("deepseek-flash", false))->status, 200);
  EXPECT_EQ(accepted, 1);  // one connection, kept by the loop between its requests
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 2u);  // the first had no key cached
  // The loop watches the idle connection: it closes its end as soon as the upstream
  // closed the other (a connection idling unwatched would sit half-closed until used).
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!first_closed && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  while (HalfClosedTo(port) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  ASSERT_TRUE(first_closed);
  EXPECT_FALSE(HalfClosedTo(port)) << "the loop kept a connection the upstream had closed";
  // The next request goes on a new connection, unharmed.
  for (int i = 0; i < 3; ++i) {
    auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(accepted, 2);
  // All three on the loop: the new connection too (plain HTTP to an IP address is
  // connected without waiting).
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 5u);
  EXPECT_EQ(LastRow(6).status, 200);
  EXPECT_EQ(gate_->open_holds(), 0u);
  Stop();  // closes the second connection
  upstream.join();
  close(listener);
}

TEST_F(Proxy, ARequestANewConnectionLostIsNotSentAgain) {
  // The upstream reads each request and closes without a word: it may have run it, so a
  // new connection's request is not sent again (only a kept-alive connection's may be,
  // the upstream having closed it while it sat idle).
  int port = 0;
  int listener = LoopbackSocket(&port);
  std::atomic<int> requests{0};
  std::thread upstream([listener, &requests] {
    for (;;) {
      int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      if (ReadOneRequest(fd)) ++requests;
      close(fd);
    }
  });
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(1'000'000'000), [port](Config& c) {
    c.upstreams["deepseek"].base_url = "http://127.0.0.1:" + std::to_string(port);
  });
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));  // a worker's
  ASSERT_EQ(r->status, 502);
  EXPECT_EQ(requests, 1);
  auto s = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));  // the loop's
  ASSERT_EQ(s->status, 502);
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), 1u);
  EXPECT_EQ(json::parse(s->body)["error"]["message"],
            "deepseek upstream closed the connection (while waiting for the answer)");
  EXPECT_EQ(requests, 2);
  EXPECT_EQ(gate_->open_holds(), 0u);
  Stop();
  shutdown(listener, SHUT_RDWR);
  upstream.join();
  close(listener);
}

TEST_F(Proxy, BadInputGetsNativeErrors) {
  struct Case {
    std::string path, body;
    httplib::Headers headers;
    int status;
    std::string needle;
  };
  std::string deep(50000, '[');  // under the 64 KiB body limit
  std::vector<Case> cases = {
      {"/deepseek/chat/completions", "{not json", {}, 400, "not valid JSON"},
      {"/deepseek/chat/completions", R"({"messages":[]})", {}, 400, "model"},
      {"/deepseek/chat/completions",
       R"({"model":"deepseek-flash","messages":[],"stream":"yes"})",
       {},
       400,
       "stream"},
      {"/deepseek/chat/completions",
       R"({"model":"deepseek-flash","messages":[],"max_tokens":"9"})",
       {},
       400,
       "max_tokens"},
      {"/deepseek/chat/completions", R"({"model":"gpt-9","messages":[]})", {}, 400, "no price"},
      {"/deepseek/chat/completions", R"({"model":"deepseek-flash","max_tokens":1e999})", {}, 400,
       "not valid JSON"},
      {"/anthropic/v1/messages",
       R"({"model":"claude-haiku-4-5","messages":[]})",
       {},
       400,
       "max_tokens"},
      {"/deepseek/chat/completions", deep, {}, 400, "nested deeper"},
      {"/deepseek/nothing/here", "{}", {}, 404, "unknown path"},
      {"/openai/v1/chat/completions", "{}", {}, 404, "unknown path"},
      {"/deepseek/chat/completions", std::string(70 * 1024, ' '), {}, 413, "larger than"},
  };
  for (const Case& c : cases) {
    httplib::Headers h = c.headers;
    h.emplace("Authorization", "Bearer " + key_);
    auto r = client_->Post(c.path.c_str(), h, c.body, "application/json");
    ASSERT_TRUE(r) << c.path;
    EXPECT_EQ(r->status, c.status) << c.path << " " << c.body.substr(0, 60);
    EXPECT_NE(r->body.find(c.needle), std::string::npos) << r->body;
  }
  auto a = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}}, "[]", "application/json");
  EXPECT_EQ(json::parse(a->body)["type"], "error");
  auto o = client_->Post("/ollama/api/chat", {{"Authorization", "Bearer " + key_}}, "{}",
                         "application/json");
  EXPECT_TRUE(json::parse(o->body)["error"].is_string());
  EXPECT_TRUE(ledger_.rows().empty()) << "refused requests are never forwarded";
}

TEST_F(Proxy, KeysAreCheckedAndNeverEchoed) {
  auto none = client_->Post("/deepseek/chat/completions", Chat("deepseek-flash", false).dump(),
                            "application/json");
  EXPECT_EQ(none->status, 401);
  auto bad = Post("/deepseek/chat/completions", Chat("deepseek-flash", false), {},
                  "tg-" + std::string(43, 'x'));
  EXPECT_EQ(bad->status, 401);
  EXPECT_EQ(json::parse(bad->body)["error"]["type"], "authentication_error");
  ASSERT_TRUE(directory_.RevokeKey(key_.substr(0, 12), clock_.Now()).ok());
  auto revoked = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  EXPECT_EQ(revoked->status, 401);
  EXPECT_NE(revoked->body.find("revoked"), std::string::npos);
  EXPECT_EQ(revoked->body.find(key_), std::string::npos);
  auto expired = directory_.CreateKey(user_.id, "old", false, clock_.Now() - 1s, clock_.Now() - 2s);
  auto e = Post("/deepseek/chat/completions", Chat("deepseek-flash", false), {}, expired->secret);
  EXPECT_EQ(e->status, 401);
  EXPECT_NE(e->body.find("expired"), std::string::npos);
  ASSERT_TRUE(directory_.SetUserDisabled(user_.id, true).ok());
  auto k = directory_.CreateKey(user_.id, "new", false, std::nullopt, clock_.Now());
  EXPECT_EQ(
      Post("/deepseek/chat/completions", Chat("deepseek-flash", false), {}, k->secret)->status,
      401);
  EXPECT_EQ(metrics_.Get(Counter::kProxyRefusedAuth), 5u);
}

TEST_F(Proxy, BudgetRefusalIsFinal402InEachEnvelope) {
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(10));  // one nano-dollar short of anything
  json claude = Chat("claude-haiku-4-5", false);
  claude["max_tokens"] = 5;
  auto a = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}}, claude.dump(),
                         "application/json");
  EXPECT_EQ(a->status, 402);
  EXPECT_EQ(a->get_header_value("x-should-retry"), "false");
  EXPECT_EQ(json::parse(a->body)["error"]["type"], "billing_error");
  EXPECT_NE(a->body.find("limit $0.000000010"), std::string::npos) << a->body;
  auto d = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  EXPECT_EQ(d->status, 402);
  EXPECT_EQ(json::parse(d->body)["error"]["code"], "budget_exceeded");
  auto m = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
  EXPECT_EQ(m->status, 402);
  EXPECT_EQ(json::parse(m->body)["object"], "error");
  auto o = Post("/ollama/api/generate", {{"model", "x"}, {"prompt", "hi"}, {"stream", false}});
  EXPECT_EQ(o->status, 200) << "Ollama is free: a zero-cost request always fits";
  EXPECT_EQ(metrics_.Get(Counter::kProxyRefusedBudget), 3u);
}

// A huge output cap was admitted: its cost saturated, input + output wrapped to a
// negative amount, and the hold it left refused the user for good.
TEST_F(Proxy, AnOutputCapPastTheModelsIsRefusedAndLocksNobodyOut) {
  Stop();
  ledger_.Clear();
  Start(Money::FromNanos(5'000'000'000));  // $5
  for (const char* huge : {"999999999999999999", "9223372036854775807", "18446744073709551615",
                           "64001"}) {
    auto c = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}},
                           R"({"model":"claude-haiku-4-5","max_tokens":)" + std::string(huge) +
                               R"(,"messages":[{"role":"user","content":"hi"}]})",
                           "application/json");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->status, 400) << huge;
    EXPECT_EQ(json::parse(c->body)["error"]["type"], "invalid_request_error") << c->body;
    EXPECT_NE(c->body.find("max_tokens"), std::string::npos) << c->body;
    if (std::string(huge) == "64001") continue;  // Haiku's maximum + 1; Mistral names none
    json mistral = Chat("mistral-large-latest", false);
    mistral["max_tokens"] = json::parse(huge);
    auto m = Post("/mistral/v1/chat/completions", mistral);
    EXPECT_EQ(m->status, 400) << huge << " " << m->body;
    EXPECT_NE(m->body.find("max_tokens"), std::string::npos) << m->body;
  }
  json ollama = {{"model", "x"}, {"prompt", "hi"}, {"stream", false},
                 {"options", {{"num_predict", 999999999999999999}}}};
  auto o = Post("/ollama/api/generate", ollama);
  EXPECT_EQ(o->status, 400) << o->body;
  EXPECT_NE(o->body.find("options.num_predict"), std::string::npos) << o->body;
  EXPECT_EQ(gate_->open_holds(), 0u) << "nothing was held";
  EXPECT_TRUE(ledger_.rows().empty()) << "nothing was forwarded";
  // num_predict -1 (without end): Ollama gets the cap the gate reserved for.
  json unbounded = {{"model", "x"}, {"prompt", "hi"}, {"stream", false},
                    {"options", {{"num_predict", -1}}}};
  auto u = Post("/ollama/api/generate", unbounded);
  EXPECT_EQ(u->status, 200) << u->body;
  EXPECT_EQ(json::parse(SimSaw()["body"].get<std::string>())["options"]["num_predict"], 4096);
  // At the model's maximum, and after all of the above, the user is served.
  json claude = Chat("claude-haiku-4-5", false);
  claude["max_tokens"] = 64000;
  auto ok = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}}, claude.dump(),
                          "application/json");
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(Proxy, ClampsAnUnsetMaxTokensToWhatTheBudgetAffords) {
  Stop();
  ledger_.Clear();
  // deepseek-flash off-peak: 3-message estimate input then $0.60/M out; 300,000 nanos
  // affords ~500 output tokens, less than the 32,768 default cap.
  Start(Money::FromNanos(300'000));
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false));
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_TRUE(r->has_header("x-tollgate-max-tokens-clamped"));
  int64_t clamped = std::stoll(r->get_header_value("x-tollgate-max-tokens-clamped"));
  EXPECT_GE(clamped, config_.min_output_tokens);
  EXPECT_LT(clamped, 500);
  EXPECT_EQ(json::parse(SimSaw()["body"].get<std::string>())["max_tokens"], clamped);
}

TEST_F(Proxy, ActAsUserNeedsTheCapability) {
  auto r = Post("/deepseek/chat/completions", Chat("deepseek-flash", false),
                {{"X-Tollgate-User", "bob"}});
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("act_as_user"), std::string::npos);
  auto service = directory_.CreateKey(user_.id, "svc", true, std::nullopt, clock_.Now());
  auto ok = Post("/deepseek/chat/completions", Chat("deepseek-flash", false),
                 {{"X-Tollgate-User", "bob"}}, service->secret);
  ASSERT_EQ(ok->status, 200) << ok->body;
  auto bob = directory_.FindUser("bob");
  ASSERT_TRUE(bob.ok()) << "the end user is created on first sight";
  EXPECT_EQ(LastRow().user_id, bob->id);
  json native = Chat("deepseek-flash", false);
  native["user"] = "carol";
  Post("/deepseek/chat/completions", native, {}, service->secret);
  EXPECT_EQ(LastRow(2).user_id, directory_.FindUser("carol")->id);
  Post("/deepseek/chat/completions", native);  // a plain key's `user` field is not an identity
  EXPECT_EQ(LastRow(3).user_id, user_.id);
}

}  // namespace
}  // namespace tollgate::testing
