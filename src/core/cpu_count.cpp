// How many CPUs this process may use: the affinity mask, capped by the cgroup CPU quota.
#include "core/cpu_count.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace pgkeel::core {
namespace {

std::string readFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The v2 cgroup path of this process ("0::/kubepods/..."), or "/" when unknown.
std::string cgroupV2Path() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "/";
}

// The tightest cpu.max from this cgroup up to the root.
std::optional<double> cgroupV2Cpus() {
  std::optional<double> best;
  std::string path = cgroupV2Path();
  for (;;) {
    const std::string dir = "/sys/fs/cgroup" + (path == "/" ? std::string() : path);
    if (auto cpus = cpusFromCpuMax(readFirstLine(dir + "/cpu.max")))
      best = best ? std::min(*best, *cpus) : *cpus;
    if (path == "/" || path.empty()) break;
    path = path.substr(0, path.rfind('/'));
    if (path.empty()) path = "/";
  }
  return best;
}

std::optional<double> cgroupV1Cpus() {
  const std::string quota = readFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  const std::string period = readFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (quota.empty() || period.empty()) return std::nullopt;
  return cpusFromCfs(std::stol(quota), std::stol(period));
}

}  // namespace

std::optional<double> cpusFromCpuMax(std::string_view cpuMax) {
  std::istringstream in{std::string(cpuMax)};
  std::string quota;
  long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    return cpusFromCfs(std::stol(quota), period);
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<double> cpusFromCfs(long quotaUs, long periodUs) {
  if (quotaUs <= 0 || periodUs <= 0) return std::nullopt;
  return static_cast<double>(quotaUs) / static_cast<double>(periodUs);
}

int usableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  auto quota = cgroupV2Cpus();
  if (!quota) quota = cgroupV1Cpus();
  if (quota) cpus = std::min(cpus, static_cast<int>(std::ceil(*quota)));
  return std::max(cpus, 1);
}

}  // namespace pgkeel::core
