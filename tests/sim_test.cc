#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/test_env.h"
#include "tools/sim/sim_server.h"

namespace tollgate::sim {
namespace {

using nlohmann::json;
using testing::SseData;

class Sim : public ::testing::Test {
 protected:
  void SetUp() override {
    SimServer sim({.default_output_tokens = 5, .worker_threads = 8});
    running_ = sim.Release();
    ASSERT_GT(running_->Start("127.0.0.1", 0), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", running_->port());
    client_->set_read_timeout(10, 0);
  }
  httplib::Result Post(const std::string& path, const json& body, httplib::Headers headers = {}) {
    return client_->Post(path.c_str(), headers, body.dump(), "application/json");
  }
  // "hello world!" is 12 characters: ceil(12 / 4) = 3 input tokens.
  json Chat(const std::string& model, bool stream) {
    return {{"model", model},
            {"stream", stream},
            {"messages", {{{"role", "user"}, {"content", "hello world!"}}}}};
  }
  std::unique_ptr<EventServer> running_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(Sim, AnthropicNonStreamingUsage) {
  json body = Chat("claude-haiku-4-5", false);
  body["max_tokens"] = 3;
  auto r = Post("/v1/messages", body, {{"x-sim-cache-read", "7"}, {"x-sim-cache-write-1h", "2"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_TRUE(r->has_header("request-id"));
  json j = json::parse(r->body);
  EXPECT_EQ(j["usage"]["input_tokens"], 3);
  EXPECT_EQ(j["usage"]["output_tokens"], 3);  // capped by max_tokens
  EXPECT_EQ(j["usage"]["cache_read_input_tokens"], 7);
  EXPECT_EQ(j["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 2);
  EXPECT_EQ(j["content"][0]["text"], "Hello w1 w2");
}

TEST_F(Sim, AnthropicRequiresMaxTokens) {
  auto r = Post("/v1/messages", Chat("claude-haiku-4-5", false));
  ASSERT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "invalid_request_error");
}

TEST_F(Sim, AnthropicStreamHasCumulativeUsageInMessageDelta) {
  json body = Chat("claude-haiku-4-5", true);
  body["max_tokens"] = 100;
  auto r = Post("/v1/messages", body);
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("event: message_start"), std::string::npos);
  EXPECT_NE(r->body.find("event: message_stop"), std::string::npos);
  EXPECT_EQ(r->body.find("[DONE]"), std::string::npos);
  auto events = SseData(r->body);
  EXPECT_EQ(events.front()["message"]["usage"]["input_tokens"], 3);
  EXPECT_EQ(events.front()["message"]["usage"]["output_tokens"], 1);
  json delta;
  for (const json& e : events) {
    if (e["type"] == "message_delta") delta = e;
  }
  EXPECT_EQ(delta["usage"]["output_tokens"], 5);
}

TEST_F(Sim, DeepSeekUsageOnlyWithIncludeUsageAndKeepAlives) {
  json body = Chat("deepseek-chat", true);
  auto plain = Post("/chat/completions", body, {{"x-sim-keepalive", "2"}});
  ASSERT_EQ(plain->status, 200);
  EXPECT_EQ(plain->body.rfind(": keep-alive\n\n: keep-alive\n\n", 0), 0u);
  for (const json& c : SseData(plain->body)) EXPECT_TRUE(c["usage"].is_null());

  body["stream_options"] = {{"include_usage", true}};
  auto with =
      Post("/v1/chat/completions", body, {{"x-sim-cache-read", "2"}, {"x-sim-reasoning", "4"}});
  auto chunks = SseData(with->body);
  const json& last = chunks.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["prompt_cache_hit_tokens"], 2);
  EXPECT_EQ(last["usage"]["prompt_cache_miss_tokens"], 1);
  EXPECT_EQ(last["usage"]["completion_tokens"], 9);
  EXPECT_EQ(last["usage"]["completion_tokens_details"]["reasoning_tokens"], 4);
}

TEST_F(Sim, MistralRejectsStreamOptionsAndAlwaysSendsUsage) {
  json body = Chat("mistral-small-latest", true);
  body["stream_options"] = {{"include_usage", true}};
  auto rejected = Post("/v1/chat/completions", body);
  ASSERT_EQ(rejected->status, 422);
  EXPECT_EQ(json::parse(rejected->body)["message"]["detail"][0]["type"], "extra_forbidden");

  body.erase("stream_options");
  auto r = Post("/v1/chat/completions", body);
  ASSERT_EQ(r->status, 200);
  auto chunks = SseData(r->body);
  EXPECT_EQ(chunks.back()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chunks.back()["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 5);
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
}

TEST_F(Sim, OllamaNativeStreamsNdjsonByDefault) {
  json body = {{"model", "llama3.2"},
               {"messages", {{{"role", "user"}, {"content", "hello world!"}}}}};
  auto r = Post("/api/chat", body);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/x-ndjson");
  std::vector<json> lines;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_FALSE(lines.front()["done"]);
  EXPECT_TRUE(lines.back()["done"]);
  EXPECT_EQ(lines.back()["prompt_eval_count"], 3);
  EXPECT_EQ(lines.back()["eval_count"], 5);
}

TEST_F(Sim, OllamaOpenAILayerSendsASeparateUsageChunk) {
  json body = Chat("llama3.2", true);
  body["stream_options"] = {{"include_usage", true}};
  auto chunks = SseData(Post("/v1/chat/completions", body)->body);
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 5);
}

TEST_F(Sim, InjectedErrorsUseEachNativeEnvelope) {
  json claude = Chat("claude-haiku-4-5", false);
  claude["max_tokens"] = 1;
  auto a = Post("/v1/messages", claude, {{"x-sim-error", "429"}});
  EXPECT_EQ(a->status, 429);
  EXPECT_EQ(a->get_header_value("retry-after"), "1");
  EXPECT_EQ(json::parse(a->body)["error"]["type"], "rate_limit_error");
  auto m =
      Post("/v1/chat/completions", Chat("mistral-large-latest", false), {{"x-sim-error", "500"}});
  EXPECT_EQ(json::parse(m->body)["object"], "error");
  auto d = Post("/chat/completions", Chat("deepseek-chat", false), {{"x-sim-error", "503"}});
  EXPECT_EQ(d->status, 503);
  EXPECT_TRUE(json::parse(d->body)["error"].contains("message"));
  auto o =
      Post("/api/generate", {{"model", "llama3.2"}, {"prompt", "x"}}, {{"x-sim-error", "404"}});
  EXPECT_TRUE(json::parse(o->body)["error"].is_string());
}

TEST_F(Sim, CutStreamEndsWithoutTerminator) {
  json body = Chat("mistral-small-latest", true);
  httplib::Headers headers = {{"x-sim-cut-after", "2"}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = headers;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string received;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    received.append(data, n);
    return true;
  };
  auto r = client_->send(req);
  EXPECT_FALSE(r) << "an abrupt close is a read error, not a complete answer";
  EXPECT_NE(received.find("\"Hello\""), std::string::npos) << received;
  EXPECT_NE(received.find("\" w1\""), std::string::npos)
      << "two content chunks arrive before the cut";
  EXPECT_EQ(received.find(" w2"), std::string::npos);
  EXPECT_EQ(received.find("[DONE]"), std::string::npos);
}

TEST_F(Sim, SlowStreamsArePacedWithoutAThreadEach) {
  // Eight workers, 30 slow streams: were each stream a sleeping worker, the ninth could
  // only begin once one of the first eight had ended.
  constexpr int kStreams = 30;
  auto run =
      testing::RunConcurrentStreams(running_->port(), kStreams, "/chat/completions",
                                    {{"x-sim-output-tokens", "40"}, {"x-sim-token-delay-ms", "25"}},
                                    Chat("deepseek-chat", true).dump());
  EXPECT_EQ(run.ended, kStreams);
  EXPECT_EQ(run.ended_before_all_begun, 0) << "streams waited for workers";
}

TEST_F(Sim, RemembersWhatReachedIt) {
  json body = Chat("deepseek-chat", false);
  Post("/chat/completions", body, {{"Authorization", "Bearer sk-upstream"}});
  auto r = client_->Get("/_sim/requests");
  json seen = json::parse(r->body);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back()["path"], "/chat/completions");
  EXPECT_EQ(seen.back()["headers"]["Authorization"], "Bearer sk-upstream");
}

TEST_F(Sim, EmbeddingsAndListings) {
  auto e = Post("/v1/embeddings", {{"model", "mistral-embed"}, {"input", {"abcdefgh"}}});
  EXPECT_EQ(json::parse(e->body)["usage"]["prompt_tokens"], 2);
  auto oe = Post("/api/embed", {{"model", "llama3.2"}, {"input", "abcd"}});
  EXPECT_EQ(json::parse(oe->body)["prompt_eval_count"], 1);
  EXPECT_EQ(json::parse(client_->Get("/api/tags")->body)["models"][0]["name"], "llama3.2:latest");
  EXPECT_FALSE(json::parse(client_->Get("/v1/models")->body)["data"].empty());
  auto count = Post("/v1/messages/count_tokens", Chat("claude-haiku-4-5", false));
  EXPECT_EQ(json::parse(count->body)["input_tokens"], 3);
}

}  // namespace
}  // namespace tollgate::sim
