#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "providers/anthropic.h"
#include "providers/framing.h"
#include "providers/json_bounded.h"
#include "providers/openai_style.h"

namespace tollgate {
namespace {

using nlohmann::json;

// Feeds a stream one byte at a time: frames must not depend on how TCP splits them.
std::string FeedBytewise(StreamObserver& o, const std::string& stream) {
  std::string out;
  for (char c : stream) out += o.Feed(std::string_view(&c, 1));
  return out + o.Flush();
}

TEST(SseSplitter, HandlesCommentsCrlfAndMultiLineData) {
  SseSplitter s;
  auto events = s.Feed(": keep-alive\r\n\r\nevent: a\r\ndata: one\r\ndata: two\r\n\r\ndata: x");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_FALSE(events[0].has_data);
  EXPECT_EQ(events[1].event, "a");
  EXPECT_EQ(events[1].data, "one\ntwo");
  EXPECT_EQ(events[1].raw, "event: a\r\ndata: one\r\ndata: two\r\n\r\n");
  EXPECT_EQ(s.TakeRest(), "data: x");
}

TEST(OpenAIStyleStream, LastNonNullUsageWinsAndUsageChunkCanBeHidden) {
  std::string stream =
      ": keep-alive\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n"
      "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":10,"
      "\"prompt_cache_hit_tokens\":8,\"completion_tokens_details\":{\"reasoning_tokens\":4}}}\n\n"
      "data: [DONE]\n\n";
  auto hidden = openai_style::NewObserver(true);
  std::string out = FeedBytewise(*hidden, stream);
  EXPECT_EQ(out.find("prompt_tokens"), std::string::npos);
  EXPECT_NE(out.find(": keep-alive"), std::string::npos);
  EXPECT_NE(out.find("[DONE]"), std::string::npos);
  EXPECT_TRUE(hidden->finished());
  EXPECT_EQ(hidden->usage().input_tokens, 12);
  EXPECT_EQ(hidden->usage().cache_read_tokens, 8);
  EXPECT_EQ(hidden->usage().output_tokens, 10);
  EXPECT_EQ(hidden->usage().reasoning_tokens, 4);
  EXPECT_EQ(hidden->relayed_text_bytes(), 2);

  auto shown = openai_style::NewObserver(false);
  EXPECT_EQ(FeedBytewise(*shown, stream), stream);
}

TEST(OpenAIStyleStream, ErrorFrameEndsTheStream) {
  auto o = openai_style::NewObserver(false);
  o->Feed("data: {\"error\":{\"message\":\"boom\"}}\n\n");
  EXPECT_TRUE(o->finished());
  EXPECT_TRUE(o->upstream_error());
}

TEST(AnthropicStream, UsageIsCumulativeNeverSummed) {
  std::string stream =
      "event: message_start\ndata: "
      "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,"
      "\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n"
      "event: ping\ndata: {\"type\":\"ping\"}\n\n"
      "event: content_block_delta\ndata: "
      "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}"
      "\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n"
      "event: message_delta\ndata: "
      "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n"
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
  anthropic::Anthropic a;
  auto o = a.ObserveStream(Route{Endpoint::kChat}, false);
  EXPECT_EQ(FeedBytewise(*o, stream), stream);
  EXPECT_TRUE(o->finished());
  EXPECT_EQ(o->usage().input_tokens, 25);
  EXPECT_EQ(o->usage().output_tokens, 15);
  EXPECT_EQ(o->usage().cache_read_tokens, 5);
  EXPECT_EQ(o->usage().cache_write_5m_tokens, 10);  // no split given: all at the 5-minute rate
  EXPECT_EQ(o->relayed_text_bytes(), 5);
}

TEST(AnthropicUsage, SplitsCacheWritesWhenTheAnswerDoes) {
  Usage u;
  anthropic::MergeUsage(json::parse(R"({"input_tokens":6,"cache_creation_input_tokens":30,
      "cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20},
      "cache_read_input_tokens":41203,"output_tokens":21})"),
                        &u);
  EXPECT_EQ(u.cache_write_5m_tokens, 10);
  EXPECT_EQ(u.cache_write_1h_tokens, 20);
  anthropic::MergeUsage(json::parse(R"({"output_tokens":30,"cache_creation_input_tokens":30})"),
                        &u);
  EXPECT_EQ(u.cache_write_1h_tokens, 20) << "a cumulative repeat of the same total keeps the split";
  EXPECT_EQ(u.output_tokens, 30);
}

// Found by tests/fuzz/fuzz_provider_usage: a member of the wrong type in a streamed frame
// threw from the observer (the relay cut the stream and counted a bug), and a negative
// count from an upstream was billed as a refund.
TEST(ProviderStreams, FramesOfTheWrongShapeAreReadAsNoneNeverThrow) {
  const Provider& ollama = *FindProvider("ollama");
  auto native = ollama.ObserveStream(*ollama.Match("POST", "api/chat"), false);
  std::string lines =
      "{\"message\":{\"content\":\"hi\"},\"done\":4}\n"
      "{\"done\":true,\"prompt_eval_count\":\"26\",\"eval_count\":-9}\n";
  EXPECT_EQ(FeedBytewise(*native, lines), lines);
  EXPECT_TRUE(native->finished());
  EXPECT_EQ(native->usage().input_tokens, 0);
  EXPECT_EQ(native->usage().output_tokens, 0);
  EXPECT_EQ(ollama.UsageFromAnswer(*ollama.Match("POST", "api/generate"),
                                   R"({"done":true,"prompt_eval_count":1.5e300,"eval_count":-3})")
                .output_tokens,
            0);

  anthropic::Anthropic a;
  auto sse = a.ObserveStream(Route{Endpoint::kChat}, false);
  std::string events =
      "event: message_start\ndata: {\"type\":5,\"message\":{\"usage\":{\"input_tokens\":-25}}}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-7,"
      "\"cache_creation_input_tokens\":9223372036854775807}}\n\n";
  EXPECT_EQ(FeedBytewise(*sse, events), events);
  EXPECT_EQ(sse->usage().input_tokens, 0) << "the event's name stands for a type that is not text";
  EXPECT_EQ(sse->usage().output_tokens, 0);
  Usage u;
  anthropic::MergeUsage(json::parse(R"({"cache_creation":{"ephemeral_5m_input_tokens":9223372036854775807,
      "ephemeral_1h_input_tokens":9223372036854775807}})"),
                        &u);
  anthropic::MergeUsage(json::parse(R"({"cache_creation_input_tokens":5})"), &u);  // no overflow
  EXPECT_EQ(u.cache_write_5m_tokens, 5);
}

