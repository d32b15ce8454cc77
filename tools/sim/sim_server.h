// tollgate-sim: simulated Mistral, Anthropic, DeepSeek and Ollama upstreams on one
// port, in their native wire formats, streaming included, with exact usage.
//
// Dispatch: /v1/messages* -> Anthropic; /api/* -> Ollama native; /v1/fim/*,
// /v1/embeddings -> Mistral; /chat/completions -> DeepSeek; /v1/chat/completions by
// model name (mistral, codestral, ministral, pixtral, magistral, devstral, open-mistral
// -> Mistral; deepseek* -> DeepSeek; anything else -> Ollama's OpenAI layer).
//
// Token counts are deterministic so tests can compute cost by hand:
//   input tokens  = ceil(characters of all message/prompt text / 4), at least 1
//   output tokens = min(max_tokens if given, x-sim-output-tokens or the default)
// Request headers steer it (the proxy forwards them):
//   x-sim-output-tokens: N     x-sim-token-delay-ms: N   x-sim-error: STATUS
//   x-sim-cut-after: N (stream: close the connection after N content chunks)
//   x-sim-stream-error: N (stream: send the provider's in-stream error after N chunks)
//   x-sim-cache-read: N   x-sim-cache-write: N   x-sim-cache-write-1h: N
//   x-sim-reasoning: N (DeepSeek reasoning tokens)   x-sim-keepalive: N (": keep-alive" lines)
// Streams with a token delay are paced on one thread (a stream between tokens holds no
// thread), so thousands of slow streams cost the machine little besides the writes.
// GET /_sim/requests returns the last requests seen (path, auth headers, body) so
// tests can check what reached the upstream; DELETE /_sim/requests clears them.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "net/event_server.h"

namespace tollgate::sim {

struct SimOptions {
  int default_output_tokens = 16;
  int token_delay_ms = 0;  // per output token, when streaming
  int worker_threads = 256;
  size_t remembered_requests = 64;
};

// The requests the sim has seen; shared by the handlers, so it outlives SimServer.
class RequestLog {
 public:
  explicit RequestLog(size_t capacity) : capacity_(capacity) {}
  void Remember(const httplib::Request& req);
  nlohmann::json Recent();
  void Clear();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::deque<nlohmann::json> recent_;
};

// Builds the sim's server. Handlers hold only shared state, so the server may be
// moved out (Release) and run after the SimServer is gone.
class SimServer {
 public:
  explicit SimServer(SimOptions options);
  EventServer& server() { return *server_; }
  std::unique_ptr<EventServer> Release() { return std::move(server_); }

 private:
  std::unique_ptr<EventServer> server_;
};

}  // namespace tollgate::sim
