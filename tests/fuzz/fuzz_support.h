// What the fuzz targets share: cutting one input into the pieces a socket might deliver,
// and stopping the run (a finding) when a property does not hold.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::fuzz {

// The bytes of a libFuzzer input.
inline std::string_view Bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Cuts `bytes` into pieces of 1 to 2^(seed % 8) bytes, sizes drawn from `seed`; seed 0
// keeps it whole. A target that takes its first input byte as the seed sees the same
// bytes arrive in many splits, and can compare the outcome with the whole's.
inline std::vector<std::string_view> Pieces(std::string_view bytes, uint8_t seed) {
  if (seed == 0 || bytes.empty()) return {bytes};
  std::vector<std::string_view> out;
  uint32_t state = 0x9E3779B9u ^ seed;
  const uint32_t most = 1u << (seed % 8);
  while (!bytes.empty()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    size_t n = std::min<size_t>(bytes.size(), 1 + state % most);
    out.push_back(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  return out;
}

// A property that must hold for every input; its failure is a finding (abort, so that
// libFuzzer keeps the input and reports it).
#define FUZZ_CHECK(cond, what)                                                            \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, \
                   #cond, what);                                                          \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

// Runs `run` (pieces -> an outcome with == and Describe()) on the input after its first
// byte, whole and cut as that byte says: a finding if the outcomes differ.
template <typename Run>
void SameInAnySplit(const uint8_t* data, size_t size, Run run) {
  if (size == 0) return;
  std::string_view bytes = Bytes(data + 1, size - 1);
  auto whole = run(std::vector<std::string_view>{bytes});
  auto split = run(Pieces(bytes, data[0]));
  if (!(whole == split)) {
    std::fprintf(stderr, "whole: %s\nsplit: %s\n", whole.Describe().c_str(),
                 split.Describe().c_str());
  }
  FUZZ_CHECK(whole == split, "the same bytes read the same in any split");
}

}  // namespace tollgate::fuzz
