// Decodes an HTTP/1.1 chunked body as its bytes arrive, for request bodies (the
// server's parser) and upstream answers (the client) alike, strictly: the size line,
// its extensions and the trailer fields must follow RFC 9112's grammar (no space before
// the size, no bare CR or LF anywhere), or the body is malformed. Extensions and trailer
// fields are then dropped.
#pragma once

#include <cstddef>
#include <string>

namespace tollgate {

class ChunkedDecoder {
 public:
  enum class State { kNeedMore, kDone, kMalformed, kTooLarge };

  // Decodes from the front of `in` and appends the data to `out`. The bytes used are
  // removed from `in`; on kDone what follows the body (a pipelined message) stays.
  // kTooLarge once the decoded body would pass `max_body` bytes. Call again as more
  // bytes arrive.
  State Decode(std::string& in, std::string& out, size_t max_body = SIZE_MAX);
  void Reset() { *this = ChunkedDecoder(); }
  size_t decoded_bytes() const { return decoded_; }

 private:
  size_t chunk_left_ = 0;       // data bytes still to copy from the current chunk
  bool in_chunk_data_ = false;  // between a size line and its data's CRLF
  bool in_trailers_ = false;
  size_t decoded_ = 0;
};

}  // namespace tollgate
