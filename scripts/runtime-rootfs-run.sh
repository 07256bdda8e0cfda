#!/bin/sh
# Runs pgkeel as the container image does: in the runtime stage's root (scripts/runtime-rootfs.sh),
# mounted read-only, as user 65532:65532, in a mount namespace of its own (removed on exit).
# The network is the host's.   usage: scripts/runtime-rootfs-run.sh DIR [pgkeel arguments...]
# As root. unshare holds SIGTERM back from itself: signal the pgkeel process (its child), or
# the process group; if unshare dies, pgkeel gets SIGTERM (--kill-child).
dir="$(cd "${1:?usage: runtime-rootfs-run.sh DIR [ARGS...]}" && pwd)" && shift
exec unshare --mount --fork --kill-child=TERM sh -c '
  r="$1"; shift
  mount --bind "$r" "$r" && mount -o remount,bind,ro "$r" &&
  mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" &&
  exec chroot --userspec=65532:65532 "$r" /usr/local/bin/pgkeel "$@"' sh "$dir" "$@"
