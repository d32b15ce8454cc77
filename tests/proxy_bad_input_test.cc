// The proxy port against input meant to break it: bytes that are not UTF-8 wherever a
// caller can put them, paths that would name another resource upstream, and a gate
// that throws. Every request gets an answer in the provider's shape, every answer is
// valid UTF-8 JSON, and the proxy goes on serving.
#include <stdexcept>

#include "tests/proxy_fixture.h"

namespace tollgate::testing {
namespace {

// The status and the body of an answer read off the wire.
struct Wire {
  int status = 0;
  std::string body;
};
Wire Parse(const std::string& reply) {
  Wire w;
  if (reply.rfind("HTTP/1.1 ", 0) == 0) w.status = std::stoi(reply.substr(9, 3));
  size_t blank = reply.find("\r\n\r\n");
  if (blank != std::string::npos) w.body = reply.substr(blank + 4);
  return w;
}

class ProxyBadInput : public ProxyFixture {
 protected:
  Wire Raw(const std::string& wire) { return Parse(RawExchange(proxy_->port(), wire)); }
  // `body` as the bytes of a chat request to Mistral, with the caller's key.
  std::string ChatWire(const std::string& body, const std::string& extra_headers = "") {
    return "POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " +
           key_ + "\r\nContent-Type: application/json\r\n" + extra_headers +
           "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           body;
  }
  // The answer's body parses as JSON (nlohmann refuses bytes that are not UTF-8).
  static json ValidJson(const Wire& w) {
    json j = json::parse(w.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not valid UTF-8 JSON: " << w.body;
    return j;
  }
  void ExpectStillServing() {
    auto r = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
};

TEST_F(ProxyBadInput, ABytePastAsciiInThePathIsAnsweredAndTheProxyGoesOn) {
  // No key needed: this ended the process (json's type_error.316 on the echoed path).
  Wire unknown = Raw("GET /\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(unknown.status, 404);
  json j = ValidJson(unknown);
  EXPECT_NE(j["error"]["message"].get<std::string>().find("unknown path /\\xFF"), std::string::npos)
      << unknown.body;

  Wire provider = Raw("POST /mistral/\xff HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + key_ +
                      "\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(provider.status, 404);
  EXPECT_EQ(ValidJson(provider)["object"], "error") << "Mistral's own envelope";
  ExpectStillServing();
}

TEST_F(ProxyBadInput, AModelOrContentNotUtf8Gets400OnAWorkerAndOnTheLoop) {
  const std::string bad_model =
      "{\"model\":\"mistral-small-\xff\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  const std::string bad_content =
      "{\"model\":\"mistral-small-latest\",\"messages\":[{\"role\":\"user\",\"content\":"
      "\"\xff\xfe\"}]"
      "}";
  // The first request of a key goes to a worker; once the key is cached, to the loop
  // (where the same body ended the process).
  for (int round = 0; round < 2; ++round) {
    uint64_t on_loop = metrics_.Get(Counter::kProxyAnsweredOnLoop);
    for (const std::string& body : {bad_model, bad_content}) {
      Wire w = Raw(ChatWire(body));
      EXPECT_EQ(w.status, 400) << w.body;
      json j = ValidJson(w);
      EXPECT_EQ(j["error"]["type"], "invalid_request_error") << w.body;
      EXPECT_NE(j["error"]["message"].get<std::string>().find("\\xFF"), std::string::npos)
          << "the bad byte is named, escaped: " << w.body;
    }
    if (round == 0) {
      ExpectStillServing();  // caches the key
    } else {
      EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), on_loop + 2);
    }
  }
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 0u) << "refused as bad input, not as a bug";
  ExpectStillServing();
}

// Found by tests/fuzz/fuzz_provider_usage: a number past a double's range made the
// body's parse throw, and the boundary answered 500 and counted a bug.
TEST_F(ProxyBadInput, ANumberPastADoubleIs400NotABug) {
  for (int round = 0; round < 2; ++round) {  // a worker, then the loop (the key is cached)
    Wire w = Raw(ChatWire(
        R"({"model":"mistral-small-latest","temperature":1e999,"messages":[{"role":"user","content":"hi"}]})"));
    EXPECT_EQ(w.status, 400) << w.body;
    EXPECT_EQ(ValidJson(w)["error"]["type"], "invalid_request_error") << w.body;
    ExpectStillServing();
  }
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 0u) << "refused as bad input, not as a bug";
}

TEST_F(ProxyBadInput, EveryErrorPathAnswersValidUtf8Json) {
  auto svc = directory_.CreateKey(user_.id, "svc", true, std::nullopt, clock_.Now());
  ASSERT_TRUE(svc.ok());
  const std::string chat = Chat("mistral-small-latest", false).dump();
  const std::string bad = "\xff\xfe\xc3(";
  struct Case {
    std::string what;
    std::string wire;
  } cases[] = {
      {"an unknown prefix", "GET /x" + bad + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"},
      {"an unknown native path", "GET /anthropic/v1/" + bad + " HTTP/1.1\r\nHost: t\r\nx-api-key: " + key_ +
                                     "\r\nConnection: close\r\n\r\n"},
      {"a dot-segment path",
       "GET /mistral/v1/models/../" + bad + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"},
      {"a key", "GET /mistral/v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tg-" + bad +
                    "\r\nConnection: close\r\n\r\n"},
      {"a body that is no JSON", ChatWire("{\"model\":" + bad)},
      {"a model", ChatWire("{\"model\":\"" + bad + "\",\"messages\":[]}")},
      {"an end user header",
       "POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + svc->secret +
           "\r\nX-Tollgate-User: u" + bad + "\r\nConnection: close\r\nContent-Length: " +
           std::to_string(chat.size()) + "\r\n\r\n" + chat},
      {"a body too large",
       "POST /ollama/api/chat" + bad +
           " HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 99999999\r\n\r\n"},
  };
  for (const Case& c : cases) {
    Wire w = Raw(c.wire);
    EXPECT_GE(w.status, 400) << c.what;
    EXPECT_LT(w.status, 500) << c.what << ": " << w.body;
    ValidJson(w);
  }
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 0u);
  EXPECT_TRUE(ledger_.rows().empty());
  EXPECT_EQ(directory_.FindUser("u" + bad).status().code(), Status::Code::kNotFound)
      << "an end user named with bytes that are not text was created";
  ExpectStillServing();
}

TEST_F(ProxyBadInput, DotSegmentsAreRefusedAndNeverReachTheUpstream) {
  ASSERT_TRUE(sim_client_->Delete("/_sim/requests"));
  const std::string mistral_key = "Authorization: Bearer " + key_ + "\r\n";
  for (const char* target :
       {"/mistral/v1/models/../files", "/mistral/v1/models/%2e%2e/files",
        "/mistral/v1/models/%2E%2E/files", "/mistral/v1/models/.%2E/files",
        "/mistral/v1/models/%2e./files", "/mistral/v1/models/..", "/mistral/v1/models/./x",
        "/mistral/v1/models/%2e/x", "/mistral/v1/models/..%2ffiles",
        "/mistral/v1/models/%2F..%2Ffiles", "/mistral/v1/models/..%5cfiles",
        "/mistral/v1/models/..\\files", "/mistral/v1/models?after=/../files"}) {
    std::string path = target;
    bool plain = path.find('?') != std::string::npos;  // a query is no path: passed on
    Wire w = Raw("GET " + path + " HTTP/1.1\r\nHost: t\r\n" + mistral_key + "Connection: close\r\n\r\n");
    if (plain) {
      EXPECT_EQ(w.status, 200) << path << ": " << w.body;
      continue;
    }
    EXPECT_EQ(w.status, 400) << path << ": " << w.body;
    json j = ValidJson(w);
    EXPECT_EQ(j["object"], "error") << path;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("dot-segments"), std::string::npos);
  }
  // In the other providers' shapes too, and on the loop's path (POST).
  Wire anthropic = Raw("GET /anthropic/v1/models/%2e%2e/messages HTTP/1.1\r\nHost: t\r\nx-api-key: " + key_ +
                       "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(anthropic.status, 400);
  EXPECT_EQ(ValidJson(anthropic)["type"], "error");
  std::string chat = Chat("mistral-small-latest", false).dump();
  Wire post = Raw("POST /mistral/v1/x/../chat/completions HTTP/1.1\r\nHost: t\r\n" + mistral_key +
                  "Connection: close\r\nContent-Length: " + std::to_string(chat.size()) +
                  "\r\n\r\n" + chat);
  EXPECT_EQ(post.status, 400);
  json seen = json::parse(sim_client_->Get("/_sim/requests")->body);
  ASSERT_EQ(seen.size(), 1u) << "only the plain path reached the upstream: " << seen.dump();
  EXPECT_EQ(seen[0]["target"], "/v1/models?after=/../files");
  EXPECT_TRUE(ledger_.rows().size() <= 1u);
}

// A gate with a bug: it throws where it should answer.
class ThrowingGate : public Gate {
 public:
  enum class Fault { kNone, kThrows, kThrowsAfterAdmitting };
  explicit ThrowingGate(std::unique_ptr<FakeGate>& inner) : inner_(inner) {}
  void set(Fault f) { fault_ = f; }
  Admission Reserve(const ReserveRequest& r) override {
    if (fault_ != Fault::kNone) throw std::runtime_error("the gate's bug \xff");
    return inner_->Reserve(r);
  }
  void Settle(int64_t user, const std::string& hold, Money cost) override {
    inner_->Settle(user, hold, cost);
  }
  bool ReserveNoWait(const ReserveRequest& r, AdmissionCallback done) override {
    if (fault_ == Fault::kThrows) throw std::runtime_error("the gate's bug on the loop");
    bool taken = inner_->ReserveNoWait(r, std::move(done));
    if (fault_ == Fault::kThrowsAfterAdmitting) throw std::logic_error("the gate's late bug");
    return taken;
  }
  bool SettleNoWait(int64_t user, const std::string& hold, Money cost) override {
    return inner_->SettleNoWait(user, hold, cost);
  }

 private:
  std::unique_ptr<FakeGate>& inner_;
  std::atomic<Fault> fault_{Fault::kNone};
};

class ProxyBoundary : public ProxyFixture {
 protected:
  void SetUp() override {
    proxy_gate_ = &gate_with_bug_;
    ProxyFixture::SetUp();
  }
  ThrowingGate gate_with_bug_{gate_};
};

TEST_F(ProxyBoundary, AnExceptionIs500InTheNativeShapeOnAWorkerAndOnTheLoop) {
  gate_with_bug_.set(ThrowingGate::Fault::kThrows);
  // The key's first request: a worker's.
  auto worker = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
  ASSERT_TRUE(worker);
  EXPECT_EQ(worker->status, 500);
  json j = json::parse(worker->body);
  EXPECT_EQ(j["object"], "error");
  EXPECT_EQ(j["error"]["type"], "api_error");
  EXPECT_EQ(j["error"]["code"], "internal_error");
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 1u);

  // Cached now: the loop's (Anthropic's envelope this time).
  json claude = Chat("claude-haiku-4-5", false);
  claude["max_tokens"] = 10;
  uint64_t on_loop = metrics_.Get(Counter::kProxyAnsweredOnLoop);
  auto loop = client_->Post("/anthropic/v1/messages", {{"x-api-key", key_}}, claude.dump(),
                            "application/json");
  ASSERT_TRUE(loop);
  EXPECT_EQ(loop->status, 500);
  json a = json::parse(loop->body);
  EXPECT_EQ(a["type"], "error");
  EXPECT_EQ(a["error"]["type"], "api_error");
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 2u);
  EXPECT_EQ(metrics_.Get(Counter::kProxyAnsweredOnLoop), on_loop + 1);

