// Text that may hold a caller's bytes, made safe to show: in an error message, a log line
// or a JSON string. Whatever echoes what a caller sent goes through here, so that no
// answer and no log line carries bytes that are not UTF-8 (and no JSON dump throws on them).
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace tollgate {

// The length of the well-formed UTF-8 sequence `s` starts with (Unicode table 3-7, as
// nlohmann's parser checks: no overlong forms, no surrogates, nothing above U+10FFFF);
// 0 if it starts with none. ASCII is a sequence of 1.
inline size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u; };
  auto in = [](unsigned c, unsigned lo, unsigned hi) { return c >= lo && c <= hi; };
  unsigned b0 = byte(0);
  if (!s.empty() && b0 < 0x80) return 1;
  if (in(b0, 0xC2, 0xDF)) return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  if (in(b0, 0xE0, 0xEF)) {
    unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(b0, 0xF0, 0xF4)) {
    unsigned lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// `bytes` as valid UTF-8: each byte that is not part of a well-formed sequence is
// written as the four characters \xNN (hex, upper case), so the reader sees which byte
// it was. Valid text comes back as it was.
std::string ValidUtf8(std::string_view bytes);

// Valid UTF-8 without control characters, at most `max_bytes` long.
bool IsCleanText(std::string_view s, size_t max_bytes);

// j.dump() that never throws on text: a string that is not valid UTF-8 (a caller's bytes
// that reached a JSON value without passing the parser) has its bad bytes replaced by
// U+FFFD.
std::string DumpJson(const nlohmann::json& j);

}  // namespace tollgate
