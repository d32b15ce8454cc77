#include "net/http_request_parser.h"

#include <algorithm>
#include <string_view>

namespace tollgate {
namespace {

// Room on a request line for the method, the version and the spaces around the target.
constexpr size_t kMethodAndVersionBytes = 64;


std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ValueListsToken(std::string_view value, std::string_view token) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = std::min(value.find(',', pos), value.size());
    if (EqualsIgnoreCase(TrimOws(value.substr(pos, comma - pos)), token)) return true;
    pos = comma + 1;
  }
  return false;
}

}  // namespace

bool ListsToken(const HeaderList& headers, std::string_view name, std::string_view token) {
  return std::any_of(headers.begin(), headers.end(), [&](const HeaderList::Field& field) {
    return EqualsIgnoreCase(field.first, name) && ValueListsToken(field.second, token);
  });
}

FieldError ParseFields(std::string_view lines, size_t max_fields, HeaderList* out) {
  out->Reserve(16);  // a request's or an answer's usual few, without regrowing
  size_t pos = 0;
  size_t count = 0;
  while (pos < lines.size()) {
    size_t next = std::min(lines.find("\r\n", pos), lines.size());
    std::string_view field = lines.substr(pos, next - pos);
    pos = next + 2;
    if (field.empty() || field.front() == ' ' || field.front() == '\t')
      return {400, "folded header lines are not accepted"};
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || !IsToken(field.substr(0, colon)))
      return {400, "malformed header line"};
    std::string_view value = TrimOws(field.substr(colon + 1));
    if (!IsFieldValue(value)) return {400, "header value holds control characters"};
    if (++count > max_fields) return {431, "more than " + std::to_string(max_fields) + " headers"};
    out->Add(std::string(field.substr(0, colon)), std::string(value));
  }
  return {};
}

RequestParser::State RequestParser::TargetTooLong() {
  return Fail(
      414, "request target is longer than " + std::to_string(limits_.max_target_bytes) + " bytes");
}

BodyFraming ReadBodyFraming(const HeaderList& h) {
  BodyFraming f;
  size_t encodings = h.Count("Transfer-Encoding");
  size_t lengths = h.Count("Content-Length");
  if (encodings > 0) {
    if (lengths > 0) {
      f.error = {400, "both Content-Length and Transfer-Encoding are present"};
    } else if (encodings > 1 || !EqualsIgnoreCase(*h.Find("Transfer-Encoding"), "chunked")) {
      f.error = {501, "only Transfer-Encoding: chunked is supported"};
    }
    f.kind = BodyFraming::Kind::kChunked;
    return f;
  }
  if (lengths == 0) return f;
  const std::string& first = *h.Find("Content-Length");
  for (const auto& [name, value] : h) {
    if (EqualsIgnoreCase(name, "Content-Length") && value != first)
      f.error = {400, "differing Content-Length headers"};
  }
  if (first.empty() || first.size() > 18 ||
      !std::all_of(first.begin(), first.end(), [](char c) { return c >= '0' && c <= '9'; }))
    f.error = {400, "malformed Content-Length"};
  f.kind = BodyFraming::Kind::kLength;
  if (f.error.status == 0) f.length = std::stoull(first);
  return f;
}

RequestParser::State RequestParser::Fail(int status, std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return State::kError;
}

void RequestParser::Reset() {
  request_ = ParsedRequest{};
  head_done_ = false;
  scanned_ = head_bytes_ = 0;
  chunked_body_.Reset();
  error_status_ = 0;
  error_message_.clear();
}

RequestParser::State RequestParser::Parse(std::string& in) {
  if (error_status_ != 0) return State::kError;
  if (!head_done_) {
    State s = ParseHead(in);
    if (s != State::kDone) return s;
    in.erase(0, head_bytes_);  // the head lives on in request_
  }
  if (request_.chunked) return ParseChunked(in);
  if (in.size() < request_.content_length) return State::kNeedMore;
  request_.body.assign(in, 0, request_.content_length);
  in.erase(0, request_.content_length);
  return State::kDone;
}

