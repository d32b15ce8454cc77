// The configuration readers (config/) on arbitrary bytes: the JSONC reader, LoadConfig's
// reading of a whole file body, and the pricing table's. Bad input is an error naming
// the field, never a crash; an error message holds only text (it reaches a terminal).
#include <unistd.h>

#include <fstream>

#include "config/config.h"
#include "config/jsonc.h"
#include "config/pricing.h"
#include "config/text.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tollgate;
  static const std::string dir = [] {
    char templ[] = "/tmp/tollgate-fuzz-config.XXXXXX";
    return std::string(mkdtemp(templ));
  }();
  static const std::string path = dir + "/tollgate.json";
  std::string text(fuzz::Bytes(data, size));

  auto tree = ParseJsonc(text, "fuzz");
  if (!tree.ok()) FUZZ_CHECK(!tree.status().message().empty(), "a parse error says why");

  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  auto config = LoadConfig(path, {});
  if (!config.ok()) FUZZ_CHECK(!config.status().message().empty(), "a config error says why");

  auto pricing = PricingTable::Parse(text, "pricing.json");
  if (!pricing.ok()) FUZZ_CHECK(!pricing.status().message().empty(), "a pricing error says why");
  return 0;
}
