// Splitting streamed answers into frames: Server-Sent Events and NDJSON. Frames keep
// their raw bytes so that what is relayed is exactly what the upstream sent.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tollgate {

struct SseEvent {
  std::string raw;    // the whole block, blank-line terminator included
  std::string event;  // the `event:` name, if any
  std::string data;   // `data:` lines joined with '\n'
  bool has_data = false;
};

// Incremental SSE parser: lines starting with ':' are comments (DeepSeek's
// ": keep-alive") and carry no data; multi-line data is joined; CRLF is accepted.
class SseSplitter {
 public:
  std::vector<SseEvent> Feed(std::string_view bytes);
  std::string TakeRest();

 private:
  std::string buffer_;
};

// Incremental NDJSON splitter: one complete line (with its '\n') per element.
class LineSplitter {
 public:
  std::vector<std::string> Feed(std::string_view bytes);
  std::string TakeRest();

 private:
  std::string buffer_;
};

}  // namespace tollgate
