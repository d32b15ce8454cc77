// The four adapters. Each says which native paths it serves and where its format
// departs from the OpenAI shape (openai_style.h); Anthropic and Ollama's native API
// have their own formats in anthropic.cc and ollama_native.cc.
#include "config/text.h"
#include "providers/anthropic.h"
#include "providers/json_bounded.h"
#include "providers/ollama_native.h"
#include "providers/openai_style.h"

namespace tollgate {
namespace {

using nlohmann::json;

bool Is(std::string_view method, std::string_view path, const char* m, const char* p) {
  return method == m && path == p;
}
bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Shared by the three OpenAI-shaped surfaces.
class OpenAIShaped : public Provider {
 public:
  Result<RequestFacts> ReadRequest(const Route& route, const json& body) const override {
    return openai_style::ReadRequest(route, body);
  }
  std::optional<RequestFacts> ReadRequestBytes(const Route& route,
                                               std::string_view body) const override {
    return openai_style::ReadRequestBytes(route, body);
  }
  Usage UsageFromAnswer(const Route&, std::string_view answer) const override {
    return openai_style::UsageFromAnswer(answer);
  }
  std::unique_ptr<StreamObserver> ObserveStream(const Route&,
                                                bool hide_usage_chunk) const override {
    return openai_style::NewObserver(hide_usage_chunk);
  }
  std::string ErrorBody(const Route*, ErrorKind kind, const std::string& message) const override {
    return openai_style::ErrorBody(kind, message);
  }
  std::string StreamErrorFrame(const Route&, const std::string& message) const override {
    return openai_style::StreamErrorFrame(message);
  }
  std::vector<std::pair<std::string, std::string>> Credentials(
      const std::string& key) const override {
    if (key.empty()) return {};
    return {{"Authorization", "Bearer " + key}};
  }

