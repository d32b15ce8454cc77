#include "net/path.h"

#include "net/header_list.h"

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

// "." or "..", each dot maybe written %2e / %2E.
bool IsDotSegment(std::string_view segment) {
  int dots = 0;
  while (!segment.empty()) {
    if (segment.front() == '.') {
      segment.remove_prefix(1);
    } else if (EqualsIgnoreCase(segment.substr(0, 3), "%2e")) {
      segment.remove_prefix(3);
    } else {
      return false;
    }
    if (++dots > 2) return false;
  }
  return dots > 0;
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

bool IsPlainPath(std::string_view path) {
  if (path.find('\\') != std::string_view::npos) return false;
  for (size_t pct = path.find('%'); pct != std::string_view::npos; pct = path.find('%', pct + 1)) {
    std::string_view code = path.substr(pct, 3);
    if (EqualsIgnoreCase(code, "%2f") || EqualsIgnoreCase(code, "%5c")) return false;
  }
  if (path.find('.') == std::string_view::npos && path.find('%') == std::string_view::npos)
    return true;  // the usual path: nothing to resolve
  return EverySegment(path, [](std::string_view segment) { return !IsDotSegment(segment); });
}

}  // namespace tollgate
