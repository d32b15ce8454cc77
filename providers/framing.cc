#include "providers/framing.h"

#include <utility>

namespace tollgate {
namespace {

// Finds the end of the next SSE block: the first blank line, LF or CRLF.
size_t BlockEnd(const std::string& s, size_t from, size_t* terminator) {
  for (size_t i = s.find('\n', from); i != std::string::npos && i + 1 < s.size();
       i = s.find('\n', i + 1)) {
    if (s[i + 1] == '\n') {
      *terminator = 2;
      return i;
    }
    if (s[i + 1] == '\r' && i + 2 < s.size() && s[i + 2] == '\n') {
      *terminator = 3;
      return i;
    }
  }
  return std::string::npos;
}

SseEvent ParseBlock(std::string raw, size_t body_len) {
  SseEvent e;
  std::string_view body(raw.data(), body_len);
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t nl = body.find('\n', pos);
    std::string_view line =
        body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line[0] != ':') {
      size_t colon = line.find(':');
      std::string_view field = line.substr(0, colon);
      std::string_view value =
          colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      if (field == "event") {
        e.event = value;
      } else if (field == "data") {
        if (e.has_data) e.data += '\n';
        e.data += value;
        e.has_data = true;
      }
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  e.raw = std::move(raw);
  return e;
}

}  // namespace

std::vector<SseEvent> SseSplitter::Feed(std::string_view bytes) {
  buffer_.append(bytes);
  std::vector<SseEvent> out;
  size_t start = 0;
  while (true) {
    size_t terminator = 0;
    size_t end = BlockEnd(buffer_, start, &terminator);
    if (end == std::string::npos) break;
    out.push_back(ParseBlock(buffer_.substr(start, end + terminator - start), end - start));
    start = end + terminator;
  }
  buffer_.erase(0, start);
  return out;
}

std::string SseSplitter::TakeRest() { return std::exchange(buffer_, {}); }

std::vector<std::string> LineSplitter::Feed(std::string_view bytes) {
  buffer_.append(bytes);
  std::vector<std::string> out;
  size_t start = 0, nl;
  while ((nl = buffer_.find('\n', start)) != std::string::npos) {
    out.push_back(buffer_.substr(start, nl + 1 - start));
    start = nl + 1;
  }
  buffer_.erase(0, start);
  return out;
}

std::string LineSplitter::TakeRest() { return std::exchange(buffer_, {}); }

}  // namespace tollgate
