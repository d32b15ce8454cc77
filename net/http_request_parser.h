// An incremental HTTP/1.1 request parser for the event-driven server: bytes arrive in
// pieces from a non-blocking socket and are fed here until one request is whole.
// Strict where leniency lets requests be smuggled (Content-Length together with
// Transfer-Encoding, differing Content-Lengths, folded headers), bounded everywhere.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "net/chunked_decoder.h"
#include "net/header_list.h"

namespace tollgate {

struct ParserLimits {
  size_t max_head_bytes = 64 * 1024;  // request line and headers
  size_t max_headers = 128;
  size_t max_body_bytes = 10 * 1024 * 1024;
  size_t max_target_bytes = 8 * 1024;  // path and query; longer gets 414
};

// What the parser read of one request. Valid once Parse() has returned kDone (and,
// for the request line and headers, once head_done() is true).
struct ParsedRequest {
  std::string method;
  std::string target;   // as sent: path and query
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  httplib::Headers headers;
  std::string body;
  bool keep_alive = true;
  bool expect_continue = false;
  // How the body comes, known once the head is in: in chunks (its size unknown until
  // the last), or `content_length` bytes.
  bool chunked = false;
  size_t content_length = 0;
};

// Header field lines ("name: value", CRLF between them) into `out`. Shared by the
// request parser and the upstream client.
struct FieldError {
  int status = 0;  // 0: well formed; 400 malformed; 431 more than max_fields
  std::string message;
};
FieldError ParseFields(std::string_view lines, size_t max_fields, HeaderList* out);
// Whether a comma-separated header (Connection, Expect) lists `token` (lower case).
bool ListsToken(const HeaderList& headers, std::string_view name, std::string_view token);

// How a message's body is framed (RFC 9112 section 6.3), from its header fields; shared
// by the request parser and the upstream client. Refused: Content-Length together with
// Transfer-Encoding, Content-Lengths that differ or are not plain digits (400), and any
// transfer coding but "chunked" alone (501: gzip, chunked would need decoding first).
struct BodyFraming {
  enum class Kind { kNone, kLength, kChunked } kind = Kind::kNone;  // kNone: neither header
  size_t length = 0;                                                // kLength
  FieldError error;
};
BodyFraming ReadBodyFraming(const HeaderList& fields);

class RequestParser {
 public:
  enum class State { kNeedMore, kDone, kError };

  explicit RequestParser(ParserLimits limits) : limits_(limits) {}

  // Reads from the front of `in`; on kDone the request's bytes have been removed from
  // `in` (what follows, a pipelined request, stays). Call again as more bytes arrive.
  State Parse(std::string& in);
  // Ready for the next request on the same connection.
  void Reset();

  bool head_done() const { return head_done_; }
  // True once any byte of a request has been seen (an idle connection has none).
  bool started() const { return head_done_ || scanned_ > 0; }
  ParsedRequest& request() { return request_; }
  const ParsedRequest& request() const { return request_; }
  // On kError: the status to answer with (400, 413, 414, 431, 501, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

 private:
  State Fail(int status, std::string message);
  State TargetTooLong();
  State ParseHead(std::string& in);
  FieldError ReadFraming(const HeaderList& fields, std::string_view version);
  State ParseChunked(std::string& in);

  const ParserLimits limits_;
  ParsedRequest request_;
  bool head_done_ = false;
  size_t scanned_ = 0;  // bytes of `in` already looked at for the end of the head
  size_t head_bytes_ = 0;
  ChunkedDecoder chunked_body_;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace tollgate
