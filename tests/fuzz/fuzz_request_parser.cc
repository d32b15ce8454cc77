// The request parser (net/http_request_parser.h) on arbitrary bytes: the first input byte
// picks how the rest is split as it arrives; the outcome must not depend on the split
// (the same requests, the same error), and whatever it accepts keeps its limits.
#include <algorithm>

#include "config/text.h"
#include "net/http_request_parser.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

// Small limits, so that short inputs reach every bound.
constexpr ParserLimits kLimits{
    .max_head_bytes = 1024, .max_headers = 8, .max_body_bytes = 512, .max_target_bytes = 128};

struct Outcome {
  std::vector<std::string> requests;  // each request read, flattened
  int error = 0;                      // the error status that ended the input, if any
  std::string error_message;
  bool operator==(const Outcome&) const = default;
  std::string Describe() const {
    return std::to_string(requests.size()) + " requests, error " + std::to_string(error) + " (" +
           error_message + ")";
  }
};

std::string Flatten(const ParsedRequest& r) {
  std::string out = r.method + ' ' + r.target + ' ' + r.version + '\n';
  for (const auto& [name, value] : r.headers) out += name + ": " + value + '\n';
  out += r.keep_alive ? "keep-alive\n" : "close\n";
  out += r.expect_continue ? "100-continue\n" : "\n";
  return out + r.body;
}

void CheckRequest(const ParsedRequest& r) {
  FUZZ_CHECK(!r.target.empty() && r.target.front() == '/', "the target is a path");
  FUZZ_CHECK(r.target.size() <= kLimits.max_target_bytes, "414 past the target bound");
  FUZZ_CHECK(r.version == "HTTP/1.1" || r.version == "HTTP/1.0", "a version we serve");
  FUZZ_CHECK(r.headers.size() <= kLimits.max_headers, "431 past the header count");
  FUZZ_CHECK(r.body.size() <= kLimits.max_body_bytes, "413 past the body bound");
  for (const auto& [name, value] : r.headers) {
    FUZZ_CHECK(!name.empty(), "a header has a name");
    FUZZ_CHECK(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
               "no CR, LF or NUL in a value");
  }
}

Outcome Run(const std::vector<std::string_view>& pieces) {
  RequestParser parser(kLimits);
  Outcome o;
  std::string in;
  for (std::string_view piece : pieces) {
    in.append(piece);
    for (;;) {
      RequestParser::State s = parser.Parse(in);
      if (s == RequestParser::State::kNeedMore) break;
      if (s == RequestParser::State::kError) {
        o.error = parser.error_status();
        o.error_message = parser.error_message();
        const int known[] = {400, 413, 414, 431, 501, 505};
        FUZZ_CHECK(std::find(std::begin(known), std::end(known), o.error) != std::end(known),
                   "an error status the server answers with");
        FUZZ_CHECK(IsCleanText(o.error_message, 200), "the message echoes no raw bytes");
        return o;
      }
      CheckRequest(parser.request());
      o.requests.push_back(Flatten(parser.request()));
      parser.Reset();
    }
  }
  return o;
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::SameInAnySplit(data, size, tollgate::Run);
  return 0;
}
