// Each provider's usage readers (providers/*.h) on arbitrary bytes: UsageFromAnswer on a
// whole answer, held to a full parse of the same bytes where the parser takes them, and
// the stream observer fed the bytes in arbitrary splits, which must relay the same bytes
// and read the same usage as when fed them whole. The first input byte picks the route,
// the split and whether the usage chunk is hidden.
#include "providers/anthropic.h"
#include "providers/json_bounded.h"
#include "providers/ollama_native.h"
#include "providers/openai_style.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

using nlohmann::json;

bool SameUsage(const Usage& a, const Usage& b) {
  return a.input_tokens == b.input_tokens && a.output_tokens == b.output_tokens &&
         a.cache_read_tokens == b.cache_read_tokens &&
         a.cache_write_5m_tokens == b.cache_write_5m_tokens &&
         a.cache_write_1h_tokens == b.cache_write_1h_tokens &&
         a.reasoning_tokens == b.reasoning_tokens && a.reported == b.reported;
}

void CheckCounts(const Usage& u) {
  FUZZ_CHECK(u.input_tokens >= 0 && u.output_tokens >= 0 && u.cache_read_tokens >= 0 &&
                 u.cache_write_5m_tokens >= 0 && u.cache_write_1h_tokens >= 0 &&
                 u.reasoning_tokens >= 0,
             "usage never pays back");
}

struct Surface {
  const Provider* provider;
  Route route;
  enum { kOpenAI, kAnthropic, kOllama } format;
};

// What a full parse of the answer reads, where the parser takes it; nullopt otherwise.
std::optional<Usage> FromTree(const Surface& s, std::string_view answer) {
  std::string error;
  auto tree = ParseJsonBounded(answer, &error);
  if (!tree || !tree->is_object()) return std::nullopt;
  switch (s.format) {
    case Surface::kOpenAI: {
      auto it = tree->find("usage");
      if (it == tree->end()) return Usage{};
      if (!it->is_object()) return std::nullopt;  // not an object: no usage, not compared
      return openai_style::ReadUsage(*it);
    }
    case Surface::kAnthropic: {
      Usage u;
      if (tree->contains("usage")) anthropic::MergeUsage((*tree)["usage"], &u);
      return u;
    }
    case Surface::kOllama:
      return ollama_native::ReadUsage(*tree);
  }
  return std::nullopt;
}

struct Relayed {
  std::string bytes;
  Usage usage;
  bool finished = false, upstream_error = false;
  int64_t text_bytes = 0;
};

Relayed Observe(const Surface& s, bool hide, const std::vector<std::string_view>& pieces) {
  auto observer = s.provider->ObserveStream(s.route, hide);
  Relayed r;
  for (std::string_view piece : pieces) r.bytes += observer->Feed(piece);
  r.bytes += observer->Flush();
  r.usage = observer->usage();
  r.finished = observer->finished();
  r.upstream_error = observer->upstream_error();
  r.text_bytes = observer->relayed_text_bytes();
  CheckCounts(r.usage);
  FUZZ_CHECK(r.text_bytes >= 0, "text counted");
  return r;
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  static const auto surfaces = [] {
    std::vector<Surface> out;
    auto add = [&](const char* name, const char* path, auto format) {
      const Provider* p = FindProvider(name);
      out.push_back({p, *p->Match("POST", path), format});
    };
    add("mistral", "v1/chat/completions", Surface::kOpenAI);
    add("deepseek", "chat/completions", Surface::kOpenAI);
    add("ollama", "v1/chat/completions", Surface::kOpenAI);
    add("anthropic", "v1/messages", Surface::kAnthropic);
    add("ollama", "api/chat", Surface::kOllama);
    add("ollama", "api/generate", Surface::kOllama);
    return out;
  }();
  if (size < 2) return 0;
  const Surface& s = surfaces[data[0] % surfaces.size()];
  bool hide = data[0] & 0x80;
  std::string_view bytes = fuzz::Bytes(data + 2, size - 2);

  Usage answer = s.provider->UsageFromAnswer(s.route, bytes);
  CheckCounts(answer);
  if (auto expected = FromTree(s, bytes))
    FUZZ_CHECK(SameUsage(answer, *expected), "the answer's usage as a full parse reads it");

  Relayed whole = Observe(s, hide, {bytes});
  Relayed split = Observe(s, hide, fuzz::Pieces(bytes, data[1]));
  FUZZ_CHECK(whole.bytes == split.bytes, "the same bytes relayed in any split");
  FUZZ_CHECK(SameUsage(whole.usage, split.usage), "the same usage in any split");
  FUZZ_CHECK(whole.finished == split.finished && whole.upstream_error == split.upstream_error,
             "the same end in any split");
  FUZZ_CHECK(whole.text_bytes == split.text_bytes, "the same text counted in any split");
  if (!hide) FUZZ_CHECK(whole.bytes == bytes, "nothing held back unless the usage chunk is");
  return 0;
}
