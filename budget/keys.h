// tollgate keys: "tg-" + 43 base62 characters (256 bits from OpenSSL's RNG). Only the
// SHA-256 hash is stored; the first 12 characters are kept for display.
#pragma once

#include <string>

namespace tollgate {

struct GeneratedKey {
  std::string secret;  // shown once, never stored
  std::string hash;    // lowercase hex SHA-256 of the secret
  std::string prefix;  // "tg-" + 9 characters
};

GeneratedKey GenerateKey();
std::string HashKey(const std::string& secret);
bool LooksLikeTollgateKey(const std::string& text);
// Lowercase hex of raw bytes.
std::string HexEncode(const unsigned char* data, size_t n);
// A random opaque id (hex), e.g. for request ids.
std::string RandomHex(size_t bytes);

}  // namespace tollgate
