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

// Anthropic's `source` of a document or an image: a document's text counts as text; a
// PDF as many bytes of text as it has (its text is often compressed: an upper bound
// needs at least that); an image its flat allowance.
int64_t SourceTextBytes(const nlohmann::json& source) {
  if (!source.is_object()) return kImageTextBytes;
  auto field = [&](const char* name) -> std::string {
    auto it = source.find(name);
    return it != source.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string type = field("type"), media = field("media_type");
  if (type == "text") return PromptTextBytes(source.value("data", nlohmann::json()));
  if (type == "content") return PromptTextBytes(source.value("content", nlohmann::json()));
  if (media == "application/pdf") {
    int64_t data = static_cast<int64_t>(field("data").size());
    return std::max(kImageTextBytes, data * 2);
  }
  return kImageTextBytes;
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
          n += key == "source" ? SourceTextBytes(value) : kImageTextBytes;
          break;
      }
    }
  } else if (j.is_number() || j.is_boolean()) {
    n += 4;
  }
  return n;
}

}  // namespace tollgate
