// Text made from a caller's bytes: valid UTF-8 always, and JSON dumps that never throw.
#include "config/text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace tollgate {
namespace {

TEST(Text, ValidUtf8KeepsValidTextAndEscapesEveryBadByte) {
  EXPECT_EQ(ValidUtf8("plain /mistral/v1"), "plain /mistral/v1");
  EXPECT_EQ(ValidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(ValidUtf8("/\xff"), "/\\xFF");
  EXPECT_EQ(ValidUtf8("\xff\xfe"), "\\xFF\\xFE");
  // Overlong, surrogate, above U+10FFFF, cut short: each byte escaped, the rest kept.
  EXPECT_EQ(ValidUtf8("a\xC0\xAFz"), "a\\xC0\\xAFz");
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), "\\xED\\xA0\\x80");
  EXPECT_EQ(ValidUtf8("\xF4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");
  EXPECT_EQ(ValidUtf8("x\xE2\x82"), "x\\xE2\\x82");
  EXPECT_EQ(ValidUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));  // valid, if odd
}

TEST(Text, WhatValidUtf8GivesIsWhatTheJsonParserTakes) {
  // Every single byte and every pair of bytes: the result dumps and parses back.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 7) {
      std::string bytes = {static_cast<char>(a), static_cast<char>(b)};
      std::string text = ValidUtf8(bytes);
      std::string dumped = nlohmann::json(text).dump();  // throws on invalid UTF-8
      EXPECT_EQ(nlohmann::json::parse(dumped).get<std::string>(), text);
    }
  }
}

TEST(Text, CleanTextIsValidUtf8WithoutControlCharactersWithinItsLength) {
  EXPECT_TRUE(IsCleanText("service-user-7 \xC3\xA9", 100));
  EXPECT_FALSE(IsCleanText("too long", 3));
  EXPECT_FALSE(IsCleanText("tab\there", 100));
  EXPECT_FALSE(IsCleanText("del\x7f", 100));
  EXPECT_FALSE(IsCleanText("\xff", 100));
  EXPECT_FALSE(IsCleanText("\xED\xA0\x80", 100)) << "a surrogate is not text";
  EXPECT_FALSE(IsCleanText("\xE0\x80\xAF", 100)) << "an overlong form is not text";
  EXPECT_TRUE(IsCleanText("", 0));
}

TEST(Text, DumpJsonNeverThrowsOnBytesThatAreNotUtf8) {
  nlohmann::json j = {{"error", {{"message", std::string("model \xff\xfe")}}}};
  EXPECT_THROW(j.dump(), nlohmann::json::type_error);
  std::string dumped = DumpJson(j);
  EXPECT_EQ(nlohmann::json::parse(dumped)["error"]["message"], "model \xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace tollgate
