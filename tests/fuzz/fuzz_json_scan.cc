// ScanObject and ReadRequestBytes (providers/json_bounded.h, the hot path's reading of a
// request without a tree) held to nlohmann's verdict on the same bytes: whenever the scan
// accepts, the parser must take the document and build exactly the members the scan
// read, and the request facts read from the bytes must be those read from the tree.
// A disagreement is a finding: the gate would price a request other than the one sent.
#include "providers/json_bounded.h"
#include "providers/provider.h"
#include "tests/fuzz/fuzz_support.h"

namespace tollgate {
namespace {

using nlohmann::json;

void CheckScan(std::string_view text) {
  auto members = ScanObject(text);
  if (!members) return;
  std::string error;
  auto parsed = ParseJsonBounded(text, &error);
  FUZZ_CHECK(parsed.has_value(), "the parser takes what the scan took");
  FUZZ_CHECK(parsed->is_object(), "an object");
  FUZZ_CHECK(NoMemberDropped(text, *parsed), "no key repeats in what the scan took");
  FUZZ_CHECK(parsed->size() == members->size(), "the same members");
  for (const ScannedMember& m : *members) {
    auto it = parsed->find(std::string(m.key));
    FUZZ_CHECK(it != parsed->end(), "a member the parser has");
    auto value = ParseJsonBounded(m.value, &error);
    FUZZ_CHECK(value.has_value() && *value == *it, "the member's value as the parser reads it");
    const char kind = it->is_object()   ? '{'
                      : it->is_array()  ? '['
                      : it->is_string() ? '"'
                      : it->is_null()   ? 'n'
                      : it->is_number() ? '0'
                                        : (it->get<bool>() ? 't' : 'f');
    FUZZ_CHECK(m.kind == kind, "the member's kind");
    FUZZ_CHECK(m.text_bytes == PromptTextBytes(*it), "the member's prompt bytes");
    FUZZ_CHECK(m.elements == (it->is_array() ? static_cast<int64_t>(it->size()) : 0),
               "the member's element count");
  }
}

void CheckPlainInteger(std::string_view text) {
  auto n = PlainInteger(text);
  if (!n) return;
  std::string error;
  auto parsed = ParseJsonBounded(text, &error);
  FUZZ_CHECK(parsed && parsed->is_number_integer() && parsed->get<int64_t>() == *n,
             "a plain integer reads as the parser reads it");
}

// As tests/providers_test.cc's ReadsAsTheParserDoes, with a finding on any difference.
void CheckRequestBytes(const Provider& p, const Route& route, std::string_view body) {
  auto fast = p.ReadRequestBytes(route, body);
  if (!fast) return;
  std::string error;
  auto parsed = ParseJsonBounded(body, &error);
  FUZZ_CHECK(parsed.has_value(), "the parser takes the body ReadRequestBytes read");
  FUZZ_CHECK(NoMemberDropped(body, *parsed), "no key repeats");
  auto full = p.ReadRequest(route, *parsed);
  FUZZ_CHECK(full.ok(), "ReadRequest takes the body ReadRequestBytes read");
  FUZZ_CHECK(fast->model == full->model, "model");
  FUZZ_CHECK(fast->stream == full->stream, "stream");
  FUZZ_CHECK(fast->max_output_tokens == full->max_output_tokens, "max output");
  FUZZ_CHECK(std::string_view(fast->max_output_field) == full->max_output_field,
             "max output field");
  FUZZ_CHECK(fast->input_tokens_estimate == full->input_tokens_estimate, "input estimate");
  FUZZ_CHECK(fast->end_user == full->end_user, "end user");
  FUZZ_CHECK(fast->client_asked_usage == full->client_asked_usage, "include_usage");
  json before = *parsed;
  FUZZ_CHECK(!p.Rewrite(route, *full, std::nullopt, &*parsed).changed,
             "a body read from its bytes goes upstream unchanged");
  FUZZ_CHECK(*parsed == before, "Rewrite left the tree as it was");
}

}  // namespace
}  // namespace tollgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  static const auto chats = [] {
    std::vector<std::pair<const Provider*, Route>> out;
    for (auto [name, path] : {std::pair{"mistral", "v1/chat/completions"},
                              std::pair{"mistral", "v1/fim/completions"},
                              std::pair{"deepseek", "chat/completions"},
                              std::pair{"ollama", "v1/chat/completions"},
                              std::pair{"ollama", "api/chat"}, std::pair{"anthropic", "v1/messages"}})
      out.emplace_back(FindProvider(name), *FindProvider(name)->Match("POST", path));
    return out;
  }();
  std::string_view text = fuzz::Bytes(data, size);
  CheckScan(text);
  CheckPlainInteger(text);
  for (const auto& [provider, route] : chats) CheckRequestBytes(*provider, route, text);
  return 0;
}