TEST(Providers, RequestFactsAndEstimates) {
  const Provider* ds = FindProvider("deepseek");
  auto route = ds->Match("POST", "chat/completions");
  ASSERT_TRUE(route);
  auto f =
      ds->ReadRequest(*route, json::parse(R"({"model":"deepseek-flash","max_tokens":50,"user":"u-1",
      "stream":true,"stream_options":{"include_usage":true},
      "messages":[{"role":"user","content":"0123456789012345678901234567890123"}]})"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->max_output_tokens, 50);
  EXPECT_TRUE(f->client_asked_usage);
  EXPECT_EQ(f->end_user, "u-1");
  // 34 bytes: ceil(34 x 12 / 35) = 12, + 4 per message + 3.
  EXPECT_EQ(f->input_tokens_estimate, 12 + 4 + 3);
  EXPECT_GE(f->input_tokens_estimate, 34 / 4) << "an upper bound of the usual chars/4";

  const Provider* ol = FindProvider("ollama");
  auto native = ol->Match("POST", "api/generate");
  auto g = ol->ReadRequest(
      *native, json::parse(R"({"model":"llama3.2","prompt":"hi","options":{"num_predict":-1}})"));
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->stream) << "Ollama's native endpoints stream by default";
  EXPECT_FALSE(g->max_output_tokens.has_value()) << "num_predict -1 means unbounded";
  EXPECT_TRUE(ol->UnboundedWithoutCap(*native)) << "so the proxy sends the cap it reserves";
  // 2^63 as JSON is an unsigned number: it once read as a negative cap (no cap at all).
  EXPECT_FALSE(ol->ReadRequest(*native, json::parse(R"({"model":"x","prompt":"hi",
      "options":{"num_predict":9223372036854775808}})"))
                   .ok());
  auto past = ol->ReadRequest(*native, json::parse(R"({"model":"llama3.2","prompt":"hi",
                                                      "options":{"num_predict":9223372036854775808}})"));
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.status().message().find("options.num_predict"), std::string::npos);
  EXPECT_FALSE(ol->Match("POST", "api/pull").has_value());
  EXPECT_EQ(FindProvider("openai"), nullptr);
}

