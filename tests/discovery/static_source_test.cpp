// Tests for StaticSource: a fixed candidate list that a reload can replace.
#include "discovery/source.h"

#include <gtest/gtest.h>

namespace pgkeel::discovery {
namespace {

// The static source offers its endpoints, in order and without hints, until replaced.
TEST(StaticSource, OffersItsEndpointsUntilReplaced) {
  StaticSource source({Endpoint{"a", 1}, Endpoint{"b", 2}});
  EXPECT_EQ(source.name(), "static");
  SourceSnapshot snapshot = source.snapshot();
  EXPECT_EQ(snapshot.candidates, (std::vector<Candidate>{{Endpoint{"a", 1}, RoleHint::None},
                                                         {Endpoint{"b", 2}, RoleHint::None}}));
  EXPECT_EQ(snapshot.opinion, LeaderOpinion::NoOpinion);
  EXPECT_FALSE(snapshot.moving);
  source.setEndpoints({Endpoint{"c", 3}});
  EXPECT_EQ(source.snapshot().candidates,
            (std::vector<Candidate>{{Endpoint{"c", 3}, RoleHint::None}}));
  source.start([] { FAIL() << "a static source never reports changes"; });
  source.stop();
}

}  // namespace
}  // namespace pgkeel::discovery
