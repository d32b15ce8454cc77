#include <algorithm>

#include "providers/provider.h"

namespace tollgate {

int StatusFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidRequest:
      return 400;
    case ErrorKind::kAuthentication:
      return 401;
    case ErrorKind::kBudget:
      return 402;
    case ErrorKind::kPermission:
      return 403;
    case ErrorKind::kNotFound:
      return 404;
    case ErrorKind::kTooLarge:
      return 413;
    case ErrorKind::kInternal:
      return 500;
    case ErrorKind::kUpstream:
      return 502;
    case ErrorKind::kUnavailable:
      return 503;
    case ErrorKind::kTimeout:
      return 504;
  }
  return 500;
}

int64_t EstimateInputTokens(int64_t text_bytes, int64_t messages) {
  // ceil(bytes / 3.5 * 1.2) = ceil(bytes * 12 / 35)
  return (text_bytes * 12 + 34) / 35 + 4 * messages + 3;
}

PromptKey ClassifyPromptKey(std::string_view key) {
  // Everything textual counts except identifiers that never reach the tokenizer.
  if (key == "role" || key == "type" || key == "id" || key == "tool_call_id" ||
      key == "cache_control")
    return PromptKey::kSkipped;
  if (key == "image_url" || key == "source" || key == "images") return PromptKey::kImage;
  return PromptKey::kText;
}

int64_t PromptTextBytes(const nlohmann::json& j) {
  if (j.is_string()) return static_cast<int64_t>(j.get_ref<const std::string&>().size());
  int64_t n = 0;
  if (j.is_array()) {
    for (const auto& e : j) n += PromptTextBytes(e);
  } else if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      switch (ClassifyPromptKey(key)) {
        case PromptKey::kText:
          n += PromptTextBytes(value);
          break;
        case PromptKey::kSkipped:
          break;
        case PromptKey::kImage:
          n += kImageTextBytes;
          break;
      }
    }
  } else if (j.is_number() || j.is_boolean()) {
    n += 4;
  }
  return n;
}

}  // namespace tollgate
