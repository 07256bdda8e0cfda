#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang and runs each for SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
out=build-fuzz
mkdir -p "$out/corpus"
cp -n tests/data/fuzz/* "$out/corpus/" 2>/dev/null || true
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Isrc tests/fuzz/startup_fuzz.cpp src/protocol/startup.cpp src/protocol/backend_scanner.cpp \
  -o "$out/startup_fuzz"
"$out/startup_fuzz" -max_total_time="$seconds" -max_len=12000 -print_final_stats=1 "$out/corpus" 2>&1 |
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY)' || true
# libFuzzer exits non-zero on a crash; pipefail carries it here.
