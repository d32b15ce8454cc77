#include "providers/json_bounded.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "config/text.h"
#include "providers/provider.h"

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

}  // namespace

std::optional<int64_t> PlainInteger(std::string_view v) {
  size_t digits = !v.empty() && v[0] == '-' ? 1 : 0;
  if (v.size() == digits || v.size() - digits > 18) return std::nullopt;
  if (v[digits] == '0' && v.size() > digits + 1) return std::nullopt;  // not JSON
  int64_t n = 0;
  auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (err != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return n;
}

nlohmann::json TopLevelMembers(std::string_view text, std::initializer_list<std::string_view> names,
                               bool* whole) {
  if (whole) *whole = true;
  nlohmann::json found = nlohmann::json::object();
  ForEachTopLevelMember(text, [&](std::string_view key, std::string_view value) {
    if (std::find(names.begin(), names.end(), key) == names.end()) return;
    std::string error;
    std::optional<nlohmann::json> parsed;
    if (auto n = PlainInteger(value)) {
      parsed = *n;
    } else {
      parsed = ParseJsonBounded(value, &error);
    }
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

int64_t IntegerMember(const nlohmann::json& j, std::string_view key, int64_t fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
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
  } catch (const nlohmann::json::exception& e) {  // parse_error; out_of_range for 1e999
    *error = std::string("not valid JSON: ") + e.what();
  }
  return std::nullopt;
}

namespace {

// The recursive reader behind ScanObject: each call reads one piece at `at_` and says
// whether it is one the parser would take and ScanObject may stand in for.
class Scanner {
 public:
  Scanner(std::string_view text, int max_depth) : text_(text), max_depth_(max_depth) {}

  std::optional<std::vector<ScannedMember>> Object() {
    std::vector<ScannedMember> members;
    SkipSpace();
    if (Peek() != '{') return std::nullopt;
    bool ok = Members(1, [&](std::string_view key, int depth) {
      ScannedMember m;
      m.key = key;
      size_t from = at_;
      m.kind = std::strchr("{[\"tfn", Peek()) != nullptr ? Peek() : '0';
      if (!Value(depth, &m.text_bytes, &m.elements)) return false;
      m.value = text_.substr(from, at_ - from);
      members.push_back(m);
      return true;
    });
    SkipSpace();
    if (!ok || at_ != text_.size()) return std::nullopt;
    return members;
  }

 private:
  static constexpr size_t kMaxMembers = 32;
  static constexpr size_t kMaxNumberBytes = 100;

  char Peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }
  void SkipSpace() {
    while (at_ < text_.size() && IsSpace(text_[at_])) ++at_;
  }

  // An object at `at_` (on its '{'), `depth` brackets deep counting its own; calls
  // `value(key, depth)` at each member's value.
  template <typename OnValue>
  bool Members(int depth, OnValue value) {
    if (depth > max_depth_) return false;
    ++at_;
    SkipSpace();
    if (Peek() == '}') return ++at_, true;
    std::string_view keys[kMaxMembers];
    for (size_t n = 0;; ++n) {
      SkipSpace();
      std::string_view key;
      int64_t unused = 0;
      if (n == kMaxMembers || Peek() != '"' || !String(&unused, &key)) return false;
      if (std::find(keys, keys + n, key) != keys + n) return false;  // the parser keeps one
      keys[n] = key;
      SkipSpace();
      if (Peek() != ':') return false;
      ++at_;
      SkipSpace();
      if (!value(key, depth)) return false;
      SkipSpace();
      if (Peek() == '}') return ++at_, true;
      if (Peek() != ',') return false;
      ++at_;
    }
  }

  // Any value at `at_` inside `depth` brackets: adds its prompt text to `text_bytes`
  // and, for an array, its length to `elements`.
  bool Value(int depth, int64_t* text_bytes, int64_t* elements) {
    switch (Peek()) {
      case '{':
        return Members(depth + 1, [&](std::string_view key, int inner) {
          int64_t bytes = 0, unused = 0;
          if (key == "source") return false;  // a document's text or an image: the parser
          if (!Value(inner, &bytes, &unused)) return false;
          switch (ClassifyPromptKey(key)) {
            case PromptKey::kText:
              *text_bytes += bytes;
              break;
            case PromptKey::kSkipped:
              break;
            case PromptKey::kImage:
              *text_bytes += kImageTextBytes;
              break;
          }
          return true;
        });
      case '[':
        if (depth + 1 > max_depth_) return false;
        ++at_;
        SkipSpace();
        if (Peek() == ']') return ++at_, true;
        for (;;) {
          int64_t unused = 0;
          SkipSpace();
          if (!Value(depth + 1, text_bytes, &unused)) return false;
          ++*elements;
          SkipSpace();
          if (Peek() == ']') return ++at_, true;
          if (Peek() != ',') return false;
          ++at_;
        }
      case '"':
        return String(text_bytes, nullptr);
      case 't':
        return Word("true", text_bytes, 4);
      case 'f':
        return Word("false", text_bytes, 4);
      case 'n':
        return Word("null", text_bytes, 0);
      default:
        return Number(text_bytes);
    }
  }

  bool Word(std::string_view word, int64_t* text_bytes, int64_t adds) {
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    *text_bytes += adds;
    return true;
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?, short: what the parser reads as a finite number.
  bool Number(int64_t* text_bytes) {
    size_t from = at_;
    auto digits = [&] {
      size_t start = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
      return at_ - start;
    };
    if (Peek() == '-') ++at_;
    if (Peek() == '0') {
      ++at_;
    } else if (digits() == 0) {
      return false;
    }
    if (Peek() == '.') {
      ++at_;
      if (digits() == 0) return false;
    }
    if (Peek() == 'e' || Peek() == 'E' || at_ - from >= kMaxNumberBytes) return false;
    *text_bytes += 4;
    return true;
  }

  // A string at `at_` (on its quote): adds its UTF-8 length once decoded to `bytes`. A
  // key (`key` given) is declined if escaped, and set to its text between the quotes.
  bool String(int64_t* bytes, std::string_view* key) {
    size_t start = ++at_;
    int64_t decoded = 0;
    for (;;) {
      size_t plain = at_;
      while (at_ < text_.size()) {
        auto c = static_cast<unsigned char>(text_[at_]);
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
        ++at_;
      }
      decoded += static_cast<int64_t>(at_ - plain);
      if (at_ == text_.size()) return false;
      auto c = static_cast<unsigned char>(text_[at_]);
      if (c == '"') break;
      if (c < 0x20) return false;  // control characters must be escaped
      if (c == '\\') {
        if (key != nullptr) return false;
        int64_t n = Escape();
        if (n == 0) return false;
        decoded += n;
        continue;
      }
      size_t n = Utf8SequenceLength(text_.substr(at_));
      if (n == 0) return false;
      at_ += n;
      decoded += static_cast<int64_t>(n);
    }
    if (key != nullptr) *key = text_.substr(start, at_ - start);
    ++at_;
    *bytes += decoded;
    return true;
  }

  // The escape at `at_` (on its backslash), passed: the UTF-8 bytes it stands for, or
  // 0 if the parser refuses it (an unknown escape, a lone or unpaired surrogate).
  int64_t Escape() {
    if (at_ + 1 >= text_.size()) return 0;
    char e = text_[at_ + 1];
    at_ += 2;
    if (std::strchr("\"\\/bfnrt", e) != nullptr && e != '\0') return 1;
    if (e != 'u') return 0;
    int unit = Hex4();
    if (unit < 0) return 0;
    if (unit >= 0xDC00 && unit <= 0xDFFF) return 0;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      if (text_.substr(at_, 2) != "\\u") return 0;
      at_ += 2;
      int low = Hex4();
      return low >= 0xDC00 && low <= 0xDFFF ? 4 : 0;
    }
    return unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3;
  }

  int Hex4() {
    if (at_ + 4 > text_.size()) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[at_++];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }

  const std::string_view text_;
  const int max_depth_;
  size_t at_ = 0;
};

}  // namespace

std::optional<std::vector<ScannedMember>> ScanObject(std::string_view text, int max_depth) {
  return Scanner(text, max_depth).Object();
}

}  // namespace tollgate