RequestParser::State RequestParser::ParseHead(std::string& in) {
  // Empty lines before a request line are ignored (RFC 9112 section 2.2), however their
  // bytes arrive: a request line never starts with CR.
  size_t skip = 0;
  while (in.compare(skip, 2, "\r\n") == 0) skip += 2;
  if (skip > 0) {
    in.erase(0, skip);
    scanned_ = scanned_ > skip ? scanned_ - skip : 0;
  }
  size_t end = in.find("\r\n\r\n", scanned_ >= 3 ? scanned_ - 3 : 0);
  if (end == std::string::npos || end + 4 > limits_.max_head_bytes) {
    // A request line longer than any target allowed: 414 now, not 431 once 64 KiB are in.
    // (A last CR may be the start of the line's CRLF.)
    if (in.size() > limits_.max_target_bytes + kMethodAndVersionBytes &&
        std::min(in.find("\r\n"), in.size() - in.ends_with('\r')) >
            limits_.max_target_bytes + kMethodAndVersionBytes)
      return TargetTooLong();
    scanned_ = in.size();
    if (in.size() > limits_.max_head_bytes || end != std::string::npos)
      return Fail(431, "request headers are larger than " + std::to_string(limits_.max_head_bytes) +
                           " bytes");
    return State::kNeedMore;
  }
  head_bytes_ = end + 4;
  std::string_view head(in.data(), end);

  size_t eol = std::min(head.find("\r\n"), head.size());
  // As above, whether the head came at once or in pieces.
  if (eol > limits_.max_target_bytes + kMethodAndVersionBytes) return TargetTooLong();
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return Fail(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return Fail(400, "malformed request method");
  if (target.size() > limits_.max_target_bytes) return TargetTooLong();
  if (target.empty() || target.front() != '/' ||
      std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
    return Fail(400, "malformed request target");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return version.substr(0, 5) == "HTTP/" ? Fail(505, "only HTTP/1.0 and HTTP/1.1 are served")
                                           : Fail(400, "malformed request line");
  }
  request_.method = method;
  request_.target = target;
  request_.version = version;

  // Read and checked as a flat list, then kept as the map handlers take.
  HeaderList fields;
  FieldError bad =
      ParseFields(head.substr(std::min(eol + 2, head.size())), limits_.max_headers, &fields);
  if (bad.status != 0) return Fail(bad.status, std::move(bad.message));
  bad = ReadFraming(fields, version);
  // RFC 9112 section 3.2: a server must refuse an HTTP/1.1 request without Host, and
  // any request with more than one.
  size_t hosts = fields.Count("Host");
  if (bad.status == 0 && (hosts > 1 || (hosts == 0 && version == "HTTP/1.1")))
    bad = {400, "a request needs exactly one Host header"};
  request_.keep_alive = version == "HTTP/1.1" ? !ListsToken(fields, "Connection", "close")
                                              : ListsToken(fields, "Connection", "keep-alive");
  request_.expect_continue = version == "HTTP/1.1" && ListsToken(fields, "Expect", "100-continue");
  for (auto& [name, value] : fields.Release())
    request_.headers.emplace(std::move(name), std::move(value));
  if (bad.status != 0) return Fail(bad.status, std::move(bad.message));
  head_done_ = true;
  return State::kDone;
}

// How the body is framed: chunked, or Content-Length (0 when neither).
FieldError RequestParser::ReadFraming(const HeaderList& h, std::string_view version) {
  BodyFraming framing = ReadBodyFraming(h);
  if (framing.error.status != 0) return framing.error;
  if (framing.kind == BodyFraming::Kind::kChunked) {
    if (version == "HTTP/1.0") return {400, "chunked bodies need HTTP/1.1"};
    request_.chunked = true;
  } else if (framing.length > limits_.max_body_bytes) {
    return {413,
            "request body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes"};
  } else {
    request_.content_length = framing.length;
  }
  return {};
}

RequestParser::State RequestParser::ParseChunked(std::string& in) {
  switch (chunked_body_.Decode(in, request_.body, limits_.max_body_bytes)) {
    case ChunkedDecoder::State::kNeedMore:
      return State::kNeedMore;
    case ChunkedDecoder::State::kDone:
      return State::kDone;
    case ChunkedDecoder::State::kTooLarge:
      return Fail(
          413, "request body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes");
    case ChunkedDecoder::State::kMalformed:
      break;
  }
  return Fail(400, "malformed chunked body");
}

}  // namespace tollgate
