// The chunked decoder (net/chunked_decoder.h) on arbitrary bytes in arbitrary splits: the
// same state, the same body and the same bytes left after it, whatever the split; never
// more than the bound.
#include "net/chunked_decoder.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

constexpr size_t kMaxBody = 1024;

struct Outcome {
  ChunkedDecoder::State state = ChunkedDecoder::State::kNeedMore;
  std::string body;
  std::string after;  // on kDone: what follows the body (a pipelined message)
  bool operator==(const Outcome&) const = default;
  std::string Describe() const {
    return "state " + std::to_string(static_cast<int>(state)) + ", " +
           std::to_string(body.size()) + " bytes of body, " + std::to_string(after.size()) +
           " after";
  }
};

Outcome Run(const std::vector<std::string_view>& pieces) {
  ChunkedDecoder decoder;
  Outcome o;
  std::string in;
  for (size_t i = 0; i < pieces.size(); ++i) {
    in.append(pieces[i]);
    o.state = decoder.Decode(in, o.body, kMaxBody);
    FUZZ_CHECK(o.body.size() <= kMaxBody, "the bound holds");
    FUZZ_CHECK(decoder.decoded_bytes() == o.body.size(), "decoded_bytes counts the body");
    if (o.state == ChunkedDecoder::State::kNeedMore) continue;
    if (o.state == ChunkedDecoder::State::kDone) {
      o.after = in;
      for (size_t j = i + 1; j < pieces.size(); ++j) o.after.append(pieces[j]);
    } else {
      o.body.clear();  // how much was decoded before a broken frame may depend on the split
    }
    return o;
  }
  return o;
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tollgate::fuzz::SameInAnySplit(data, size, tollgate::Run);
  return 0;
}