 protected:
  // Asks for usage on a stream when the client did not (PROVIDERS.md 4.3, 5.3).
  // A stream's usage comes only when asked for: asked on the caller's behalf, the
  // usage chunk is then kept from the caller, who did not ask for it.
  static Rewritten CapAndRequestUsage(const RequestFacts& f, std::optional<int64_t> max_output,
                                      json* body) {
    if (max_output) openai_style::SetMaxTokens(body, *max_output);
    bool ask = f.stream && !f.client_asked_usage;
    if (ask) (*body)["stream_options"] = {{"include_usage", true}};
    return {.changed = ask || max_output.has_value(), .hide_usage_chunk = ask};
  }
};

class Mistral final : public OpenAIShaped {
 public:
  std::string_view name() const override { return "mistral"; }
  std::optional<Route> Match(std::string_view method, std::string_view path) const override {
    if (Is(method, path, "POST", "v1/chat/completions") ||
        Is(method, path, "POST", "v1/fim/completions"))
      return Route{Endpoint::kChat, true};
    if (Is(method, path, "POST", "v1/embeddings")) return Route{Endpoint::kEmbeddings, true};
    if (method == "GET" && (path == "v1/models" || StartsWith(path, "v1/models/")))
      return Route{Endpoint::kListing, true};
    return std::nullopt;
  }
  Rewritten Rewrite(const Route&, const RequestFacts&, std::optional<int64_t> max_output,
                    json* body) const override {
    // Mistral answers 422 to stream_options and sends usage anyway.
    bool erased = body->erase("stream_options") > 0;
    if (max_output) openai_style::SetMaxTokens(body, *max_output);
    return {.changed = erased || max_output.has_value()};
  }
  std::string ErrorBody(const Route*, ErrorKind kind, const std::string& message) const override {
    // OpenAI-style envelope (what the openai SDK unwraps) plus Mistral's own top-level
    // fields (what Mistral's SDK prints), so both SDKs show the message.
    json j = json::parse(openai_style::ErrorBody(kind, message));
    j["object"] = "error";
    j["message"] = message;
    j["type"] = j["error"]["type"];
    j["param"] = nullptr;
    j["code"] = j["error"]["code"];
    return DumpJson(j);
  }
};

class DeepSeek final : public OpenAIShaped {
 public:
  std::string_view name() const override { return "deepseek"; }
  std::optional<Route> Match(std::string_view method, std::string_view path) const override {
    if (Is(method, path, "POST", "chat/completions") ||
        Is(method, path, "POST", "v1/chat/completions") ||
        Is(method, path, "POST", "beta/completions"))
      return Route{Endpoint::kChat, true};
    if (method == "GET" && (path == "models" || path == "v1/models"))
      return Route{Endpoint::kListing, true};
    return std::nullopt;
  }
  Rewritten Rewrite(const Route&, const RequestFacts& f, std::optional<int64_t> max_output,
                    json* body) const override {
    return CapAndRequestUsage(f, max_output, body);
  }
};

class Ollama final : public OpenAIShaped {
 public:
  std::string_view name() const override { return "ollama"; }
  std::optional<Route> Match(std::string_view method, std::string_view path) const override {
    if (Is(method, path, "POST", "api/chat") || Is(method, path, "POST", "api/generate"))
      return Route{Endpoint::kChat, false};
    if (Is(method, path, "POST", "api/embed")) return Route{Endpoint::kEmbeddings, false};
    if (Is(method, path, "GET", "api/tags")) return Route{Endpoint::kListing, false};
    if (Is(method, path, "POST", "v1/chat/completions")) return Route{Endpoint::kChat, true};
    if (Is(method, path, "POST", "v1/embeddings")) return Route{Endpoint::kEmbeddings, true};
    if (method == "GET" && (path == "v1/models" || StartsWith(path, "v1/models/")))
      return Route{Endpoint::kListing, true};
    return std::nullopt;
  }
  Result<RequestFacts> ReadRequest(const Route& route, const json& body) const override {
    return route.openai_style ? OpenAIShaped::ReadRequest(route, body)
                              : ollama_native::ReadRequest(route, body);
  }
  bool UnboundedWithoutCap(const Route& route) const override {
    return route.endpoint == Endpoint::kChat;
  }
  Rewritten Rewrite(const Route& route, const RequestFacts& f, std::optional<int64_t> max_output,
                    json* body) const override {
    if (route.openai_style) return CapAndRequestUsage(f, max_output, body);
    if (max_output) ollama_native::SetMaxTokens(body, *max_output);
    return {.changed = max_output.has_value()};
  }
  Usage UsageFromAnswer(const Route& route, std::string_view answer) const override {
    return route.openai_style ? OpenAIShaped::UsageFromAnswer(route, answer)
                              : ollama_native::ReadUsage(
                                    TopLevelMembers(answer, {"prompt_eval_count", "eval_count"}));
  }
  std::unique_ptr<StreamObserver> ObserveStream(const Route& route, bool hide) const override {
    return route.openai_style ? OpenAIShaped::ObserveStream(route, hide)
                              : ollama_native::NewObserver();
  }
  std::string ErrorBody(const Route* route, ErrorKind kind,
                        const std::string& message) const override {
    if (route && route->openai_style) return openai_style::ErrorBody(kind, message);
    return DumpJson(json{{"error", message}});
  }
  std::string StreamErrorFrame(const Route& route, const std::string& message) const override {
    if (route.openai_style) return openai_style::StreamErrorFrame(message);
    return DumpJson(json{{"error", message}}) + "\n";
  }
};

}  // namespace

const std::vector<const Provider*>& AllProviders() {
  static const Mistral mistral;
  static const anthropic::Anthropic anthropic_provider;
  static const DeepSeek deepseek;
  static const Ollama ollama;
  static const std::vector<const Provider*> all = {&mistral, &anthropic_provider, &deepseek,
                                                   &ollama};
  return all;
}

const Provider* FindProvider(std::string_view name) {
  for (const Provider* p : AllProviders()) {
    if (p->name() == name) return p;
  }
  return nullptr;
}

}  // namespace tollgate