// A document's text is the caller's input as much as a message's: it was once counted as
// an image (a flat 1,500 tokens), whatever its length.
TEST(Providers, ADocumentsTextCountsInTheInputEstimate) {
  const Provider* an = FindProvider("anthropic");
  auto route = an->Match("POST", "v1/messages");
  std::string text(400'000, 'w');
  for (const char* source :
       {R"({"type":"text","media_type":"text/plain","data":")",
        R"({"type":"content","content":[{"type":"text","text":")"}) {
    std::string closing = std::string(source).find("content\":[") != std::string::npos ? "\"}]}"
                                                                                   : "\"}";
    std::string body = R"({"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user",
        "content":[{"type":"document","source":)" +
                       std::string(source) + text + closing + "}]}]}";
    auto f = an->ReadRequest(*route, json::parse(body));
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_GE(f->input_tokens_estimate, 400'000 / 4) << source;
    auto scanned = an->ReadRequestBytes(*route, body);
    EXPECT_TRUE(!scanned || scanned->input_tokens_estimate >= 400'000 / 4) << source;
  }
}

TEST(Providers, RewritesFollowEachProvidersQuirks) {
  const Provider* m = FindProvider("mistral");
  auto route = *m->Match("POST", "v1/chat/completions");
  json body = json::parse(
      R"({"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[]})");
  RequestFacts f = *m->ReadRequest(route, body);
  Rewritten mr = m->Rewrite(route, f, 300, &body);
  EXPECT_TRUE(mr.changed);
  EXPECT_FALSE(mr.hide_usage_chunk);
  EXPECT_FALSE(body.contains("stream_options"));
  EXPECT_EQ(body["max_tokens"], 300);

  const Provider* d = FindProvider("deepseek");
  json ds = json::parse(R"({"model":"x","stream":true,"messages":[]})");
  RequestFacts df = *d->ReadRequest(*d->Match("POST", "chat/completions"), ds);
  Rewritten dr = d->Rewrite(*d->Match("POST", "chat/completions"), df, std::nullopt, &ds);
  EXPECT_TRUE(dr.changed);
  EXPECT_TRUE(dr.hide_usage_chunk);
  EXPECT_TRUE(ds["stream_options"]["include_usage"]);

  const Provider* o = FindProvider("ollama");
  json ol = json::parse(R"({"model":"x","prompt":"p"})");
  auto oroute = *o->Match("POST", "api/generate");
  EXPECT_TRUE(o->Rewrite(oroute, *o->ReadRequest(oroute, ol), 99, &ol).changed);
  EXPECT_EQ(ol["options"]["num_predict"], 99);
}

TEST(Providers, ABodyWithoutQuirksOrClampIsUnchanged) {
  // Unchanged, the caller's own bytes go upstream (no re-serialising on the hot path);
  // a clamp must always count as a change, or the cap the gate reserved for is lost.
  struct Case {
    const char* provider;
    const char* path;
  };
  for (const Case& c : std::initializer_list<Case>{{"mistral", "v1/chat/completions"},
                                                   {"deepseek", "chat/completions"},
                                                   {"ollama", "v1/chat/completions"},
                                                   {"ollama", "api/chat"},
                                                   {"anthropic", "v1/messages"}}) {
    const Provider* p = FindProvider(c.provider);
    auto route = *p->Match("POST", c.path);
    json body = json::parse(R"({"model":"x","max_tokens":5,"messages":[]})");
    json before = body;
    RequestFacts facts = *p->ReadRequest(route, body);
    Rewritten r = p->Rewrite(route, facts, std::nullopt, &body);
    EXPECT_FALSE(r.changed) << c.path;
    EXPECT_FALSE(r.hide_usage_chunk) << c.path;
    EXPECT_EQ(body, before) << c.path;
    EXPECT_TRUE(p->Rewrite(route, facts, 3, &body).changed) << c.path;
    EXPECT_NE(body, before) << c.path;
  }
  // A stream that asked for its usage itself needs nothing added either.
  const Provider* d = FindProvider("deepseek");
  auto route = *d->Match("POST", "chat/completions");
  json asked = json::parse(
      R"({"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[]})");
  EXPECT_FALSE(d->Rewrite(route, *d->ReadRequest(route, asked), std::nullopt, &asked).changed);
}

TEST(Providers, NativeErrorEnvelopes) {
  EXPECT_EQ(
      json::parse(
          FindProvider("anthropic")->ErrorBody(nullptr, ErrorKind::kBudget, "m"))["error"]["type"],
      "billing_error");
  json ds =
      json::parse(FindProvider("deepseek")->ErrorBody(nullptr, ErrorKind::kAuthentication, "m"));
  EXPECT_EQ(ds["error"]["type"], "authentication_error");
  EXPECT_TRUE(ds["error"].contains("param"));
  Route native{Endpoint::kChat, false}, v1{Endpoint::kChat, true};
  EXPECT_EQ(
      json::parse(FindProvider("ollama")->ErrorBody(&native, ErrorKind::kBudget, "m"))["error"],
      "m");
  EXPECT_EQ(json::parse(FindProvider("ollama")->ErrorBody(&v1, ErrorKind::kBudget,
                                                          "m"))["error"]["message"],
            "m");
  EXPECT_EQ(StatusFor(ErrorKind::kBudget), 402);
  EXPECT_EQ(StatusFor(ErrorKind::kTimeout), 504);
}

TEST(JsonBounded, RefusesDeepNestingWithoutCrashing) {
  std::string error;
  EXPECT_FALSE(ParseJsonBounded(std::string(100000, '['), &error).has_value());
  EXPECT_NE(error.find("nested deeper"), std::string::npos);
  EXPECT_TRUE(ParseJsonBounded(R"({"a":[[[1]]]})", &error).has_value());
  EXPECT_FALSE(ParseJsonBounded("{", &error).has_value());
  EXPECT_NE(error.find("not valid JSON"), std::string::npos);
}

// Found by tests/fuzz/fuzz_provider_usage: a number past a double's range made the parser
// throw out_of_range (not a parse_error) on the second parse, which asks why.
TEST(JsonBounded, ANumberPastADoubleIsNotJsonNotAThrow) {
  std::string error;
  EXPECT_FALSE(ParseJsonBounded("9e541", &error).has_value());
  EXPECT_NE(error.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(
      ParseJsonBounded(R"({"model":"m","messages":[],"temperature":-1e999})", &error).has_value());
  const Provider& m = *FindProvider("mistral");
  EXPECT_FALSE(m.UsageFromAnswer(*m.Match("POST", "v1/chat/completions"),
                                 R"({"usage":{"prompt_tokens":1e400,"completion_tokens":2}})")
                   .reported);
}

TEST(JsonBounded, CountsOnlyBracketsOutsideStrings) {
  auto nested = [](int levels) {
    return std::string(levels, '[') + "1" + std::string(levels, ']');
  };
  std::string error;
  EXPECT_TRUE(ParseJsonBounded(nested(kMaxJsonDepth), &error).has_value());
  EXPECT_FALSE(ParseJsonBounded(nested(kMaxJsonDepth + 1), &error).has_value());
  EXPECT_NE(error.find("nested deeper than 64 levels"), std::string::npos);
  // Brackets in strings, after an escaped quote too, are text, not depth.
  std::string text = R"({"a":"\"[[[[{{{{", "b":")" + std::string(1000, '[') + R"("})";
  auto parsed = ParseJsonBounded(text, &error);
  ASSERT_TRUE(parsed.has_value()) << error;
  EXPECT_EQ((*parsed)["b"].get<std::string>().size(), 1000u);
  // Unbalanced closers are the parser's to refuse, not a negative depth's to allow.
  EXPECT_FALSE(ParseJsonBounded("]]]" + nested(kMaxJsonDepth + 3), &error).has_value());
  EXPECT_NE(error.find("not valid JSON"), std::string::npos);
}

