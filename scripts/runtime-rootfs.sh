#!/usr/bin/env bash
# Builds the container image's runtime stage as a plain directory, for machines without a Docker
# engine: a minimal Debian 12 root (debootstrap --variant=minbase, as debian:12-slim), the
# packages of `install-deps.sh --runtime`, and the pgkeel binary at /usr/local/bin/pgkeel.
# The root is rebuilt only when install-deps.sh changes; the binary is copied in every time.
#   usage: scripts/runtime-rootfs.sh DIR [BINARY]   (as root; BINARY defaults to build/pgkeel)
# Run it the way the image runs: scripts/runtime-rootfs-run.sh DIR [pgkeel flags...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: runtime-rootfs.sh DIR [BINARY]}"
binary="${2:-$root/build/pgkeel}"
stamp="$(sha256sum "$root/scripts/install-deps.sh" | cut -d' ' -f1)"

if [ "$(cat "$dir/.pgkeel-runtime-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$dir" && mkdir -p "$(dirname "$dir")"
  command -v debootstrap >/dev/null || { echo "runtime-rootfs: debootstrap is missing (scripts/install-deps.sh)" >&2; exit 1; }
  debootstrap --variant=minbase bookworm "$dir.tmp" http://deb.debian.org/debian >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; exit 1; }
  cp "$root/scripts/install-deps.sh" "$dir.tmp/tmp/install-deps.sh"
  chroot "$dir.tmp" bash /tmp/install-deps.sh --runtime >>"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
  rm -rf "$dir.tmp/tmp/install-deps.sh" "$dir.tmp/var/lib/apt/lists/"*
  echo "$stamp" >"$dir.tmp/.pgkeel-runtime-stamp"
  mv "$dir.tmp" "$dir"
fi
install -m 0755 "$binary" "$dir/usr/local/bin/pgkeel"
echo "$dir"
