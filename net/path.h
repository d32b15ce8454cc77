// Request paths: the routes' patterns, matched segment by segment (no regex: a regex
// matcher recurses per character, and a 40,000-byte segment overflowed the stack), and
// the check that a path names what it seems to before it is passed on.
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

// Whether `path` may go on to another server as it is: no dot-segment (`.` or `..`, each
// dot written as it is or as %2e, %2E), which that server would resolve against the
// segments before it, and no slash or backslash written as %2f or %5c, nor a backslash,
// which some servers take for a separator. Any of them could name another resource
// upstream than the one routed, priced and allowed here.
bool IsPlainPath(std::string_view path);

}  // namespace tollgate