TEST(TopLevelMembers, FindsOnlyTheObjectsOwnMembers) {
  // Decoys: "usage" inside a string (escaped quotes, a trailing escaped backslash) and
  // inside a nested object; the real one comes last, pretty-printed.
  std::string answer =
      R"({"id":"x","choices":[{"index":0,"usage":{"prompt_tokens":1},)"
      R"("message":{"content":"say \"usage\": {\"prompt_tokens\": 999}, \"} once C:\\"}}],)"
      "\n  \"created\" : 17,\n  \"usage\" :\t{ \"prompt_tokens\": 12,"
      " \"completion_tokens\": 8 }\n}";
  json top = TopLevelMembers(answer, {"usage", "created", "absent"});
  EXPECT_EQ(top,
            json::parse(R"({"usage":{"prompt_tokens":12,"completion_tokens":8},"created":17})"));
  EXPECT_EQ(top["usage"], json::parse(answer)["usage"]);  // what a whole parse finds
  // Cut anywhere, the answer gives the usage whole or not at all.
  for (size_t n = 0; n < answer.size(); ++n) {
    json cut = TopLevelMembers(std::string_view(answer).substr(0, n), {"usage"});
    if (cut.contains("usage")) {
      EXPECT_EQ(cut["usage"], top["usage"]) << n;
    }
  }

  // A long answer whose text is mostly escapes, quotes escaped and backslashes escaped
  // in turn, with brackets and a decoy between: the scan skips the text, not into it.
  std::string text;
  for (int i = 0; i < 5000; ++i) text += i % 2 ? R"(\"usage\":{[,]} \\)" : R"(\\\" \n)";
  std::string long_answer = R"({"choices":[{"message":{"content":")" + text +
                            R"("}}],"usage":{"prompt_tokens":7,"completion_tokens":5}})";
  std::string content = json::parse(long_answer)["choices"][0]["message"]["content"];
  ASSERT_NE(content.find(R"("usage":{[,]} \\" )"), std::string::npos);  // the decoys, decoded
  EXPECT_EQ(TopLevelMembers(long_answer, {"usage"})["usage"], json::parse(long_answer)["usage"]);

  std::string counts = R"({"prompt_eval_count":12,"eval_count":345})";
  for (size_t n = 0; n < counts.size(); ++n) {  // never a count cut to its first digits
    EXPECT_EQ(TopLevelMembers(counts.substr(0, n), {"eval_count"}), json::object()) << n;
  }
  // Scalars at the end of the object, strings, and values that are not there.
  EXPECT_EQ(TopLevelMembers(R"({"model":"m","prompt_eval_count":12,"eval_count":7})",
                            {"prompt_eval_count", "eval_count", "model"}),
            json::parse(R"({"model":"m","prompt_eval_count":12,"eval_count":7})"));
  for (const char* odd : {"", "[1,2]", "\"usage\"", "{", "{\"usage\"", "{\"usage\":", "{\"a\":[1,2",
                          "{\"usage\":{\"x\":1"}) {
    EXPECT_EQ(TopLevelMembers(odd, {"usage"}), json::object()) << odd;
  }
  // The bound holds for what is parsed; what is skipped may be as deep as it likes.
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(TopLevelMembers(R"({"usage":)" + deep + "}", {"usage"}), json::object());
  EXPECT_EQ(TopLevelMembers(R"({"skip":)" + deep + R"(,"usage":{"a":1}})", {"usage"})["usage"]["a"],
            1);
}

