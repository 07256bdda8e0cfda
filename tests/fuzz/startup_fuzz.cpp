// libFuzzer target: the start-up parser and the backend scanner take any bytes without crashing.
#include <cstddef>
#include <cstdint>

#include "protocol/backend_scanner.h"
#include "protocol/startup.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace pgkeel::protocol;
  const auto parsed = parseStartup({data, size});
  if (parsed.status == ParseStatus::Ok && (parsed.length < 8 || parsed.length > size))
    __builtin_trap();
  BackendScanner scanner;
  const std::size_t half = size / 2;
  scanner.feed({data, half});
  const auto feed = scanner.feed({data + half, size - half});
  if (feed.state == BackendScanner::State::Ready && feed.readyEnd > size - half) __builtin_trap();
  return 0;
}
