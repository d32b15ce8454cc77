#include "providers/openai_style.h"

#include "config/text.h"
#include "providers/framing.h"
#include "providers/json_bounded.h"

namespace tollgate::openai_style {
namespace {

using nlohmann::json;

Status Field(const std::string& field, const std::string& rule) {
  return Status::Invalid(field + ": " + rule);
}

class Observer final : public StreamObserver {
 public:
  explicit Observer(bool hide_usage_chunk) : hide_usage_chunk_(hide_usage_chunk) {}

  std::string Feed(std::string_view bytes) override {
    std::string out;
    for (SseEvent& e : splitter_.Feed(bytes)) {
      if (Observe(e)) out += e.raw;
    }
    return out;
  }
  std::string Flush() override { return splitter_.TakeRest(); }

 private:
  // Returns whether the frame goes to the client.
  bool Observe(const SseEvent& e) {
    if (!e.has_data) return true;  // comments and keep-alives pass through untouched
    if (e.data == "[DONE]") {
      finished_ = true;
      return true;
    }
    std::string error;
    auto chunk = ParseJsonBounded(e.data, &error);
    if (!chunk || !chunk->is_object()) return true;
    if (chunk->contains("error")) {
      upstream_error_ = true;
      finished_ = true;
      return true;
    }
    bool usage_only = false;
    if (chunk->contains("usage") && (*chunk)["usage"].is_object()) {
      usage_ = ReadUsage((*chunk)["usage"]);
      usage_only = chunk->contains("choices") && (*chunk)["choices"].is_array() &&
                   (*chunk)["choices"].empty();
    }
    if (chunk->contains("choices") && (*chunk)["choices"].is_array()) {
      for (const json& choice : (*chunk)["choices"]) {
        if (!choice.is_object() || !choice.contains("delta") || !choice["delta"].is_object())
          continue;
        for (const char* key : {"content", "reasoning_content"}) {
          const json& delta = choice["delta"];
          if (delta.contains(key) && delta[key].is_string()) {
            relayed_text_bytes_ +=
                static_cast<int64_t>(delta[key].get_ref<const std::string&>().size());
          }
        }
      }
    }
    return !(usage_only && hide_usage_chunk_);
  }

  const bool hide_usage_chunk_;
  SseSplitter splitter_;
};

}  // namespace

Result<RequestFacts> ReadRequest(const Route& route, const json& body) {
  RequestFacts f;
  if (!body.is_object()) return Status::Invalid("body: must be a JSON object");
  if (!body.contains("model")) return Field("model", "is required");
  if (!body["model"].is_string() || body["model"].get_ref<const std::string&>().empty())
    return Field("model", "must be a non-empty string");
  f.model = body["model"].get<std::string>();
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return Field("stream", "must be true or false");
    f.stream = body["stream"].get<bool>();
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    if (!body[key].is_number_integer() || body[key].get<int64_t>() < 0)
      return Field(key, "must be a non-negative integer");
    f.max_output_tokens = body[key].get<int64_t>();
    f.max_output_field = key;
  }
  if (body.contains("user") && body["user"].is_string())
    f.end_user = body["user"].get<std::string>();
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    const json& o = body["stream_options"];
    f.client_asked_usage = o.contains("include_usage") && o["include_usage"].is_boolean() &&
                           o["include_usage"].get<bool>();
  }
  int64_t messages = 0, bytes = 0;
  if (route.endpoint == Endpoint::kEmbeddings) {
    if (!body.contains("input")) return Field("input", "is required");
    if (!body["input"].is_string() && !body["input"].is_array())
      return Field("input", "must be a string or a list");
    bytes = PromptTextBytes(body["input"]);
    f.max_output_tokens = 0;
  } else if (body.contains("messages")) {
    if (!body["messages"].is_array()) return Field("messages", "must be a list");
    messages = static_cast<int64_t>(body["messages"].size());
    bytes = PromptTextBytes(body["messages"]);
  } else if (body.contains("prompt")) {  // FIM
    bytes = PromptTextBytes(body["prompt"]) +
            (body.contains("suffix") ? PromptTextBytes(body["suffix"]) : 0);
  } else {
    return Field("messages", "is required");
  }
  if (body.contains("tools")) bytes += PromptTextBytes(body["tools"]);
  f.input_tokens_estimate = EstimateInputTokens(bytes, messages);
  return f;
}

std::optional<RequestFacts> ReadRequestBytes(const Route& route, std::string_view body) {
  if (route.endpoint != Endpoint::kChat || !route.openai_style) return std::nullopt;
  auto members = ScanObject(body);
  if (!members) return std::nullopt;
  // A string's text when it holds no escape (the scan checked the rest).
  auto plain_text = [](const ScannedMember& m) -> std::optional<std::string> {
    if (m.kind != '"' || m.value.find('\\') != std::string_view::npos) return std::nullopt;
    return std::string(m.value.substr(1, m.value.size() - 2));
  };
  RequestFacts f;
  std::optional<int64_t> max_tokens, max_completion_tokens;
  const ScannedMember* messages = nullptr;
  int64_t tools = 0;
  for (const ScannedMember& m : *members) {
    if (m.key == "model") {
      auto model = plain_text(m);
      if (!model || model->empty()) return std::nullopt;
      f.model = std::move(*model);
    } else if (m.key == "stream") {
      if (m.kind != 'f' && m.kind != 'n') return std::nullopt;  // a stream is the relay's
    } else if (m.key == "max_tokens" || m.key == "max_completion_tokens") {
      if (m.kind == 'n') continue;
      auto count = PlainInteger(m.value);
      if (!count || *count < 0) return std::nullopt;
      (m.key == "max_tokens" ? max_tokens : max_completion_tokens) = count;
    } else if (m.key == "user") {
      if (m.kind != '"') continue;
      auto user = plain_text(m);
      if (!user) return std::nullopt;
      f.end_user = std::move(*user);
    } else if (m.key == "stream_options") {
      return std::nullopt;
    } else if (m.key == "messages") {
      if (m.kind != '[') return std::nullopt;
      messages = &m;
    } else if (m.key == "tools") {
      tools = m.text_bytes;
    }
  }
  if (f.model.empty() || messages == nullptr) return std::nullopt;
  f.max_output_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  if (max_completion_tokens) f.max_output_field = "max_completion_tokens";
  f.input_tokens_estimate = EstimateInputTokens(messages->text_bytes + tools, messages->elements);
  return f;
}

