#include "providers/json_bounded.h"

#include <cstring>

namespace tollgate {
namespace {

// Calls `visit(i)` for each byte of `text` from `from` on that is not inside a string
// (the quotes that open and close strings are visited; escaped ones are content). Stops
// at the first visit that returns false and gives its index; text.size() otherwise. The
// scans below need no valid JSON: a parse judges that.
template <typename Visit>
size_t ForEachOutsideStrings(std::string_view text, size_t from, Visit visit) {
  const size_t n = text.size();
  // Where byte `c` next occurs in [at, until); `until` if it does not.
  auto find = [&](char c, size_t at, size_t until) {
    const void* hit = at < until ? std::memchr(text.data() + at, c, until - at) : nullptr;
    return hit ? static_cast<size_t>(static_cast<const char*>(hit) - text.data()) : until;
  };
  for (size_t i = from; i < n; ++i) {
    if (!visit(i)) return i;
    if (text[i] != '"') continue;
    // A string opens at i. Its plain bytes are skipped by memchr, not one by one (an
    // answer's text is most of its bytes): the end is the first quote no backslash escapes.
    size_t quote = find('"', i + 1, n);
    for (size_t at = i + 1;;) {
      size_t escape = find('\\', at, quote);
      if (escape == quote) break;
      at = escape + 2;                           // the escaped byte is content
      if (at > quote) quote = find('"', at, n);  // it was that quote
    }
    if (quote >= n) return n;  // never closed
    i = quote;
    if (!visit(i)) return i;
  }
  return n;
}

// Whether no point of `text` sits inside more than `max_depth` open arrays and objects:
// far cheaper than a parser callback on every value.
bool DepthWithin(std::string_view text, int max_depth) {
  int depth = 0;
  return ForEachOutsideStrings(text, 0, [&](size_t i) {
           char c = text[i];
           if (c == '[' || c == '{') return ++depth <= max_depth;
           if (c == ']' || c == '}') --depth;
           return true;
         }) == text.size();
}

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Where the JSON value starting at `at` ends (one past it); text.size() if it never does.
size_t ValueEnd(std::string_view text, size_t at) {
  int depth = 0;
  bool open = false;  // a string at depth 0 is the value itself
  size_t end = text.size();
  ForEachOutsideStrings(text, at, [&](size_t i) {
    char c = text[i];
    if (c == '"') {
      open = !open;
      if (open || depth != 0) return true;
      end = i + 1;
    } else if (c == '[' || c == '{') {
      ++depth;
      return true;
    } else if (c == ']' || c == '}') {
      --depth;
      if (depth > 0) return true;
      end = depth == 0 ? i + 1 : i;  // below 0: the closer ends a number, true or null
    } else if (depth != 0 || (c != ',' && !IsSpace(c))) {
      return true;
    } else {
      end = i;  // the end of a number, true, false or null
    }
    return false;
  });
  return end;
}

size_t MembersInTree(const nlohmann::json& j) {
  size_t n = j.is_object() ? j.size() : 0;
  if (j.is_structured()) {
    for (const auto& child : j) n += MembersInTree(child);
  }
  return n;
}

}  // namespace

bool NoMemberDropped(std::string_view text, const nlohmann::json& parsed) {
  size_t colons = 0;  // one per member written
  ForEachOutsideStrings(text, 0, [&](size_t i) {
    colons += text[i] == ':';
    return true;
  });
  return colons == MembersInTree(parsed);
}

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
