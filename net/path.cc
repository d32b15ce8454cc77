#include "net/path.h"

namespace tollgate {
namespace {

// Calls `each` with every segment of `path` (what follows each '/') until it returns false.
template <typename F>
bool EverySegment(std::string_view path, F&& each) {
  if (path.empty() || path.front() != '/') return false;
  size_t start = 1;
  for (;;) {
    size_t slash = path.find('/', start);
    size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (!each(path.substr(start, end - start))) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace

PathPattern::PathPattern(std::string_view pattern) {
  EverySegment(pattern, [&](std::string_view segment) {
    segments_.emplace_back(segment);
    return true;
  });
}

bool PathPattern::Matches(std::string_view path) const {
  size_t i = 0;
  bool all = EverySegment(path, [&](std::string_view segment) {
    if (i == segments_.size()) return false;
    const std::string& want = segments_[i++];
    return want == "*" ? !segment.empty() : segment == want;
  });
  return all && i == segments_.size();
}

std::string_view PathSegment(std::string_view path, size_t index) {
  std::string_view found;
  size_t i = 0;
  EverySegment(path, [&](std::string_view segment) {
    if (i++ < index) return true;
    found = segment;
    return false;
  });
  return found;
}

}  // namespace tollgate