TEST(Providers, UsageOfAWholeAnswerMatchesAFullParse) {
  struct Case {
    const char* provider;
    const char* path;
    const char* answer;
  };
  for (
      const Case& c : std::initializer_list<Case>{
          {"mistral", "v1/chat/completions",
           R"({"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}})"},
          {"deepseek", "chat/completions",
           R"({"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_cache_hit_tokens":4,"prompt_cache_miss_tokens":6,"completion_tokens_details":{"reasoning_tokens":2}},"choices":[]})"},
          {"anthropic", "v1/messages",
           R"({"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":9,"output_tokens":3,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}})"},
          {"ollama", "api/chat",
           R"({"message":{"content":"hi"},"done":true,"prompt_eval_count":11,"eval_count":6})"}}) {
    const Provider* p = FindProvider(c.provider);
    Usage u = p->UsageFromAnswer(*p->Match("POST", c.path), c.answer);
    EXPECT_TRUE(u.reported) << c.provider;
    EXPECT_GT(u.input_tokens + u.cache_read_tokens, 0) << c.provider;
    EXPECT_GT(u.output_tokens, 0) << c.provider;
    // The same bytes with the members in another order and spaced out give the same usage.
    json whole = json::parse(c.answer);
    Usage again = p->UsageFromAnswer(*p->Match("POST", c.path), whole.dump(2));
    EXPECT_EQ(again.input_tokens, u.input_tokens) << c.provider;
    EXPECT_EQ(again.output_tokens, u.output_tokens) << c.provider;
    EXPECT_EQ(again.cache_read_tokens, u.cache_read_tokens) << c.provider;
    EXPECT_EQ(again.reasoning_tokens, u.reasoning_tokens) << c.provider;
  }
}

