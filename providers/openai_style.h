// What Mistral, DeepSeek and Ollama's /v1 layer share: OpenAI-shaped chat requests,
// usage objects, SSE chunk streams ending in [DONE], and the {"error":{...}} envelope.
#pragma once

#include "providers/provider.h"

namespace tollgate::openai_style {

// Reads model, stream, max_tokens / max_completion_tokens, user, include_usage, and
// estimates input from messages (chat) / prompt + suffix (FIM) / input (embeddings).
Result<RequestFacts> ReadRequest(const Route& route, const nlohmann::json& body);
// The same for the most common chat request, from its bytes (Provider::ReadRequestBytes):
// a chat with messages, not a stream, no stream_options (Mistral's Rewrite drops them),
// a plain model and user, caps that are plain counts.
std::optional<RequestFacts> ReadRequestBytes(const Route& route, std::string_view body);

// usage.prompt_tokens / completion_tokens, cached tokens from DeepSeek's
// prompt_cache_hit_tokens or prompt_tokens_details.cached_tokens, reasoning tokens.
Usage ReadUsage(const nlohmann::json& usage);
// The same from a whole answer's bytes, parsing only the members ReadUsage reads.
Usage UsageFromAnswer(std::string_view answer);

// Observes "data: {chunk}" frames: the last non-null usage wins; [DONE] ends the
// stream; a frame with an "error" key is an in-stream error. When `hide_usage_chunk`,
// the usage-only chunk (choices: []) that tollgate asked for is not relayed.
std::unique_ptr<StreamObserver> NewObserver(bool hide_usage_chunk);

std::string ErrorBody(ErrorKind kind, const std::string& message);
std::string StreamErrorFrame(const std::string& message);

// Sets max_tokens; removes max_completion_tokens so only one cap is in force.
void SetMaxTokens(nlohmann::json* body, int64_t max_output);

}  // namespace tollgate::openai_style
