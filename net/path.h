// Request paths: the routes' patterns, matched segment by segment (no regex: a regex
// matcher recurses per character, and a 40,000-byte segment overflowed the stack).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tollgate {

// A route's path: literal segments, and `*` for any one non-empty segment.
// "/api/v1/budget/admin/reset/*" takes "/api/v1/budget/admin/reset/42" and nothing
// longer or shorter. Linear in the path, compared as bytes.
class PathPattern {
 public:
  explicit PathPattern(std::string_view pattern);
  bool Matches(std::string_view path) const;

 private:
  std::vector<std::string> segments_;  // "*" stands for one
};

// The segment `index` of `path` (0: the one after the first '/'); "" past the last.
std::string_view PathSegment(std::string_view path, size_t index);

}  // namespace tollgate
