// Route patterns matched segment by segment.
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

}  // namespace
}  // namespace tollgate
