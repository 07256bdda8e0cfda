#!/usr/bin/env bash
# The one list of Debian packages pgkeel needs to build, test, benchmark and demo; used by the README, .ci/run and the Dockerfile.
set -euo pipefail

BUILD=(build-essential cmake pkg-config git ca-certificates)
LIBS=(libssl-dev libpq-dev libpg-query-dev libcpp-httplib-dev nlohmann-json3-dev prometheus-cpp-dev
      libspdlog-dev libfmt-dev libyaml-cpp-dev libgtest-dev libgmock-dev)
POSTGRES=(postgresql-15 postgresql-client-15 postgresql-contrib)
TEST=(python3 python3-pytest python3-psycopg2 python3-jsonpatch python3-yaml nodejs clang libclang-rt-14-dev openssl procps iproute2 curl debootstrap
      patroni etcd-server etcd-client)
BENCH=(pgbouncer haproxy gnuplot-nox)

# What the container image's runtime stage installs: the packages of every library pgkeel links
# (scripts/check-runtime-libs.sh checks this against ldd), and CA certificates for TLS.
RUNTIME=(libc6 libgcc-s1 libstdc++6 libssl3 libpq5 libspdlog1.10 libfmt9 libyaml-cpp0.7
         libcpp-httplib0.11 libprometheus-cpp-core1.0 ca-certificates)

want=("${BUILD[@]}" "${LIBS[@]}" "${POSTGRES[@]}" "${TEST[@]}" "${BENCH[@]}")
case "${1:-}" in
  --runtime) want=("${RUNTIME[@]}") ;;            # the image's runtime stage
  --build) want=("${BUILD[@]}" "${LIBS[@]}") ;;   # the image's build stage: compile pgkeel only
  --print-runtime) printf '%s\n' "${RUNTIME[@]}"; exit 0 ;;
  "") ;;
  *) echo "usage: install-deps.sh [--runtime | --build | --print-runtime]" >&2; exit 2 ;;
esac
all=false; [ -z "${1:-}" ] && all=true

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs has no npm (node-postgres for the e2e tests comes from the npm registry);
# some nodejs builds bundle it.
$all && ! command -v npm >/dev/null 2>&1 && missing+=(npm)
# kubectl plays the operator in the e2e tests; any kubectl will do (Debian's is kubernetes-client).
$all && ! command -v kubectl >/dev/null 2>&1 && missing+=(kubernetes-client)
if [ ${#missing[@]} -eq 0 ]; then echo "install-deps: all ${#want[@]} packages present"; exit 0; fi

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# Debian's postgresql package would create and start a cluster on 5432; tests and the demo run their own.
if $all; then
  $SUDO mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/pgkeel.conf >/dev/null
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
# etcd-server starts its own service on 2379; the Patroni tests run their own etcd on free ports.
# pgbouncer and haproxy are benchmark peers, started by bench/ on ports it picks; Debian's own
# services would hold 127.0.0.1:6432 (pgbouncer) where the demo listens.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now pgbouncer haproxy etcd patroni >/dev/null 2>&1 || true
fi