// Reading only the usage's own members gives what reading the whole parse gives.
TEST(OpenAIStyleUsage, FromTheAnswersBytesAsFromAFullParse) {
  for (const char* usage :
       {R"({"prompt_tokens":12,"completion_tokens":8,"total_tokens":20})",
        R"({"prompt_tokens":30,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":20},)"
        R"("completion_tokens_details":{"reasoning_tokens":4}})",
        R"({"prompt_tokens":10,"prompt_cache_hit_tokens":4,"completion_tokens":5})",
        R"({ "prompt_tokens" : -1 , "completion_tokens" : 0 })",
        R"({"prompt_tokens":012,"completion_tokens":5})",  // not JSON: nothing read
        R"({"prompt_tokens":1e3,"completion_tokens":12.0})",
        R"({"prompt_tokens":99999999999999999999,"completion_tokens":123456789012345678})",
        R"({"prompt_tokens":"12","completion_tokens":null})", "null", "[]", "7"}) {
    std::string answer = R"({"choices":[{"message":{"content":"hi"}}],"usage":)" +
                         std::string(usage) + R"(,"model":"m"})";
    Usage fast = openai_style::UsageFromAnswer(answer);
    // A usage that is not JSON is none at all, as when the parser reads it whole.
    Usage full = openai_style::ReadUsage(json::parse(usage, nullptr, false));
    EXPECT_EQ(fast.reported, full.reported) << usage;
    EXPECT_EQ(fast.input_tokens, full.input_tokens) << usage;
    EXPECT_EQ(fast.cache_read_tokens, full.cache_read_tokens) << usage;
    EXPECT_EQ(fast.output_tokens, full.output_tokens) << usage;
    EXPECT_EQ(fast.reasoning_tokens, full.reasoning_tokens) << usage;
  }
  // Negative counts (a broken upstream) count as none: a usage never pays back.
  Usage negative = openai_style::UsageFromAnswer(
      R"({"usage":{"prompt_tokens":-5,"prompt_cache_hit_tokens":-2,"completion_tokens":-7}})");
  EXPECT_EQ(negative.input_tokens + negative.cache_read_tokens + negative.output_tokens, 0);
  // Repeated, the last usage counts, as in a full parse.
  Usage last = openai_style::UsageFromAnswer(
      R"({"usage":{"prompt_tokens":1,"completion_tokens":1},"usage":{"prompt_tokens":7,"completion_tokens":3}})");
  EXPECT_EQ(last.input_tokens, 7);
  EXPECT_EQ(last.output_tokens, 3);
}

TEST(JsonBounded, NoMemberDroppedFindsRepeatedKeys) {
  auto same = [](const std::string& text) {
    std::string error;
    auto parsed = ParseJsonBounded(text, &error);
    EXPECT_TRUE(parsed.has_value()) << error;
    return parsed && NoMemberDropped(text, *parsed);
  };
  EXPECT_TRUE(same(R"({"model":"a","messages":[{"role":"user","content":"x: y"}]})"));
  EXPECT_TRUE(same(R"({"a":"\":","b":[1,{"c":{}}],"d":"::"})"));
  EXPECT_TRUE(same(R"([1,"a:b",[]])"));
  EXPECT_FALSE(same(R"({"model":"cheap","messages":[],"model":"dear"})"));
  EXPECT_FALSE(same(R"({"a":[{"x":1,"x":2}]})"));
}

// What ReadRequestBytes gives for `body` must be what a full parse and ReadRequest give,
// with nothing Rewrite would change unless clamped; or nothing. Whether it read.
bool ReadsAsTheParserDoes(const Provider& p, const Route& route, const std::string& body) {
  auto fast = p.ReadRequestBytes(route, body);
  if (!fast) return false;
  std::string error;
  auto parsed = ParseJsonBounded(body, &error);
  EXPECT_TRUE(parsed.has_value()) << body << ": " << error;
  if (!parsed) return true;
  EXPECT_TRUE(NoMemberDropped(body, *parsed)) << body;
  auto members = ScanObject(body);  // each member's prompt text, byte for byte
  EXPECT_TRUE(members.has_value()) << body;
  for (const ScannedMember& member : members.value_or(std::vector<ScannedMember>{})) {
    const json& v = (*parsed)[std::string(member.key)];
    EXPECT_EQ(member.text_bytes, PromptTextBytes(v)) << member.key << " in " << body;
    EXPECT_EQ(member.elements, v.is_array() ? static_cast<int64_t>(v.size()) : 0) << body;
  }
  auto full = p.ReadRequest(route, *parsed);
  EXPECT_TRUE(full.ok()) << body;
  if (!full.ok()) return true;
  EXPECT_EQ(fast->model, full->model) << body;
  EXPECT_EQ(fast->stream, full->stream) << body;
  EXPECT_EQ(fast->max_output_tokens, full->max_output_tokens) << body;
  EXPECT_EQ(fast->input_tokens_estimate, full->input_tokens_estimate) << body;
  EXPECT_EQ(fast->end_user, full->end_user) << body;
  EXPECT_EQ(fast->client_asked_usage, full->client_asked_usage) << body;
  json before = *parsed;
  EXPECT_FALSE(p.Rewrite(route, *full, std::nullopt, &*parsed).changed) << body;
  EXPECT_EQ(*parsed, before) << body;
  return true;
}

