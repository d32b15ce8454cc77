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

// Where the JSON value starting at `at` ends (one past it), scanning strings and
// brackets only; text.size() if it never does.
size_t ValueEnd(std::string_view text, size_t at) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = at; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
        if (depth == 0) return i + 1;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      if (--depth <= 0) return depth == 0 ? i + 1 : i;
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
      return i;  // the end of a number, true, false or null
    }
  }
  return text.size();
}

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

nlohmann::json TopLevelMembers(std::string_view text,
                               std::initializer_list<std::string_view> names) {
  nlohmann::json found = nlohmann::json::object();
  size_t i = 0;
  while (i < text.size() && IsSpace(text[i])) ++i;
  if (i == text.size() || text[i] != '{') return found;
  ++i;
  // At the object's own level: a key, ':', a value, then ',' or '}'.
  while (i < text.size()) {
    while (i < text.size() && (IsSpace(text[i]) || text[i] == ',')) ++i;
    if (i == text.size() || text[i] != '"') return found;  // '}' or not JSON
    size_t key_end = ValueEnd(text, i);
    std::string_view key = text.substr(i + 1, key_end - i - 2);  // raw: names have no escapes
    i = key_end;
    while (i < text.size() && IsSpace(text[i])) ++i;
    if (i == text.size() || text[i] != ':') return found;
    ++i;
    while (i < text.size() && IsSpace(text[i])) ++i;
    size_t value_end = ValueEnd(text, i);
    if (value_end <= i || value_end == text.size())
      return found;  // cut short: the object never closes
    for (std::string_view name : names) {
      if (key != name) continue;
      std::string error;
      if (auto value = ParseJsonBounded(text.substr(i, value_end - i), &error))
        found[std::string(key)] = std::move(*value);
    }
    i = value_end;
  }
  return found;
}

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
