// Tests for Endpoint formatting and parsing of endpoints and endpoint lists.
#include "discovery/endpoint.h"

#include <gtest/gtest.h>

namespace pgkeel::discovery {
namespace {

// A host with a port parses into both parts.
TEST(Endpoint, ParsesHostAndPort) {
  EXPECT_EQ(parseEndpoint("db-0.example.svc:6543"), (Endpoint{"db-0.example.svc", 6543}));
  EXPECT_EQ(parseEndpoint("127.0.0.1:5433"), (Endpoint{"127.0.0.1", 5433}));
  EXPECT_EQ(parseEndpoint("h:1"), (Endpoint{"h", 1}));
  EXPECT_EQ(parseEndpoint("h:65535"), (Endpoint{"h", 65535}));
}

// A host without a port gets PostgreSQL's default port 5432.
TEST(Endpoint, BareHostGetsPort5432) {
  EXPECT_EQ(parseEndpoint("pg-primary"), (Endpoint{"pg-primary", 5432}));
  EXPECT_EQ(parseEndpoint("10.0.0.7"), (Endpoint{"10.0.0.7", 5432}));
}

// Bracketed IPv6 addresses parse with or without a port and lose their brackets.
TEST(Endpoint, ParsesBracketedIpv6) {
  EXPECT_EQ(parseEndpoint("[::1]:5432"), (Endpoint{"::1", 5432}));
  EXPECT_EQ(parseEndpoint("[fd00::12:7]:6000"), (Endpoint{"fd00::12:7", 6000}));
  EXPECT_EQ(parseEndpoint("[::1]"), (Endpoint{"::1", 5432}));
  EXPECT_EQ(parseEndpoint("[fe80::1%eth0]:5432"), (Endpoint{"fe80::1%eth0", 5432}));
}

// Empty hosts, out-of-range ports and malformed text are rejected.
TEST(Endpoint, RejectsBadInput) {
  for (const char* text : {"",
                           ":5432",
                           "host:",
                           "host:0",
                           "host:65536",
                           "host:99999999999",
                           "host:-1",
                           "host:+5",
                           "host:5x",
                           "host:5432:1",
                           "::1",
                           "[::1",
                           "[::1]5432",
                           "[]:5432",
                           "[host]:5432",
                           "[::1]:0",
                           "ho st",
                           " host",
                           "host/x:5432",
                           "[::1]:",
                           "host:0x10"}) {
    EXPECT_FALSE(parseEndpoint(text).has_value()) << "accepted \"" << text << "\"";
  }
}

// str() writes host:port and brackets IPv6 hosts so the result parses back to the same endpoint.
TEST(Endpoint, FormatsAndRoundTrips) {
  EXPECT_EQ((Endpoint{"db", 5432}).str(), "db:5432");
  EXPECT_EQ((Endpoint{"::1", 6432}).str(), "[::1]:6432");
  for (const Endpoint& endpoint : {Endpoint{"db", 1}, Endpoint{"fd00::1", 5433}}) {
    EXPECT_EQ(parseEndpoint(endpoint.str()), endpoint);
  }
}

// Lists may separate items with commas, whitespace or both, and keep their order.
TEST(EndpointList, AcceptsCommasAndWhitespace) {
  std::string error = "stale";
  std::vector<Endpoint> endpoints = parseEndpointList("a:1, b:2\tc\n[::1]:4,d:5", &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(endpoints,
            (std::vector<Endpoint>{{"a", 1}, {"b", 2}, {"c", 5432}, {"::1", 4}, {"d", 5}}));
}

// Empty items (doubled commas, leading or trailing separators) are skipped.
TEST(EndpointList, IgnoresEmptyItems) {
  std::string error;
  EXPECT_EQ(parseEndpointList(",, a:1 ,,, b:2 ,", &error),
            (std::vector<Endpoint>{{"a", 1}, {"b", 2}}));
  EXPECT_EQ(error, "");
  EXPECT_TRUE(parseEndpointList("  , ", &error).empty());
  EXPECT_EQ(error, "");
}

// A bad item fails the whole list and the error names it.
TEST(EndpointList, ErrorNamesTheBadItem) {
  std::string error;
  EXPECT_TRUE(parseEndpointList("a:1, b:70000, c:3", &error).empty());
  EXPECT_NE(error.find("\"b:70000\""), std::string::npos) << error;
  EXPECT_TRUE(parseEndpointList("a:1,b:x", nullptr).empty());
}

// The same endpoint written twice (even as "h" and "h:5432") is reported as a duplicate.
TEST(EndpointList, RejectsDuplicates) {
  std::string error;
  EXPECT_TRUE(parseEndpointList("h, h:5432", &error).empty());
  EXPECT_NE(error.find("duplicate"), std::string::npos) << error;
  EXPECT_NE(error.find("\"h:5432\""), std::string::npos) << error;
}

}  // namespace
}  // namespace pgkeel::discovery
