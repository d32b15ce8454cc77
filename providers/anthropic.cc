#include "providers/anthropic.h"

#include <algorithm>

#include "config/text.h"
#include "providers/framing.h"
#include "providers/json_bounded.h"

namespace tollgate::anthropic {
namespace {

using nlohmann::json;

class Observer final : public StreamObserver {
 public:
  std::string Feed(std::string_view bytes) override {
    std::string out;
    for (SseEvent& e : splitter_.Feed(bytes)) {
      Observe(e);
      out += e.raw;
    }
    return out;
  }
  std::string Flush() override { return splitter_.TakeRest(); }

 private:
  void Observe(const SseEvent& e) {
    if (!e.has_data) return;
    std::string error;
    auto j = ParseJsonBounded(e.data, &error);
    if (!j || !j->is_object()) return;
    auto named = j->find("type");
    const std::string& type =
        named != j->end() && named->is_string() ? named->get_ref<const std::string&>() : e.event;
    if (type == "message_start" && j->contains("message") && (*j)["message"].is_object() &&
        (*j)["message"].contains("usage")) {
      MergeUsage((*j)["message"]["usage"], &usage_);
    } else if (type == "message_delta" && j->contains("usage")) {
      MergeUsage((*j)["usage"], &usage_);  // cumulative: overwrite
    } else if (type == "content_block_delta" && j->contains("delta") && (*j)["delta"].is_object()) {
      for (const char* key : {"text", "thinking", "partial_json"}) {
        if ((*j)["delta"].contains(key) && (*j)["delta"][key].is_string())
          relayed_text_bytes_ +=
              static_cast<int64_t>((*j)["delta"][key].get_ref<const std::string&>().size());
      }
    } else if (type == "message_stop") {
      finished_ = true;
    } else if (type == "error") {
      upstream_error_ = true;
      finished_ = true;
    }
  }
  SseSplitter splitter_;
};

}  // namespace

void MergeUsage(const json& u, Usage* usage) {
  if (!u.is_object()) return;
  usage->reported = true;
  // A negative count (a broken upstream) counts as none: usage never pays back.
  auto count = [](const json& j, std::string_view key, int64_t fallback) {
    return std::max<int64_t>(IntegerMember(j, key, fallback), 0);
  };
  usage->input_tokens = count(u, "input_tokens", usage->input_tokens);
  usage->output_tokens = count(u, "output_tokens", usage->output_tokens);
  usage->cache_read_tokens = count(u, "cache_read_input_tokens", usage->cache_read_tokens);
  if (u.contains("cache_creation") && u["cache_creation"].is_object()) {
    usage->cache_write_5m_tokens = count(u["cache_creation"], "ephemeral_5m_input_tokens", 0);
    usage->cache_write_1h_tokens = count(u["cache_creation"], "ephemeral_1h_input_tokens", 0);
  } else if (u.contains("cache_creation_input_tokens")) {
    // Without the split, the total is billed at the 5-minute rate (PROVIDERS.md 3.5),
    // unless an earlier event already split this same total (compared without a sum
    // that could overflow).
    int64_t total = count(u, "cache_creation_input_tokens", 0);
    if (usage->cache_write_5m_tokens != total - usage->cache_write_1h_tokens) {
      usage->cache_write_5m_tokens = total;
      usage->cache_write_1h_tokens = 0;
    }
  }
}

std::optional<Route> Anthropic::Match(std::string_view method, std::string_view path) const {
  if (method == "POST" && path == "v1/messages") return Route{Endpoint::kChat};
  if (method == "POST" && path == "v1/messages/count_tokens") return Route{Endpoint::kCountTokens};
  if (method == "GET" && (path == "v1/models" || path.substr(0, 10) == "v1/models/"))
    return Route{Endpoint::kListing};
  return std::nullopt;
}

Result<RequestFacts> Anthropic::ReadRequest(const Route& route, const json& body) const {
  RequestFacts f;
  if (!body.is_object()) return Status::Invalid("body: must be a JSON object");
  if (!body.contains("model") || !body["model"].is_string() ||
      body["model"].get_ref<const std::string&>().empty())
    return Status::Invalid("model: Field required (a non-empty string)");
  f.model = body["model"].get<std::string>();
  if (!body.contains("messages") || !body["messages"].is_array())
    return Status::Invalid("messages: Field required (a list)");
  if (route.endpoint == Endpoint::kChat) {
    if (!body.contains("max_tokens")) return Status::Invalid("max_tokens: Field required");
    if (!body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1)
      return Status::Invalid("max_tokens: must be a positive integer");
    f.max_output_tokens = body["max_tokens"].get<int64_t>();
    if (body.contains("stream") && !body["stream"].is_null()) {
      if (!body["stream"].is_boolean()) return Status::Invalid("stream: must be true or false");
      f.stream = body["stream"].get<bool>();
    }
  } else {
    f.max_output_tokens = 0;
  }
  if (body.contains("metadata") && body["metadata"].is_object() &&
      body["metadata"].contains("user_id") && body["metadata"]["user_id"].is_string())
    f.end_user = body["metadata"]["user_id"].get<std::string>();
  int64_t bytes = PromptTextBytes(body["messages"]);
  for (const char* key : {"system", "tools"}) {
    if (body.contains(key)) bytes += PromptTextBytes(body[key]);
  }
  f.input_tokens_estimate =
      EstimateInputTokens(bytes, static_cast<int64_t>(body["messages"].size()));
  return f;
}

Rewritten Anthropic::Rewrite(const Route&, const RequestFacts&, std::optional<int64_t> max_output,
                             json* body) const {
  if (max_output) (*body)["max_tokens"] = *max_output;
  return {.changed = max_output.has_value()};
}

Usage Anthropic::UsageFromAnswer(const Route&, std::string_view answer) const {
  Usage u;
  json top = TopLevelMembers(answer, {"usage"});
  if (top.contains("usage")) MergeUsage(top["usage"], &u);
  return u;
}

std::unique_ptr<StreamObserver> Anthropic::ObserveStream(const Route&, bool) const {
  return std::make_unique<Observer>();
}

std::string Anthropic::ErrorBody(const Route*, ErrorKind kind, const std::string& message) const {
  const char* type = "invalid_request_error";
  switch (kind) {
    case ErrorKind::kInvalidRequest:
      type = "invalid_request_error";
      break;
    case ErrorKind::kAuthentication:
      type = "authentication_error";
      break;
    case ErrorKind::kBudget:
      type = "billing_error";
      break;
    case ErrorKind::kPermission:
      type = "permission_error";
      break;
    case ErrorKind::kNotFound:
      type = "not_found_error";
      break;
    case ErrorKind::kTooLarge:
      type = "request_too_large";
      break;
    case ErrorKind::kUpstream:
    case ErrorKind::kInternal:
      type = "api_error";
      break;
    case ErrorKind::kUnavailable:
      type = "overloaded_error";
      break;
    case ErrorKind::kTimeout:
      type = "timeout_error";
      break;
  }
  return DumpJson(json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}});
}

std::string Anthropic::StreamErrorFrame(const Route&, const std::string& message) const {
  return "event: error\ndata: " +
         DumpJson(
             json{{"type", "error"}, {"error", {{"type", "api_error"}, {"message", message}}}}) +
         "\n\n";
}

std::vector<std::pair<std::string, std::string>> Anthropic::Credentials(
    const std::string& api_key) const {
  std::vector<std::pair<std::string, std::string>> h;
  if (!api_key.empty()) h.emplace_back("x-api-key", api_key);
  h.emplace_back("anthropic-version", "2023-06-01");  // kept from the client when it sent one
  return h;
}

}  // namespace tollgate::anthropic
