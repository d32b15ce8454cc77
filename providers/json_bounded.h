// Parsing untrusted JSON with a bounded nesting depth: nlohmann::json recurses when
// it builds and destroys deep documents, and 100,000 '[' would overflow the stack.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate {

constexpr int kMaxJsonDepth = 64;

// The parsed document, or nullopt with `error` set ("not valid JSON: ...",
// "nested deeper than 64 levels").
std::optional<nlohmann::json> ParseJsonBounded(std::string_view text, std::string* error,
                                               int max_depth = kMaxJsonDepth);

// Whether `parsed`, the tree parsed from `text`, holds every object member the text
// spells out: false when a key repeats within an object (the parser keeps one of them,
// another reader might keep the other). One pass over the bytes and one over the tree.
bool NoMemberDropped(std::string_view text, const nlohmann::json& parsed);

// The members named in `names` of the object `text` holds, each parsed with the bound
// above; the rest is only scanned for its strings and brackets, never built. For an
// answer's usage, whatever else it carries. Not an object, or none there: {}.
// `whole`, if given, is set false when a member named is there but not valid JSON.
nlohmann::json TopLevelMembers(std::string_view text, std::initializer_list<std::string_view> names,
                               bool* whole = nullptr);

// The raw text of the object the member `name` of the object `text` holds (the last,
// if it repeats, as the parser keeps), for TopLevelMembers to read a few of its members
// in turn; nullopt when there is none or it is not an object.
std::optional<std::string_view> TopLevelObject(std::string_view text, std::string_view name);

}  // namespace tollgate
