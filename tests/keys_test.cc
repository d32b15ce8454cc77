#include "budget/keys.h"

#include <gtest/gtest.h>

#include <set>

namespace tollgate {
namespace {

TEST(Keys, GeneratedKeyHasTheDocumentedShape) {
  GeneratedKey k = GenerateKey();
  EXPECT_TRUE(LooksLikeTollgateKey(k.secret)) << k.secret;
  EXPECT_EQ(k.prefix, k.secret.substr(0, 12));
  EXPECT_EQ(k.hash, HashKey(k.secret));
  EXPECT_EQ(k.hash.size(), 64u);
  EXPECT_EQ(k.hash.find(k.secret), std::string::npos);
}

TEST(Keys, HashIsSha256Hex) {
  EXPECT_EQ(HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Keys, EachHashStartsAfresh) {
  // The digest context is reused: one input must leave nothing behind for the next.
  EXPECT_EQ(HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashKey(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Keys, RandomIdsDoNotRepeatAcrossRefillsOfTheirPool) {
  std::set<std::string> seen;
  for (int i = 0; i < 5000; ++i) {  // 30,000 bytes: the 4 KiB pool refills several times
    std::string id = RandomHex(6);
    ASSERT_EQ(id.size(), 12u);
    EXPECT_TRUE(seen.insert(id).second) << id;
  }
}

TEST(Keys, SecretsDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(GenerateKey().secret).second);
}

TEST(Keys, RecognisesOnlyTollgateKeys) {
  EXPECT_FALSE(LooksLikeTollgateKey("sk-ant-1234"));
  EXPECT_FALSE(LooksLikeTollgateKey("tg-short"));
  EXPECT_FALSE(LooksLikeTollgateKey("tg-" + std::string(43, '!')));
}

}  // namespace
}  // namespace tollgate