TEST(RequestBytes, ReadsTheCommonChatAsTheParserDoes) {
  const Provider& m = *FindProvider("mistral");
  const Route chat = *m.Match("POST", "v1/chat/completions");
  // Read from the bytes: what most chat requests look like.
  for (
      const char* body : {
          R"({"model":"mistral-small-latest","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16})",
          R"( { "model" : "m" , "messages" : [ ] , "stream" : false , "max_tokens" : null } )",
          R"({"model":"m","max_tokens":5,"max_completion_tokens":7,"user":"u-9","temperature":0.7,"top_p":1,
               "messages":[{"role":"system","content":"Line one\nline \"two\" \\ \/ \u00e9\u4e2d\ud83d\ude00"},
                           {"role":"user","content":[{"type":"text","text":"caf\u00e9 ☕ 中文 😀"},
                                                     {"type":"image_url","image_url":{"url":"data:x"}}]},
                           {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                             "function":{"name":"f","arguments":"{\"a\":1}"}}]},
                           {"role":"tool","tool_call_id":"c1","content":"42"}],
               "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","x":[true,-0.5,0]}}}]})",
          "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\\t\"}],"
          "\"stream\":null}",
      }) {
    EXPECT_TRUE(ReadsAsTheParserDoes(m, chat, body)) << body;
  }
  // Left to the parser: not JSON, not what ReadRequest takes, or what Rewrite changes.
  std::string deep =
      R"({"model":"m","messages":[)" + std::string(62, '[') + std::string(62, ']') + "]}";
  EXPECT_TRUE(ReadsAsTheParserDoes(m, chat, deep)) << "64 levels are within the bound";
  std::string deeper =
      R"({"model":"m","messages":[)" + std::string(63, '[') + std::string(63, ']') + "]}";
  std::string objects;  // 64 levels of objects, the outer one counted
  for (int i = 0; i < 63; ++i) objects += R"({"x":)";
  objects += "1" + std::string(63, '}');
  EXPECT_FALSE(m.ReadRequestBytes(chat, R"({"model":"m","messages":[)" + objects + "]}"));
  EXPECT_TRUE(ReadsAsTheParserDoes(
      m, chat, R"({"model":"m","messages":[)" + objects.substr(5, objects.size() - 6) + "]}"));
  for (const std::string& body : std::initializer_list<std::string>{
           deeper,
           R"({"model":"m","messages":[],"stream":true})",
           R"({"model":"m","messages":[],"stream_options":{"include_usage":false}})",
           R"({"model":"m","messages":[],"model":"n"})",
           R"({"model":"m","messages":[{"role":"user","role":"x"}]})",
           R"({"model":"","messages":[]})",
           R"({"model":"m\u0041","messages":[]})",
           R"({"model":"m","user":"\u0041","messages":[]})",
           R"({"mo\u0064el":"m","messages":[]})",
           R"({"model":"m","prompt":"fim"})",
           R"({"model":"m","messages":{}})",
           R"({"model":7,"messages":[]})",
           R"({"model":"m","messages":[],"max_tokens":-1})",
           R"({"model":"m","messages":[],"max_tokens":1.0})",
           R"({"model":"m","messages":[],"max_tokens":"5"})",
           R"({"model":"m","messages":[],"max_tokens":1234567890123456789})",
           R"({"model":"m","messages":[],"temperature":1e400})",
           R"({"model":"m","messages":[],"temperature":1E2})",
           R"({"model":"m","messages":[],"n":01})",
           R"({"model":"m","messages":[],"n":1.})",
           R"({"model":"m","messages":[],"n":-})",
           R"({"model":"m","messages":[],"n":.5})",
           R"({"model":"m","messages":[],"n":tru})",
           R"({"model":"m","messages":["\ud800"]})",
           R"({"model":"m","messages":["\udc00\ud800"]})",
           R"({"model":"m","messages":["\ud800\u0041"]})",
           R"({"model":"m","messages":["\x"]})",
           R"({"model":"m","messages":["\u12G4"]})",
           std::string("{\"model\":\"m\",\"messages\":[\"\x01\"]}"),
           std::string("{\"model\":\"m\",\"messages\":[\"\xC0\xAF\"]}"),          // overlong
           std::string("{\"model\":\"m\",\"messages\":[\"\xED\xA0\x80\"]}"),      // a surrogate
           std::string("{\"model\":\"m\",\"messages\":[\"\xF4\x90\x80\x80\"]}"),  // past U+10FFFF
           std::string("{\"model\":\"m\",\"messages\":[\"\xE2\x82\"]}"),          // cut short
           std::string("\xEF\xBB\xBF{\"model\":\"m\",\"messages\":[]}"),          // a BOM
           R"({"model":"m","messages":[]} x)",
           R"({"model":"m","messages":[],})",
           R"({"model":"m","messages":[1,]})",
           R"({"model":"m","messages":[])",
           R"([{"model":"m","messages":[]}])",
           "",
       }) {
    EXPECT_FALSE(m.ReadRequestBytes(chat, body).has_value()) << body;
  }
  EXPECT_FALSE(
      m.ReadRequestBytes(*m.Match("POST", "v1/embeddings"), R"({"model":"m","input":"x"})"));
  const Provider& o = *FindProvider("ollama");
  EXPECT_FALSE(o.ReadRequestBytes(*o.Match("POST", "api/chat"), R"({"model":"m","messages":[]})"))
      << "Ollama's native chat streams by default: its own reader";
  const Provider& a = *FindProvider("anthropic");
  EXPECT_FALSE(a.ReadRequestBytes(*a.Match("POST", "v1/messages"),
                                  R"({"model":"m","max_tokens":5,"messages":[]})"));
}

