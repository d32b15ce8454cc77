// One adapter per provider, behind one interface. Adapters are pure: they turn bytes
// into facts (model, stream, max output, input estimate, usage) and render native
// errors. They do no I/O and know nothing of budgets.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/status.h"

namespace tollgate {

enum class Endpoint {
  kChat,         // chat completions, messages, FIM, generate: priced on input + output
  kEmbeddings,   // priced on input only
  kCountTokens,  // free (Anthropic count_tokens)
  kListing,      // GET model lists: free, no body
};

struct Route {
  Endpoint endpoint;
  bool openai_style = false;  // an OpenAI-shaped surface (errors and streams)
};

struct RequestFacts {
  std::string model;
  bool stream = false;
  std::optional<int64_t> max_output_tokens;  // what the request asks for, if anything
  const char* max_output_field = "max_tokens";  // its name in the request, for errors
  int64_t input_tokens_estimate = 0;         // an upper bound where possible
  std::string end_user;                      // OpenAI `user` / Anthropic `metadata.user_id`
  bool client_asked_usage = false;           // stream_options.include_usage was true
};

struct Usage {
  int64_t input_tokens = 0;   // uncached input
  int64_t output_tokens = 0;  // reasoning included
  int64_t cache_read_tokens = 0;
  int64_t cache_write_5m_tokens = 0;  // Anthropic; also "cache write" elsewhere
  int64_t cache_write_1h_tokens = 0;
  int64_t reasoning_tokens = 0;  // informational: already inside output_tokens
  bool reported = false;         // the provider sent usage
};

enum class ErrorKind {
  kInvalidRequest,  // 400
  kAuthentication,  // 401
  kBudget,          // 402
  kPermission,      // 403
  kNotFound,        // 404
  kTooLarge,        // 413
  kInternal,        // 500: tollgate's own failure (an exception stopped at a boundary)
  kUpstream,        // 502
  kTimeout,         // 504
  kUnavailable,     // 503
};

// Watches a streamed answer as it passes: extracts usage, notices the end, counts the
// text relayed, and may hold back frames the client should not see.
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  // Consumes upstream bytes; returns the bytes to send to the client now.
  virtual std::string Feed(std::string_view bytes) = 0;
  // Whatever is still buffered (an unterminated last frame).
  virtual std::string Flush() = 0;
  const Usage& usage() const { return usage_; }
  bool finished() const { return finished_; }              // the terminal frame was seen
  bool upstream_error() const { return upstream_error_; }  // an in-stream error frame
  int64_t relayed_text_bytes() const { return relayed_text_bytes_; }

 protected:
  Usage usage_;
  bool finished_ = false;
  bool upstream_error_ = false;
  int64_t relayed_text_bytes_ = 0;
};

// What Rewrite did to a request body.
struct Rewritten {
  bool changed = false;           // the body differs from what the caller sent
  bool hide_usage_chunk = false;  // include_usage was asked for on the caller's behalf
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string_view name() const = 0;

  // The route for a native path (the part after "/<provider>/", e.g. "v1/messages").
  virtual std::optional<Route> Match(std::string_view method, std::string_view path) const = 0;
  // Reads what the gate needs; a bad body gives Invalid with a message naming the field.
  virtual Result<RequestFacts> ReadRequest(const Route& route,
                                           const nlohmann::json& body) const = 0;
  // The same facts from the body's bytes, without a tree, for a body that is valid,
  // that ReadRequest takes, and that Rewrite leaves as it is unless the gate clamps its
  // cap; nullopt for any other (then the caller parses and calls ReadRequest).
  virtual std::optional<RequestFacts> ReadRequestBytes(const Route&, std::string_view) const {
    return std::nullopt;
  }
  // Prepares the body for the upstream: provider quirks, and an output cap when the
  // gate clamps. An unchanged body goes upstream as the caller's own bytes.
  virtual Rewritten Rewrite(const Route& route, const RequestFacts& facts,
                            std::optional<int64_t> max_output, nlohmann::json* body) const = 0;
  // Whether the upstream generates without end when a request names no output cap
  // (Ollama: num_predict -1): the proxy then sends the cap it reserved for.
  virtual bool UnboundedWithoutCap(const Route&) const { return false; }
  // The usage a whole (non-streamed) answer reports, from its bytes.
  virtual Usage UsageFromAnswer(const Route& route, std::string_view answer) const = 0;
  virtual std::unique_ptr<StreamObserver> ObserveStream(const Route& route,
                                                        bool hide_usage_chunk) const = 0;

  // The provider's own error body for a refusal or failure tollgate originates.
  virtual std::string ErrorBody(const Route* route, ErrorKind kind,
                                const std::string& message) const = 0;
  // The in-stream error form, for failures after the status line was sent.
  virtual std::string StreamErrorFrame(const Route& route, const std::string& message) const = 0;
  // Headers for the upstream (name, value): the credential, and defaults the proxy
  // adds only when the client did not send that header itself.
  virtual std::vector<std::pair<std::string, std::string>> Credentials(
      const std::string& api_key) const = 0;
};

// mistral, anthropic, deepseek, ollama; nullptr for anything else.
const Provider* FindProvider(std::string_view name);
const std::vector<const Provider*>& AllProviders();

int StatusFor(ErrorKind kind);

// Input estimate from the bytes of text a tokenizer would see: bytes / 3.5 x 1.2 plus
// 4 per message and 3 for priming (PROVIDERS.md 6.1). Counting UTF-8 bytes keeps it an
// upper bound for non-Latin text too.
int64_t EstimateInputTokens(int64_t text_bytes, int64_t messages);
// Sums the UTF-8 bytes of the strings under `j` that count as prompt text.
int64_t PromptTextBytes(const nlohmann::json& j);
// What an object member named `key` adds to PromptTextBytes: its value's text; nothing
// (identifiers that never reach the tokenizer); or an image's flat kImageTextBytes.
enum class PromptKey { kText, kSkipped, kImage };
PromptKey ClassifyPromptKey(std::string_view key);
constexpr int64_t kImageTextBytes = 1500 * 4;  // ~1,500 tokens of budget; no pixels counted

}  // namespace tollgate
