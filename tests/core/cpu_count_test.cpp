// Tests for the CPU count: cgroup quota parsing and the usable-CPU floor.
#include "core/cpu_count.h"

#include <gtest/gtest.h>

namespace pgkeel::core {
namespace {

// cgroup v2: "max" means no limit; a quota divides by its period.
TEST(CpuCount, ParsesCgroupV2CpuMax) {
  EXPECT_FALSE(cpusFromCpuMax("max 100000"));
  EXPECT_DOUBLE_EQ(*cpusFromCpuMax("50000 100000"), 0.5);
  EXPECT_DOUBLE_EQ(*cpusFromCpuMax("200000 100000"), 2.0);
  EXPECT_FALSE(cpusFromCpuMax(""));
  EXPECT_FALSE(cpusFromCpuMax("garbage"));
}

// cgroup v1: a quota of -1 means no limit.
TEST(CpuCount, ParsesCgroupV1Quota) {
  EXPECT_FALSE(cpusFromCfs(-1, 100000));
  EXPECT_DOUBLE_EQ(*cpusFromCfs(150000, 100000), 1.5);
}

// The process always gets at least one worker, and never more than its affinity allows.
TEST(CpuCount, UsableCpusIsWithinAffinity) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_GE(usableCpus(), 1);
  EXPECT_LE(usableCpus(), CPU_COUNT(&set));
}

}  // namespace
}  // namespace pgkeel::core
