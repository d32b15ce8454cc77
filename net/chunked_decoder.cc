#include "net/chunked_decoder.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

namespace tollgate {
namespace {

constexpr size_t kMaxChunkLine = 1024;

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
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
      continue;  // a trailer field
    }
    std::string_view digits = TrimSpaces(line.substr(0, line.find(';')));
    if (digits.empty() || digits.size() > 15 ||
        !std::all_of(digits.begin(), digits.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }))
      return State::kMalformed;
    size_t size = std::stoull(std::string(digits), nullptr, 16);
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