// Bodies put together at random from pieces that are valid, odd or broken: whatever
// ReadRequestBytes reads, it reads as the parser does, for each OpenAI-shaped chat.
TEST(RequestBytes, AgreesWithTheParserOnRandomBodies) {
  std::mt19937 rng(20261129);
  auto pick = [&](std::initializer_list<const char*> options) {
    return std::string(options.begin()[rng() % options.size()]);
  };
  std::function<std::string(int)> value = [&](int depth) -> std::string {
    switch (rng() % (depth > 3 ? 4 : 7)) {
      case 0:
        return "\"" +
               pick({"hi", "a\\nb", "\\u00e9\\ud83d\\ude00", "caf\xC3\xA9", "\\\"", "\\ud800",
                     "\xFF", "\\q", "", "tab\\t", "\x7F"}) +
               "\"";
      case 1:
        return pick({"0", "-1", "16", "2.5", "1e3", "012", "99999999999999999999", "-0", "1."});
      case 2:
        return pick({"true", "false", "null", "nul"});
      case 3:
        return pick({"[]", "{}", "\"x\""});
      case 4: {
        std::string a = "[";
        for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i)
          a += (i ? "," : "") + value(depth + 1);
        return a + "]";
      }
      default: {
        std::string o = "{";
        for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i) {
          o += (i ? "," : "") +
               ("\"" +
                pick({"role", "content", "type", "image_url", "id", "text", "name", "source",
                      "tool_call_id", "x"}) +
                "\":") +
               value(depth + 1);
        }
        return o + "}";
      }
    }
  };
  std::vector<std::pair<const Provider*, Route>> chats;
  for (auto [name, path] :
       {std::pair{"mistral", "v1/chat/completions"}, std::pair{"deepseek", "chat/completions"},
        std::pair{"ollama", "v1/chat/completions"}}) {
    chats.emplace_back(FindProvider(name), *FindProvider(name)->Match("POST", path));
  }
  int read = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string body = "{\"model\":\"" + pick({"m", "deepseek-chat", "", "m\\u0041"}) + "\"";
    body += ",\"messages\":[" + value(1);
    for (int n = static_cast<int>(rng() % 3); n > 0; --n) body += "," + value(1);
    body += "]";
    for (int n = static_cast<int>(rng() % 4); n > 0; --n) {
      body += ",\"" +
              pick({"max_tokens", "max_completion_tokens", "user", "stream", "tools", "temperature",
                    "model", "stream_options"}) +
              "\":" + value(2);
    }
    body += "}";
    if (rng() % 8 == 0) body.resize(rng() % body.size());  // cut short
    const auto& [provider, route] = chats[static_cast<size_t>(i) % chats.size()];
    read += ReadsAsTheParserDoes(*provider, route, body);
  }
  EXPECT_GT(read, 200) << "plain bodies are read from their bytes";
}

}  // namespace
}  // namespace tollgate
