// How many CPUs this process may use: the affinity mask, capped by the cgroup CPU quota.
#pragma once

#include <optional>
#include <string_view>

namespace pgkeel::core {

// cgroup v2 "cpu.max" content ("max 100000", "50000 100000") to CPUs, rounded up; empty = no limit.
std::optional<double> cpusFromCpuMax(std::string_view cpuMax);
// cgroup v1 cfs_quota_us / cfs_period_us; empty when the quota is -1.
std::optional<double> cpusFromCfs(long quotaUs, long periodUs);

// min(affinity CPUs, ceil(quota)), at least 1. Reads /proc/self/cgroup and /sys/fs/cgroup.
int usableCpus();

}  // namespace pgkeel::core
