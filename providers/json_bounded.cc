#include "providers/json_bounded.h"

namespace tollgate {
namespace {

// Whether no point of `text` sits inside more than `max_depth` open arrays and
// objects, counting brackets outside strings. One pass over the bytes: far cheaper than
// a parser callback on every value, and it needs no valid JSON (the parse judges that).
bool DepthWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

std::optional<nlohmann::json> ParseJsonBounded(std::string_view text, std::string* error,
                                               int max_depth) {
  if (!DepthWithin(text, max_depth)) {
    *error = "nested deeper than " + std::to_string(max_depth) + " levels";
    return std::nullopt;
  }
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded()) return parsed;
  try {
    nlohmann::json again = nlohmann::json::parse(text);  // for the parser's account of the fault
    *error = "not valid JSON";
  } catch (const nlohmann::json::parse_error& e) {
    *error = std::string("not valid JSON: ") + e.what();
  }
  return std::nullopt;
}

}  // namespace tollgate
