#include "config/text.h"

#include <nlohmann/json.hpp>

namespace tollgate {

std::string ValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  while (!bytes.empty()) {
    size_t n = Utf8SequenceLength(bytes);
    if (n == 0) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      auto b = static_cast<unsigned char>(bytes.front());
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
      n = 1;
    } else {
      out.append(bytes.substr(0, n));
    }
    bytes.remove_prefix(n);
  }
  return out;
}

bool IsCleanText(std::string_view s, size_t max_bytes) {
  if (s.size() > max_bytes) return false;
  while (!s.empty()) {
    size_t n = Utf8SequenceLength(s);
    auto c = static_cast<unsigned char>(s.front());
    if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7F))) return false;
    s.remove_prefix(n);
  }
  return true;
}

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tollgate
