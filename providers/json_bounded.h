// Parsing untrusted JSON with a bounded nesting depth: nlohmann::json recurses when
// it builds and destroys deep documents, and 100,000 '[' would overflow the stack.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate {

constexpr int kMaxJsonDepth = 64;

// The parsed document, or nullopt with `error` set ("not valid JSON: ...",
// "nested deeper than 64 levels").
std::optional<nlohmann::json> ParseJsonBounded(std::string_view text, std::string* error,
                                               int max_depth = kMaxJsonDepth);

// The integer member `key` of `j`; `fallback` when `j` is not an object, has no such
// member or it is not an integer (an upstream's counts are read, never trusted to have
// a type: get<> would throw, or cast a float past int64).
int64_t IntegerMember(const nlohmann::json& j, std::string_view key, int64_t fallback);

// Whether `parsed`, the tree parsed from `text`, holds every object member the text
// spells out: false when a key repeats within an object (the parser keeps one of them,
// another reader might keep the other). One pass over the bytes and one over the tree.
bool NoMemberDropped(std::string_view text, const nlohmann::json& parsed);

// A plain integer's value (JSON's -?(0|[1-9][0-9]*), 18 digits at most, so it fits)
// without the parser; nullopt for any other text.
std::optional<int64_t> PlainInteger(std::string_view text);

// The members named in `names` of the object `text` holds, each parsed with the bound
// above; the rest is only scanned for its strings and brackets, never built. For an
// answer's usage, whatever else it carries. Not an object, or none there: {}.
// `whole`, if given, is set false when a member named is there but not valid JSON.
nlohmann::json TopLevelMembers(std::string_view text, std::initializer_list<std::string_view> names,
                               bool* whole = nullptr);

// One member of an object read by ScanObject: its key and value as written, and what
// the request readers need of the value without building it.
struct ScannedMember {
  std::string_view key;    // as written: ScanObject declines keys with escapes
  std::string_view value;  // the value's text
  char kind = 0;           // '{', '[', '"', 't', 'f', 'n', or '0' for a number
  int64_t text_bytes = 0;  // PromptTextBytes of the value (strings: their UTF-8 bytes)
  int64_t elements = 0;    // of an array
};

// The members of the object `text` holds, read without building a tree, when the
// parser would take the text whole and build exactly these members: valid JSON (strings
// as the parser checks them: escapes, surrogate pairs, UTF-8), nested within
// `max_depth`, no key repeated or escaped in any object, no number the parser could
// overflow (one with an exponent, or of 100 bytes or more). nullopt otherwise, or when
// the text holds something else than an object or more than 32 members in one object:
// then the caller parses. For the hot path's small requests (see bench/RESULTS.md).
std::optional<std::vector<ScannedMember>> ScanObject(std::string_view text,
                                                     int max_depth = kMaxJsonDepth);

// The raw text of the object the member `name` of the object `text` holds (the last,
// if it repeats, as the parser keeps), for TopLevelMembers to read a few of its members
// in turn; nullopt when there is none or it is not an object.
std::optional<std::string_view> TopLevelObject(std::string_view text, std::string_view name);

}  // namespace tollgate
