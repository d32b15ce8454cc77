#include "providers/ollama_native.h"

#include <algorithm>

#include "providers/framing.h"
#include "providers/json_bounded.h"

namespace tollgate::ollama_native {
namespace {

using nlohmann::json;

class Observer final : public StreamObserver {
 public:
  std::string Feed(std::string_view bytes) override {
    std::string out;
    for (std::string& line : splitter_.Feed(bytes)) {
      Observe(line);
      out += line;
    }
    return out;
  }
  std::string Flush() override {
    std::string rest = splitter_.TakeRest();
    Observe(rest);
    return rest;
  }

 private:
  void Observe(const std::string& line) {
    std::string error;
    auto j = ParseJsonBounded(line, &error);
    if (!j || !j->is_object()) return;
    if (j->contains("error")) {
      upstream_error_ = true;
      finished_ = true;
      return;
    }
    for (const char* key : {"response", "thinking"}) {
      if (j->contains(key) && (*j)[key].is_string())
        relayed_text_bytes_ += static_cast<int64_t>((*j)[key].get_ref<const std::string&>().size());
    }
    if (j->contains("message") && (*j)["message"].is_object() &&
        (*j)["message"].contains("content") && (*j)["message"]["content"].is_string())
      relayed_text_bytes_ +=
          static_cast<int64_t>((*j)["message"]["content"].get_ref<const std::string&>().size());
    if (auto done = j->find("done"); done != j->end() && done->is_boolean() && done->get<bool>()) {
      usage_ = ReadUsage(*j);
      finished_ = true;
    }
  }
  LineSplitter splitter_;
};

}  // namespace

Result<RequestFacts> ReadRequest(const Route& route, const json& body) {
  RequestFacts f;
  if (!body.is_object()) return Status::Invalid("body: must be a JSON object");
  if (!body.contains("model") || !body["model"].is_string() ||
      body["model"].get_ref<const std::string&>().empty())
    return Status::Invalid("model: is required (a non-empty string)");
  f.model = body["model"].get<std::string>();
  f.stream = route.endpoint == Endpoint::kChat;  // native chat/generate stream unless told not to
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return Status::Invalid("stream: must be true or false");
    f.stream = body["stream"].get<bool>() && route.endpoint == Endpoint::kChat;
  }
  if (body.contains("options")) {
    if (!body["options"].is_object()) return Status::Invalid("options: must be an object");
    const json& o = body["options"];
    if (o.contains("num_predict")) {
      if (!o["num_predict"].is_number_integer() ||
          (o["num_predict"].is_number_unsigned() &&
           o["num_predict"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
        return Status::Invalid("options.num_predict: must be an integer");
      // Negative (-1: without end, -2: to the context's end) is no cap of the caller's:
      // the proxy sends the one it reserves for.
      if (o["num_predict"].get<int64_t>() >= 0)
        f.max_output_tokens = o["num_predict"].get<int64_t>();
      f.max_output_field = "options.num_predict";
    }
  }
  int64_t messages = 0, bytes = 0;
  if (route.endpoint == Endpoint::kEmbeddings) {
    if (!body.contains("input")) return Status::Invalid("input: is required");
    bytes = PromptTextBytes(body["input"]);
    f.max_output_tokens = 0;
  } else if (body.contains("messages")) {
    if (!body["messages"].is_array()) return Status::Invalid("messages: must be a list");
    messages = static_cast<int64_t>(body["messages"].size());
    bytes = PromptTextBytes(body["messages"]);
  } else {
    for (const char* key : {"prompt", "system", "suffix"}) {
      if (body.contains(key)) bytes += PromptTextBytes(body[key]);
    }
  }
  if (body.contains("tools")) bytes += PromptTextBytes(body["tools"]);
  f.input_tokens_estimate = EstimateInputTokens(bytes, messages);
  return f;
}

Usage ReadUsage(const json& answer) {
  Usage u;
  if (!answer.is_object() || !answer.contains("prompt_eval_count")) return u;
  u.reported = true;
  // A negative count (a broken upstream) counts as none: usage never pays back.
  u.input_tokens = std::max<int64_t>(IntegerMember(answer, "prompt_eval_count", 0), 0);
  u.output_tokens = std::max<int64_t>(IntegerMember(answer, "eval_count", 0), 0);
  return u;
}

std::unique_ptr<StreamObserver> NewObserver() { return std::make_unique<Observer>(); }

void SetMaxTokens(json* body, int64_t max_output) {
  if (!body->contains("options") || !(*body)["options"].is_object())
    (*body)["options"] = json::object();
  (*body)["options"]["num_predict"] = max_output;
}

}  // namespace tollgate::ollama_native
