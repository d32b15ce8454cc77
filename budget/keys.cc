#include "budget/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

namespace tollgate {
namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr size_t kSecretChars = 43;  // 43 x log2(62) > 256 bits

void RandomBytes(unsigned char* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}

}  // namespace

std::string HexEncode(const unsigned char* data, size_t n) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += hex[data[i] >> 4];
    out += hex[data[i] & 15];
  }
  return out;
}

std::string HashKey(const std::string& secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(secret.data(), secret.size(), digest, &len, EVP_sha256(), nullptr);
  return HexEncode(digest, len);
}

GeneratedKey GenerateKey() {
  GeneratedKey k;
  k.secret = "tg-";
  // Rejection sampling keeps every character uniformly likely.
  while (k.secret.size() < 3 + kSecretChars) {
    unsigned char buf[64];
    RandomBytes(buf, sizeof buf);
    for (unsigned char b : buf) {
      if (b < 248 && k.secret.size() < 3 + kSecretChars) k.secret += kBase62[b % 62];
    }
  }
  k.hash = HashKey(k.secret);
  k.prefix = k.secret.substr(0, 12);
  return k;
}

bool LooksLikeTollgateKey(const std::string& text) {
  if (text.size() != 3 + kSecretChars || text.rfind("tg-", 0) != 0) return false;
  for (size_t i = 3; i < text.size(); ++i) {
    char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  }
  return true;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  RandomBytes(raw.data(), bytes);
  return HexEncode(raw.data(), bytes);
}

}  // namespace tollgate
