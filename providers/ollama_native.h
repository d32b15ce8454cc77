// Ollama's native API: /api/chat and /api/generate (NDJSON streams, on by default),
// /api/embed; usage in prompt_eval_count / eval_count.
#pragma once

#include "providers/provider.h"

namespace tollgate::ollama_native {

Result<RequestFacts> ReadRequest(const Route& route, const nlohmann::json& body);
Usage ReadUsage(const nlohmann::json& answer);
std::unique_ptr<StreamObserver> NewObserver();
void SetMaxTokens(nlohmann::json* body, int64_t max_output);  // options.num_predict

}  // namespace tollgate::ollama_native
