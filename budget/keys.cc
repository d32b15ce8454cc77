#include "budget/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace tollgate {
namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr size_t kSecretChars = 43;  // 43 x log2(62) > 256 bits

void RandomBytes(unsigned char* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}

// Random bytes for ids (which are public), drawn from OpenSSL's RNG 4 KiB at a time per
// thread: one RAND_bytes call costs ~7,000 instructions, and a request id needs 6 bytes.
// Secrets (GenerateKey) take theirs straight from RAND_bytes.
void IdBytes(unsigned char* out, size_t n) {
  constexpr size_t kPool = 4096;
  thread_local unsigned char pool[kPool];
  thread_local size_t used = kPool;
  if (n > kPool) return RandomBytes(out, n);
  if (kPool - used < n) {
    RandomBytes(pool, kPool);
    used = 0;
  }
  std::memcpy(out, pool + used, n);
  used += n;
}

// SHA-256 fetched once; a digest context per thread, reused.
const EVP_MD* Sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md != nullptr ? md : EVP_sha256();
}

}  // namespace

std::string HexEncode(const unsigned char* data, size_t n) {
  static const char* hex = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = hex[data[i] >> 4];
    out[2 * i + 1] = hex[data[i] & 15];
  }
  return out;
}

std::string HashKey(const std::string& secret) {
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           &EVP_MD_CTX_free);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), Sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), secret.data(), secret.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1)
    throw std::runtime_error("SHA-256 failed");
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
  IdBytes(raw.data(), bytes);
  return HexEncode(raw.data(), bytes);
}

}  // namespace tollgate