  gate_with_bug_.set(ThrowingGate::Fault::kNone);
  auto fine = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->status, 200);
  EXPECT_EQ(gate_->open_holds(), 0u);
  EXPECT_NE(metrics_.RenderPrometheus().find("tollgate_internal_errors_total 2\n"),
            std::string::npos);
}

TEST_F(ProxyBoundary, AFailureAfterTheUpstreamWasAskedAnswersOnceAndBillsTheEstimate) {
  ASSERT_EQ(Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false))->status,
            200);  // caches the key: the next ones take the loop
  ASSERT_EQ(LastRow(1).status, 200);
  gate_with_bug_.set(ThrowingGate::Fault::kThrowsAfterAdmitting);
  auto failed = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500) << failed->body;
  EXPECT_EQ(json::parse(failed->body)["error"]["code"], "internal_error");

  // The upstream's answer came after the 500: it goes to nobody. The same kept-alive
  // connection serves the next request with its own answer.
  gate_with_bug_.set(ThrowingGate::Fault::kNone);
  auto next = Post("/mistral/v1/chat/completions", Chat("mistral-small-latest", false));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(json::parse(next->body)["choices"][0]["message"]["content"],
            "Hello w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15");

  // One row per request: the failed one billed from its estimate (never free), and no
  // hold left behind.
  LastRow(3);
  auto rows = ledger_.rows();
  ASSERT_EQ(rows.size(), 3u);
  const UsageRecord& billed = rows[1];
  EXPECT_EQ(billed.status, 500);
  EXPECT_TRUE(billed.estimated);
  EXPECT_GT(billed.usage.input_tokens, 0);
  EXPECT_GT(billed.cost.nanos(), 0);
  EXPECT_EQ(rows[2].status, 200);
  EXPECT_EQ(gate_->open_holds(), 0u);
  EXPECT_EQ(metrics_.Get(Counter::kInternalErrors), 1u);
}

}  // namespace
}  // namespace tollgate::testing
