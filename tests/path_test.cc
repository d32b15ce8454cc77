// Route patterns matched segment by segment, and the paths the proxy passes on.
#include "net/path.h"

#include <gtest/gtest.h>

namespace tollgate {
namespace {

TEST(PathPattern, LiteralSegmentsAndStarsMatchTheWholePath) {
  PathPattern reset("/api/v1/budget/admin/reset/*");
  EXPECT_TRUE(reset.Matches("/api/v1/budget/admin/reset/42"));
  EXPECT_TRUE(reset.Matches("/api/v1/budget/admin/reset/%2e%2e"));  // a segment, as sent
  EXPECT_FALSE(reset.Matches("/api/v1/budget/admin/reset/"));       // * is never empty
  EXPECT_FALSE(reset.Matches("/api/v1/budget/admin/reset"));
  EXPECT_FALSE(reset.Matches("/api/v1/budget/admin/reset/42/"));
  EXPECT_FALSE(reset.Matches("/api/v1/budget/admin/reset/4/2"));
  EXPECT_FALSE(reset.Matches("/api/v1/budget/admin/resets/42"));
  EXPECT_FALSE(reset.Matches("api/v1/budget/admin/reset/42"));
  EXPECT_FALSE(reset.Matches(""));

  PathPattern disable("/users/*/disable");
  EXPECT_TRUE(disable.Matches("/users/7/disable"));
  EXPECT_FALSE(disable.Matches("/users//disable"));
  EXPECT_FALSE(disable.Matches("/users/7/enable"));

  PathPattern plain("/healthz");
  EXPECT_TRUE(plain.Matches("/healthz"));
  EXPECT_FALSE(plain.Matches("/healthz/"));
  EXPECT_FALSE(plain.Matches("/healthzz"));
}

TEST(PathPattern, ASegmentOfAMillionBytesIsMatchedWithoutRecursion) {
  // std::regex_match recursed per character here: 40,000 bytes overflowed a stack.
  std::string id(1'000'000, 'A');
  EXPECT_TRUE(PathPattern("/reset/*").Matches("/reset/" + id));
  EXPECT_EQ(PathSegment("/reset/" + id, 1).size(), id.size());
}

TEST(PathPattern, PathSegmentGivesWhatAStarStoodFor) {
  EXPECT_EQ(PathSegment("/api/v1/budget/admin/users/42/disable", 5), "42");
  EXPECT_EQ(PathSegment("/items/7", 0), "items");
  EXPECT_EQ(PathSegment("/items/7", 1), "7");
  EXPECT_EQ(PathSegment("/items/7", 2), "");
  EXPECT_EQ(PathSegment("", 0), "");
}

TEST(PlainPath, DotSegmentsInAnySpellingAreNotPlain) {
  for (const char* path :
       {"/mistral/v1/models/../files", "/mistral/v1/models/%2e%2e/files",
        "/mistral/v1/models/%2E%2E/files", "/mistral/v1/models/%2e%2E/files",
        "/mistral/v1/models/.%2e/files", "/mistral/v1/models/%2e./files", "/mistral/v1/models/..",
        "/mistral/v1/models/%2e%2e", "/mistral/./v1/models", "/mistral/v1/%2e/models",
        "/mistral/v1/%2E/models", "/mistral/v1/models/.", "/../mistral/v1/models"}) {
    EXPECT_FALSE(IsPlainPath(path)) << path;
  }
}

TEST(PlainPath, EncodedSlashesAndBackslashesAreNotPlain) {
  for (const char* path :
       {"/mistral/v1/models/a%2fb", "/mistral/v1/models/a%2Fb", "/mistral/v1/models%2f..%2ffiles",
        "/mistral/v1/models/a%5cb", "/mistral/v1/models/a%5Cb", "/mistral/v1/models/..\\files",
        "/mistral/v1/models\\x"}) {
    EXPECT_FALSE(IsPlainPath(path)) << path;
  }
}

TEST(PlainPath, OrdinaryPathsArePlain) {
  for (const char* path :
       {"/mistral/v1/chat/completions", "/mistral/v1/models/mistral-large-2411",
        "/mistral/v1/models/ft:open-mistral-7b:abc.1", "/ollama/v1/models/llama3.2",
        "/mistral/v1/models/...", "/mistral/v1/models/.hidden", "/mistral/v1/models/a..b",
        "/mistral/v1/models/%2e%2e%2e", "/mistral/v1/models/caf%C3%A9", "/mistral/v1/x%25"}) {
    EXPECT_TRUE(IsPlainPath(path)) << path;
  }
}

}  // namespace
}  // namespace tollgate