namespace {

// The counts an OpenAI-shaped usage reports; cached -1 when it names none.
struct UsageCounts {
  int64_t prompt = 0, cached = -1, completion = 0, reasoning = 0;
};

// A negative count (a broken upstream) counts as none: usage never pays back.
Usage FromCounts(UsageCounts c) {
  Usage usage;
  usage.reported = true;
  int64_t prompt = std::max<int64_t>(c.prompt, 0);
  int64_t cached = std::clamp<int64_t>(c.cached, 0, prompt);
  usage.cache_read_tokens = cached;
  usage.input_tokens = prompt - cached;
  usage.output_tokens = std::max<int64_t>(c.completion, 0);
  usage.reasoning_tokens = std::max<int64_t>(c.reasoning, 0);
  return usage;
}

// A usage of flat counts (Mistral's, DeepSeek's) from its scanned bytes; nullopt when
// it holds a details object, a count that is not a plain integer, or is not JSON.
std::optional<Usage> FlatUsage(std::string_view usage) {
  auto members = ScanObject(usage);
  if (!members) return std::nullopt;
  UsageCounts c;
  for (const ScannedMember& m : *members) {
    int64_t* count = m.key == "prompt_tokens"             ? &c.prompt
                     : m.key == "prompt_cache_hit_tokens" ? &c.cached
                     : m.key == "completion_tokens"       ? &c.completion
                                                          : nullptr;
    if (m.key == "prompt_tokens_details" || m.key == "completion_tokens_details")
      return std::nullopt;
    if (count == nullptr || m.kind != '0') continue;  // not an integer: as if not there
    auto n = PlainInteger(m.value);
    if (!n) return std::nullopt;
    *count = *n;
  }
  return FromCounts(c);
}

}  // namespace

Usage ReadUsage(const json& u) {
  if (!u.is_object()) return Usage{};
  UsageCounts c;
  c.prompt = IntegerMember(u, "prompt_tokens", 0);
  c.cached = IntegerMember(u, "prompt_cache_hit_tokens", -1);
  if (c.cached < 0 && u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
    c.cached = IntegerMember(u["prompt_tokens_details"], "cached_tokens", 0);
  c.completion = IntegerMember(u, "completion_tokens", 0);
  if (u.contains("completion_tokens_details") && u["completion_tokens_details"].is_object())
    c.reasoning = IntegerMember(u["completion_tokens_details"], "reasoning_tokens", 0);
  return FromCounts(c);
}

Usage UsageFromAnswer(std::string_view answer) {
  auto usage = TopLevelObject(answer, "usage");
  if (!usage) return Usage{};
  if (auto flat = FlatUsage(*usage)) return *flat;
  bool whole = true;
  json members =
      TopLevelMembers(*usage,
                      {"prompt_tokens", "prompt_cache_hit_tokens", "prompt_tokens_details",
                       "completion_tokens", "completion_tokens_details"},
                      &whole);
  return whole ? ReadUsage(members) : Usage{};  // not JSON: none, as a whole parse finds
}

std::unique_ptr<StreamObserver> NewObserver(bool hide_usage_chunk) {
  return std::make_unique<Observer>(hide_usage_chunk);
}

std::string ErrorBody(ErrorKind kind, const std::string& message) {
  const char* type = "invalid_request_error";
  const char* code = nullptr;
  switch (kind) {
    case ErrorKind::kInvalidRequest:
      type = "invalid_request_error";
      break;
    case ErrorKind::kAuthentication:
      type = "authentication_error";
      code = "invalid_api_key";
      break;
    case ErrorKind::kBudget:
      type = "insufficient_quota";
      code = "budget_exceeded";
      break;
    case ErrorKind::kPermission:
      type = "permission_error";
      break;
    case ErrorKind::kNotFound:
      type = "not_found_error";
      break;
    case ErrorKind::kTooLarge:
      type = "invalid_request_error";
      code = "request_too_large";
      break;
    case ErrorKind::kUpstream:
      type = "api_error";
      code = "upstream_unreachable";
      break;
    case ErrorKind::kInternal:
      type = "api_error";
      code = "internal_error";
      break;
    case ErrorKind::kUnavailable:
      type = "api_error";
      code = "service_unavailable";
      break;
    case ErrorKind::kTimeout:
      type = "timeout_error";
      code = "upstream_timeout";
      break;
  }
  return DumpJson(json{{"error",
                        {{"message", message},
                         {"type", type},
                         {"param", nullptr},
                         {"code", code ? json(code) : json(nullptr)}}}});
}

std::string StreamErrorFrame(const std::string& message) {
  return "data: " + ErrorBody(ErrorKind::kUpstream, message) + "\n\n";
}

void SetMaxTokens(json* body, int64_t max_output) {
  body->erase("max_completion_tokens");
  (*body)["max_tokens"] = max_output;
}

}  // namespace tollgate::openai_style
