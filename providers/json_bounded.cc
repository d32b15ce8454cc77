#include "providers/json_bounded.h"

#include <algorithm>
#include <charconv>
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

namespace {

// Calls `visit(key, value)` for each member of the object `text` holds, with the
// value's raw text; stops at whatever is not an object.
template <typename Visit>
void ForEachTopLevelMember(std::string_view text, Visit visit) {
  size_t i = 0;
  while (i < text.size() && IsSpace(text[i])) ++i;
  if (i == text.size() || text[i] != '{') return;
  ++i;
  // At the object's own level: a key, ':', a value, then ',' or '}'.
  while (i < text.size()) {
    while (i < text.size() && (IsSpace(text[i]) || text[i] == ',')) ++i;
    if (i == text.size() || text[i] != '"') return;  // '}' or not JSON
    size_t key_end = ValueEnd(text, i);
    std::string_view key = text.substr(i + 1, key_end - i - 2);  // raw: names have no escapes
    i = key_end;
    while (i < text.size() && IsSpace(text[i])) ++i;
    if (i == text.size() || text[i] != ':') return;
    ++i;
    while (i < text.size() && IsSpace(text[i])) ++i;
    size_t value_end = ValueEnd(text, i);
    if (value_end <= i || value_end == text.size()) return;  // cut short: never closes
    visit(key, text.substr(i, value_end - i));
    i = value_end;
  }
}

// A plain integer (the most of an answer's usage) without the parser; nullopt when the
// text is anything else, or too long to be sure it fits.
std::optional<nlohmann::json> PlainInteger(std::string_view v) {
  size_t digits = !v.empty() && v[0] == '-' ? 1 : 0;
  if (v.size() == digits || v.size() - digits > 18) return std::nullopt;
  if (v[digits] == '0' && v.size() > digits + 1) return std::nullopt;  // not JSON
  int64_t n = 0;
  auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (err != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return nlohmann::json(n);
}

}  // namespace

nlohmann::json TopLevelMembers(std::string_view text, std::initializer_list<std::string_view> names,
                               bool* whole) {
  if (whole) *whole = true;
  nlohmann::json found = nlohmann::json::object();
  ForEachTopLevelMember(text, [&](std::string_view key, std::string_view value) {
    if (std::find(names.begin(), names.end(), key) == names.end()) return;
    std::string error;
    auto parsed = PlainInteger(value);
    if (!parsed) parsed = ParseJsonBounded(value, &error);
    if (parsed) {
      found[std::string(key)] = std::move(*parsed);
    } else if (whole) {
      *whole = false;
    }
  });
  return found;
}

std::optional<std::string_view> TopLevelObject(std::string_view text, std::string_view name) {
  std::optional<std::string_view> found;
  ForEachTopLevelMember(text, [&](std::string_view key, std::string_view value) {
    if (key == name) found = value[0] == '{' ? std::optional(value) : std::nullopt;
  });
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
