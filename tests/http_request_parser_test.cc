#include "net/http_request_parser.h"

#include <gtest/gtest.h>

namespace tollgate {
namespace {

using State = RequestParser::State;

ParserLimits Small() { return {.max_head_bytes = 1024, .max_headers = 8, .max_body_bytes = 64}; }

// Feeds `wire` one byte at a time, as the slowest network would.
State FeedByteByByte(RequestParser& p, const std::string& wire, std::string& in) {
  State s = State::kNeedMore;
  for (char c : wire) {
    in += c;
    s = p.Parse(in);
    if (s != State::kNeedMore) break;
  }
  return s;
}

TEST(RequestParser, ReadsALengthFramedRequestArrivingByteByByte) {
  RequestParser p(Small());
  std::string in;
  std::string wire =
      "POST /mistral/v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: "
      "application/json\r\nContent-Length: 7\r\nX-Empty:\r\n\r\n{\"a\":1}";
  ASSERT_EQ(FeedByteByByte(p, wire, in), State::kDone);
  EXPECT_EQ(p.request().method, "POST");
  EXPECT_EQ(p.request().target, "/mistral/v1/chat/completions?x=1");
  EXPECT_EQ(p.request().version, "HTTP/1.1");
  EXPECT_EQ(p.request().body, "{\"a\":1}");
  EXPECT_EQ(p.request().headers.find("content-type")->second, "application/json");
  EXPECT_EQ(p.request().headers.find("X-Empty")->second, "");
  EXPECT_TRUE(p.request().keep_alive);
  EXPECT_TRUE(in.empty());
}

TEST(RequestParser, LeavesAPipelinedRequestInTheBuffer) {
  RequestParser p(Small());
  std::string in =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
  ASSERT_EQ(p.Parse(in), State::kDone);
  EXPECT_EQ(p.request().target, "/a");
  EXPECT_TRUE(p.request().body.empty());
  p.Reset();
  ASSERT_EQ(p.Parse(in), State::kDone);
  EXPECT_EQ(p.request().target, "/b");
  EXPECT_EQ(p.request().body, "hi");
  EXPECT_TRUE(in.empty());
}

TEST(RequestParser, DecodesAChunkedBodyWithExtensionsAndTrailers) {
  RequestParser p(Small());
  std::string in;
  std::string wire =
      "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(FeedByteByByte(p, wire, in), State::kDone);
  EXPECT_EQ(p.request().body, "hello 0123456789");
  EXPECT_EQ(in, "");  // fed byte by byte: nothing past the request was given yet
  RequestParser whole(Small());
  std::string all = wire;
  ASSERT_EQ(whole.Parse(all), State::kDone);
  EXPECT_EQ(whole.request().body, "hello 0123456789");
  EXPECT_EQ(all, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
}

TEST(RequestParser, RefusesWhatCouldSmuggleARequest) {
  struct Case {
    std::string wire;
    int status;
  } cases[] = {
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3 3\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n",
       501},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nA : b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nA: b\x01\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nA: b\nC: d\r\n\r\n", 400},
      {"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"hello\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", 400},
  };
  for (const Case& c : cases) {
    RequestParser p(Small());
    std::string in = c.wire;
    EXPECT_EQ(p.Parse(in), State::kError) << c.wire;
    EXPECT_EQ(p.error_status(), c.status) << c.wire;
    EXPECT_FALSE(p.error_message().empty());
  }
}

TEST(RequestParser, AnHttp11RequestNeedsExactlyOneHost) {
  struct Case {
    std::string wire;
    bool ok;
  } cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHOST: a\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", true},  // HTTP/1.0 had no Host
  };
  for (const Case& c : cases) {
    RequestParser p(Small());
    std::string in = c.wire;
    if (c.ok) {
      EXPECT_EQ(p.Parse(in), State::kDone) << c.wire;
      continue;
    }
    EXPECT_EQ(p.Parse(in), State::kError) << c.wire;
    EXPECT_EQ(p.error_status(), 400) << c.wire;
    EXPECT_NE(p.error_message().find("Host"), std::string::npos) << p.error_message();
  }
}

// The chunk grammar to the letter: what one hop reads leniently another may frame
// differently, and a request is smuggled between them.
TEST(RequestParser, RefusesLooseChunkFraming) {
  const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string body : {
           "5;a\nb\r\nhello\r\n0\r\n\r\n",            // a bare LF in an extension
           "5;a\rb\r\nhello\r\n0\r\n\r\n",            // a bare CR in an extension
           " 5\r\nhello\r\n0\r\n\r\n",                // a space before the size
           "\t5\r\nhello\r\n0\r\n\r\n",               // a tab before the size
           "5 \r\nhello\r\n0\r\n\r\n",                // a space after it, no extension
           "5\nhello\r\n0\r\n\r\n",                   // a size line ended by a bare LF
           "0x5\r\nhello\r\n0\r\n\r\n",               // not hex digits alone
           "5;\r\nhello\r\n0\r\n\r\n",                // an extension without a name
           "5;a=\r\nhello\r\n0\r\n\r\n",              // an extension without its value
           "5;a=\"b\r\nhello\r\n0\r\n\r\n",           // an unterminated quoted value
           "5;a=b c\r\nhello\r\n0\r\n\r\n",           // two values
           "5\r\nhello\r\n0\r\nBad Name: x\r\n\r\n",  // a malformed trailer
           "5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n",      // a bare LF in a trailer
       }) {
    RequestParser p(Small());
    std::string in = head + body;
    EXPECT_EQ(p.Parse(in), State::kError) << body;
    EXPECT_EQ(p.error_status(), 400) << body;
  }
  // What the grammar allows: spaces around ';' and '=', quoted values with escapes.
  RequestParser p(Small());
  std::string in = head + "5 ; a = b ;c=\"q \\\" ;x\";d\r\nhello\r\n000\r\nX-T: 1\r\n\r\n";
  ASSERT_EQ(p.Parse(in), State::kDone) << p.error_message();
  EXPECT_EQ(p.request().body, "hello");
}

TEST(RequestParser, BoundsTheHeadAndTheBody) {
  {
    RequestParser p(Small());  // the length alone is enough: no need to wait for the body
    std::string in = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n";
    EXPECT_EQ(p.Parse(in), State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(Small());
    std::string in =
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n" + std::string(64, 'x');
    EXPECT_EQ(p.Parse(in), State::kDone);
  }
  {
    RequestParser p(Small());
    std::string in = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" +
                     std::string(64, 'x') + "\r\n1\r\n";
    EXPECT_EQ(p.Parse(in), State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(Small());  // a head that never ends is refused once over the bound
    std::string in = "GET / HTTP/1.1\r\nHost: x\r\nA: " + std::string(1100, 'a');
    EXPECT_EQ(p.Parse(in), State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
  {
    RequestParser p(Small());
    std::string in = "GET / HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 9; ++i) in += "H" + std::to_string(i) + ": v\r\n";
    in += "\r\n";
    EXPECT_EQ(p.Parse(in), State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
}

TEST(RequestParser, KnowsWhenTheConnectionStaysOpen) {
  struct Case {
    std::string wire;
    bool keep_alive;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
  };
  for (const Case& c : cases) {
    RequestParser p(Small());
    std::string in = c.wire;
    ASSERT_EQ(p.Parse(in), State::kDone) << c.wire;
    EXPECT_EQ(p.request().keep_alive, c.keep_alive) << c.wire;
  }
}

TEST(RequestParser, SeesExpectContinueOnceTheHeadIsIn) {
  RequestParser p(Small());
  std::string in =
      "\r\nPOST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
  EXPECT_FALSE(p.started());
  EXPECT_EQ(p.Parse(in), State::kNeedMore);
  EXPECT_TRUE(p.head_done());
  EXPECT_TRUE(p.request().expect_continue);
  in += "body";
  EXPECT_EQ(p.Parse(in), State::kDone);
  EXPECT_EQ(p.request().body, "body");
}

TEST(RequestParser, ATargetLongerThanTheLimitIs414EvenBeforeTheHeadEnds) {
  ParserLimits limits{.max_target_bytes = 100};
  RequestParser at_limit(limits);
  std::string in = "GET /" + std::string(99, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(at_limit.Parse(in), State::kDone);

  RequestParser over(limits);
  in = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n";
  ASSERT_EQ(over.Parse(in), State::kError);
  EXPECT_EQ(over.error_status(), 414);
  EXPECT_EQ(over.error_message(), "request target is longer than 100 bytes");

  // A request line still coming: refused once it is past any target allowed, not
  // after 64 KiB of it.
  RequestParser endless(limits);
  in = "POST /reset/" + std::string(120, 'A');
  EXPECT_EQ(endless.Parse(in), State::kNeedMore);
  in += std::string(100, 'A');
  ASSERT_EQ(endless.Parse(in), State::kError);
  EXPECT_EQ(endless.error_status(), 414);
}

// Found by tests/fuzz/fuzz_request_parser, which holds the parser to one outcome however
// the bytes arrive: the same input gave one answer whole and another in pieces.
TEST(RequestParser, ReadsTheSameWhateverTheSplit) {
  // Empty lines before a request are skipped, their CR and LF arriving apart too (they
  // were a 400 "malformed request line" then).
  for (const std::string& wire : {std::string("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")}) {
    RequestParser whole(Small());
    std::string in = wire;
    EXPECT_EQ(whole.Parse(in), State::kDone);
    RequestParser bytes(Small());
    in.clear();
    ASSERT_EQ(FeedByteByByte(bytes, wire, in), State::kDone);
    EXPECT_EQ(bytes.request().target, "/");
  }
  // A request line past any target allowed is a 414 whether its head is whole or not (it
  // was a 400 whole), and one just at the bound whose CR came alone is not (it was a 414).
  ParserLimits limits{.max_target_bytes = 100};
  std::string junk = std::string(300, '\xff') + "\r\n\r\n";
  RequestParser whole(limits);
  std::string in = junk;
  ASSERT_EQ(whole.Parse(in), State::kError);
  EXPECT_EQ(whole.error_status(), 414);
  RequestParser at_bound(limits);
  in = std::string(164, '\xff') + "\r";  // the bound: target and 64 bytes of method and version
  EXPECT_EQ(at_bound.Parse(in), State::kNeedMore);
  in += "\n\r\n";
  ASSERT_EQ(at_bound.Parse(in), State::kError);
  EXPECT_EQ(at_bound.error_status(), 400);
}

// Header fields in order, found whatever the case of their names.
TEST(HeaderList, FindsCountsAndErasesFieldsWhateverTheirCase) {
  std::string lines =
      "Content-Type: application/json\r\nconnection: Keep-Alive, Upgrade\r\nSet-Cookie: a=1\r\n"
      "set-cookie: b=2\r\nX-Caret: ^";
  HeaderList list;
  ASSERT_EQ(ParseFields(lines, 8, &list).status, 0);
  EXPECT_EQ(list.size(), 5u);
  ASSERT_NE(list.Find("CONTENT-TYPE"), nullptr);
  EXPECT_EQ(*list.Find("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(list.Find("Content-Typ"), nullptr);
  EXPECT_EQ(list.Count("Set-Cookie"), 2u);
  EXPECT_EQ(*list.Find("set-COOKIE"), "a=1");  // the first, as it came
  // Only letters fold: '^' and '~' differ by the bit that folds case.
  EXPECT_TRUE(EqualsIgnoreCase("X-Caret", "x-caRET"));
  EXPECT_FALSE(EqualsIgnoreCase("a^", "a~"));
  EXPECT_FALSE(EqualsIgnoreCase("a@", "a`"));
  EXPECT_TRUE(ListsToken(list, "CONNECTION", "keep-alive"));
  EXPECT_TRUE(ListsToken(list, "Connection", "upgrade"));
  EXPECT_FALSE(ListsToken(list, "Connection", "close"));
  EXPECT_FALSE(ListsToken(list, "Content-Type", "upgrade"));
  EXPECT_TRUE(IsOneOf("connection", {"Host", "Connection"}));
  EXPECT_FALSE(IsOneOf("Connections", {"Host", "Connection"}));
  EXPECT_EQ(list.Erase("SET-cookie"), 2u);
  EXPECT_EQ(list.Count("Set-Cookie"), 0u);
  EXPECT_EQ(list.size(), 3u);
  EXPECT_EQ(ParseFields("Bad Name: x", 8, &list).status, 400);
  EXPECT_EQ(ParseFields("A: 1\r\nB: 2", 1, &list).status, 431);
}

}  // namespace
}  // namespace tollgate
