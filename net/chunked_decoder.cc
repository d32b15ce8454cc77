#include "net/chunked_decoder.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

#include "net/header_list.h"

namespace tollgate {
namespace {

constexpr size_t kMaxChunkLine = 1024;

bool IsHexDigit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// RFC 9112 section 7.1.1, to the letter: a lenient reader that another hop reads
// differently (a bare LF ending the line early, a space before the size) is how a
// request is smuggled past it.
//   chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
class ExtensionReader {
 public:
  explicit ExtensionReader(std::string_view s) : s_(s) {}

  bool Valid() {
    while (i_ < s_.size()) {
      SkipSpace();
      if (!Take(';')) return false;
      SkipSpace();
      if (!Token()) return false;
      size_t after_name = i_;
      SkipSpace();
      if (!Take('=')) {
        i_ = after_name;  // the next ';' (after its BWS) or the end
        continue;
      }
      SkipSpace();
      if (!(i_ < s_.size() && s_[i_] == '"' ? QuotedString() : Token())) return false;
    }
    return true;
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool Take(char c) {
    if (i_ >= s_.size() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  bool Token() {
    size_t start = i_;
    while (i_ < s_.size() && IsTokenChar(s_[i_])) ++i_;
    return i_ > start;
  }
  // DQUOTE *( qdtext / "\" any visible or blank byte ) DQUOTE; no control characters.
  bool QuotedString() {
    ++i_;  // the opening quote
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (i_ >= s_.size()) return false;
        c = s_[i_++];
      }
      if (!IsFieldValue(std::string_view(&c, 1))) return false;
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// "name: value", as any header field line.
bool IsTrailerField(std::string_view line) {
  size_t colon = line.find(':');
  return colon != std::string_view::npos && IsToken(line.substr(0, colon)) &&
         IsFieldValue(line.substr(colon + 1));
}

}  // namespace

ChunkedDecoder::State ChunkedDecoder::Decode(std::string& in, std::string& out, size_t max_body) {
  size_t pos = 0;
  // Whatever happens, the bytes looked at are gone from `in` (at most a partial size
  // line stays, so the erase is cheap).
  struct Consume {
    std::string& in;
    size_t& pos;
    ~Consume() { in.erase(0, pos); }
  } consume{in, pos};
  for (;;) {
    if (in_chunk_data_) {
      size_t take = std::min(in.size() - pos, chunk_left_);
      out.append(in, pos, take);
      pos += take;
      chunk_left_ -= take;
      decoded_ += take;
      if (chunk_left_ > 0 || in.size() - pos < 2) return State::kNeedMore;
      if (in.compare(pos, 2, "\r\n") != 0) return State::kMalformed;
      pos += 2;
      in_chunk_data_ = false;
      continue;
    }
    size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos)
      return in.size() - pos > kMaxChunkLine ? State::kMalformed : State::kNeedMore;
    std::string_view line(in.data() + pos, eol - pos);
    if (line.size() > kMaxChunkLine) return State::kMalformed;
    pos = eol + 2;
    if (in_trailers_) {
      if (line.empty()) return State::kDone;
      if (!IsTrailerField(line)) return State::kMalformed;
      continue;
    }
    // The size starts the line: no space before it, hex digits only, then extensions.
    size_t digits =
        static_cast<size_t>(std::find_if_not(line.begin(), line.end(), IsHexDigit) - line.begin());
    if (digits == 0 || digits > 15 || !ExtensionReader(line.substr(digits)).Valid())
      return State::kMalformed;
    size_t size = std::stoull(std::string(line.substr(0, digits)), nullptr, 16);
    if (size == 0) {
      in_trailers_ = true;
      continue;
    }
    if (decoded_ + size > max_body) return State::kTooLarge;
    chunk_left_ = size;
    in_chunk_data_ = true;
  }
}

}  // namespace tollgate
