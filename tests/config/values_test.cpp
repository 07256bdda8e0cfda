// Tests for the value parsers: durations, booleans, integers, ADDR:PORT and lists.
#include "config/values.h"

#include <gtest/gtest.h>

namespace pgkeel::config {
namespace {

Millis duration(std::string_view text) {
  Millis value{-1};
  EXPECT_EQ(parseDuration(text, value), "") << text;
  return value;
}

std::string durationProblem(std::string_view text) {
  Millis value{-1};
  std::string problem = parseDuration(text, value);
  EXPECT_EQ(value, Millis(-1)) << "a bad value must leave the target alone";
  return problem;
}

// Each unit, fractions and compound forms give exact milliseconds.
TEST(Duration, ParsesEveryUnitFractionAndCompound) {
  EXPECT_EQ(duration("500ms"), Millis(500));
  EXPECT_EQ(duration("2s"), Millis(2000));
  EXPECT_EQ(duration("1m"), Millis(60000));
  EXPECT_EQ(duration("1h"), Millis(3600000));
  EXPECT_EQ(duration("1.5s"), Millis(1500));
  EXPECT_EQ(duration(".5s"), Millis(500));
  EXPECT_EQ(duration("1m30s"), Millis(90000));
  EXPECT_EQ(duration(" 0s "), Millis(0));
}

// A number without a unit is an error that tells how to fix it.
TEST(Duration, BareNumberNeedsAUnit) {
  EXPECT_EQ(durationProblem("2"), "needs a unit, e.g. 2s");
  EXPECT_EQ(durationProblem("0"), "needs a unit, e.g. 2s");
  EXPECT_EQ(durationProblem("1m30"), "needs a unit, e.g. 2s");
}

// Units below a millisecond and fractions of a millisecond are rejected, not rounded.
TEST(Duration, RejectsSubMillisecondValues) {
  EXPECT_EQ(durationProblem("250us"),
            "units below a millisecond are not supported; use ms, s, m or h");
  EXPECT_EQ(durationProblem("10ns"),
            "units below a millisecond are not supported; use ms, s, m or h");
  EXPECT_EQ(durationProblem("1.5ms"), "'1.5ms' is not a whole number of milliseconds");
}

// Text that is no duration at all, negatives, unknown units and empty values are errors.
TEST(Duration, RejectsGarbageNegativesAndUnknownUnits) {
  EXPECT_EQ(durationProblem("abc"), "'abc' is not a duration, e.g. 500ms, 2s, 1m");
  EXPECT_EQ(durationProblem("s"), "'s' is not a duration, e.g. 500ms, 2s, 1m");
  EXPECT_EQ(durationProblem("-1s"), "'-1s' is negative");
  EXPECT_EQ(durationProblem("2d"), "unknown unit 'd'; use ms, s, m or h");
  EXPECT_EQ(durationProblem(""), "needs a value, e.g. 2s");
  EXPECT_EQ(durationProblem("99999999999h"), "'99999999999h' is too long");
}

// Durations print in the shortest exact unit, in a form the parser reads back.
TEST(Duration, FormatsShortestExactForm) {
  EXPECT_EQ(formatDuration(Millis(0)), "0s");
  EXPECT_EQ(formatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(formatDuration(Millis(30000)), "30s");
  EXPECT_EQ(formatDuration(Millis(120000)), "2m");
  EXPECT_EQ(formatDuration(Millis(7200000)), "2h");
}

// Every documented spelling of true and false is accepted, in any letter case.
TEST(Bool, AcceptsEveryForm) {
  for (const char* text : {"true", "on", "yes", "1", "TRUE", "Yes"}) {
    bool value = false;
    EXPECT_EQ(parseBool(text, value), "") << text;
    EXPECT_TRUE(value) << text;
  }
  for (const char* text : {"false", "off", "no", "0", "Off"}) {
    bool value = true;
    EXPECT_EQ(parseBool(text, value), "") << text;
    EXPECT_FALSE(value) << text;
  }
}

// Anything else is an error listing the accepted forms.
TEST(Bool, RejectsOtherWords) {
  bool value = true;
  EXPECT_EQ(parseBool("maybe", value),
            "'maybe' is not a boolean; use true/false, on/off, yes/no or 1/0");
  EXPECT_EQ(parseBool("", value).empty(), false);
  EXPECT_TRUE(value);
}

// Integers must be whole numbers inside their range.
TEST(Int, ChecksDigitsAndRange) {
  int value = -1;
  EXPECT_EQ(parseInt("12", 0, 20, value), "");
  EXPECT_EQ(value, 12);
  EXPECT_EQ(parseInt("21", 0, 20, value), "must be between 0 and 20, not 21");
  EXPECT_EQ(parseInt("-1", 0, 20, value), "must be between 0 and 20, not -1");
  EXPECT_EQ(parseInt("99999999999", 0, 20, value), "must be between 0 and 20, not 99999999999");
  EXPECT_EQ(parseInt("1.5", 0, 20, value), "'1.5' is not a whole number");
  EXPECT_EQ(parseInt("", 0, 20, value), "'' is not a whole number");
  EXPECT_EQ(value, 12);
}

// Host names, IPv4 and bracketed IPv6 with a port in 1..65535 are addresses.
TEST(HostPort, AcceptsNamesIpv4AndBracketedIpv6) {
  for (const char* text :
       {"db-0.pg.svc:5432", "10.0.0.5:1", "[::1]:65535", "[fe80::1%eth0]:5432", "localhost:6432"}) {
    EXPECT_EQ(checkHostPort(text), "") << text;
  }
}

// A missing or out-of-range port, a missing host and unbracketed IPv6 are errors.
TEST(HostPort, RejectsBadPortsHostsAndBareIpv6) {
  EXPECT_EQ(checkHostPort("db-1"), "'db-1' is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432");
  EXPECT_EQ(checkHostPort(":5432"), "':5432' is not ADDR:PORT, e.g. 10.0.0.5:5432 or [::1]:5432");
  EXPECT_EQ(checkHostPort("db:0"), "'db:0': the port must be a number from 1 to 65535");
  EXPECT_EQ(checkHostPort("db:65536"), "'db:65536': the port must be a number from 1 to 65535");
  EXPECT_EQ(checkHostPort("db:pg"), "'db:pg': the port must be a number from 1 to 65535");
  EXPECT_EQ(checkHostPort("::1:5432"),
            "'::1:5432': write an IPv6 address in brackets, e.g. [::1]:5432");
  EXPECT_FALSE(checkHostPort("[::1]5432").empty());
  EXPECT_FALSE(checkHostPort("db 0:5432").empty());
}

// Lists split on commas, lose surrounding blanks and empty items.
TEST(SplitList, TrimsAndDropsEmptyItems) {
  EXPECT_EQ(splitList(" a:1, b:2,,c:3 ,"), (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_TRUE(splitList("").empty());
}

// A near miss suggests the intended name; a far miss suggests nothing.
TEST(ClosestMatch, SuggestsOnlyNearNames) {
  std::vector<std::string> names{"probe_interval", "probe_timeout", "workers"};
  EXPECT_EQ(closestMatch("probe_intervall", names), "probe_interval");
  EXPECT_EQ(closestMatch("probe-timeout", names), "probe_timeout");
  EXPECT_EQ(closestMatch("colour", names), "");
}

}  // namespace
}  // namespace pgkeel::config
