// Anthropic's Messages API: x-api-key + anthropic-version, max_tokens required, SSE
// with event names, usage split between message_start (input side) and the
// cumulative message_delta (take the last value, never add).
#pragma once

#include "providers/provider.h"

namespace tollgate::anthropic {

class Anthropic final : public Provider {
 public:
  std::string_view name() const override { return "anthropic"; }
  std::optional<Route> Match(std::string_view method, std::string_view path) const override;
  Result<RequestFacts> ReadRequest(const Route& route, const nlohmann::json& body) const override;
  Rewritten Rewrite(const Route& route, const RequestFacts& facts,
                    std::optional<int64_t> max_output, nlohmann::json* body) const override;
  Usage UsageFromAnswer(const Route& route, std::string_view answer) const override;
  std::unique_ptr<StreamObserver> ObserveStream(const Route& route,
                                                bool hide_usage_chunk) const override;
  std::string ErrorBody(const Route* route, ErrorKind kind,
                        const std::string& message) const override;
  std::string StreamErrorFrame(const Route& route, const std::string& message) const override;
  std::vector<std::pair<std::string, std::string>> Credentials(
      const std::string& api_key) const override;
};

// Reads a usage object (message or message_delta), overwriting only the fields present.
void MergeUsage(const nlohmann::json& u, Usage* usage);

}  // namespace tollgate::anthropic
