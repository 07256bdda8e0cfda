#!/usr/bin/env bash
# demo: installs dependencies, builds pgkeel, starts a PostgreSQL primary + replica and pgkeel in front of them on loopback.
#
#   bash scripts/demo.sh          # (re)start the demo; a previous demo is stopped first
#   bash scripts/demo.sh stop     # stop pgkeel and both PostgreSQL nodes, delete /tmp/pgkeel-demo
#
# Environment: PGKEEL_BIN=/path/to/pgkeel skips the dependency install and the build and runs that binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR=/tmp/pgkeel-demo
PRIMARY_PORT=6432
REPLICA_PORT=6433
PIDFILE="$DEMO_DIR/pgkeel.pid"
LOG="$DEMO_DIR/pgkeel.log"
PYTHON="$(command -v /usr/bin/python3 || command -v python3)"
PGCLUSTER=("$PYTHON" "$ROOT/e2e/pgcluster.py")

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_demo() {
  if [ -f "$PIDFILE" ]; then
    local pid; pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null && grep -qa -- "--listen-primary" "/proc/$pid/cmdline" 2>/dev/null; then
      say "stopping pgkeel (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$PIDFILE"
  fi
  if [ -d "$DEMO_DIR" ]; then
    say "stopping PostgreSQL and removing $DEMO_DIR"
    "${PGCLUSTER[@]}" stop --dir "$DEMO_DIR"
  fi
}

# Debian starts its pgbouncer service on 127.0.0.1:6432 when the package is installed; it is only a
# benchmark peer here, so the demo stops it rather than fail. Anything else on our ports is an error.
free_demo_ports() {
  for port in "$PRIMARY_PORT" "$REPLICA_PORT"; do
    port_busy "$port" || continue
    if [ "$port" = 6432 ] && command -v systemctl >/dev/null && systemctl is-active --quiet pgbouncer 2>/dev/null; then
      say "stopping Debian's pgbouncer service, which holds 127.0.0.1:6432 (systemctl start pgbouncer brings it back)"
      systemctl stop pgbouncer pgbouncer.socket 2>/dev/null || systemctl stop pgbouncer
      for _ in $(seq 50); do port_busy "$port" || break; sleep 0.1; done
    fi
    if port_busy "$port"; then
      command -v ss >/dev/null && ss -ltnp "sport = :$port" >&2 || true
      die "127.0.0.1:$port is in use by another program (see above); stop it and run this again"
    fi
  done
}

build() {
  cd "$ROOT"
  say "installing dependencies (scripts/install-deps.sh)"
  bash scripts/install-deps.sh
  say "building pgkeel (Release)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"$(nproc)"
}

# Waits until a new connection through 127.0.0.1:$1 answers pg_is_in_recovery() = $2.
wait_serving() {
  local port=$1 want=$2
  for _ in $(seq 300); do
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -n 40 "$LOG" >&2; die "pgkeel exited; log above ($LOG)"; }
    got="$(PGCONNECT_TIMEOUT=3 psql -X -At "host=127.0.0.1 port=$port user=postgres dbname=postgres" \
           -c 'select pg_is_in_recovery()' 2>/dev/null || true)"
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  tail -n 40 "$LOG" >&2
  die "pgkeel does not serve 127.0.0.1:$port after 30 s; log above ($LOG)"
}

start_demo() {
  stop_demo
  local bin="${PGKEEL_BIN:-}"
  if [ -z "$bin" ]; then
    build
    bin="$ROOT/build/pgkeel"
  fi
  [ -x "$bin" ] || die "no pgkeel binary at $bin"
  free_demo_ports

  say "starting a PostgreSQL 15 primary and a streaming replica under $DEMO_DIR"
  local state; state="$("${PGCLUSTER[@]}" start --dir "$DEMO_DIR")"
  local p1 p2
  p1="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["primary"])' <<<"$state")"
  p2="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["replica"])' <<<"$state")"

  say "starting pgkeel on 127.0.0.1:$PRIMARY_PORT (primary) and 127.0.0.1:$REPLICA_PORT (replica)"
  setsid nohup "$bin" \
    --candidates "127.0.0.1:$p1,127.0.0.1:$p2" \
    --listen-primary "127.0.0.1:$PRIMARY_PORT" --listen-replica "127.0.0.1:$REPLICA_PORT" \
    --probe "dbname=postgres user=postgres" \
    --log-level info >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_serving "$PRIMARY_PORT" f
  wait_serving "$REPLICA_PORT" t

  local q="'select pg_is_in_recovery(), inet_server_port()'"
  cat <<EOF

pgkeel is running (pid $(cat "$PIDFILE")); its log is $LOG
PostgreSQL: primary on 127.0.0.1:$p1, replica on 127.0.0.1:$p2 (data and logs under $DEMO_DIR)

Through pgkeel's primary port (answers f and port $p1):
  psql "host=127.0.0.1 port=$PRIMARY_PORT user=postgres dbname=postgres" -c $q

Through pgkeel's replica port (answers t and port $p2):
  psql "host=127.0.0.1 port=$REPLICA_PORT user=postgres dbname=postgres" -c $q

Fail over: promote the replica and stop the old primary, then run the first psql line again
(within a few seconds it answers f and port $p2):
  $PYTHON $ROOT/e2e/pgcluster.py promote --dir $DEMO_DIR && $PYTHON $ROOT/e2e/pgcluster.py stop-node --dir $DEMO_DIR primary

Tear everything down:
  bash $ROOT/scripts/demo.sh stop
EOF
}

case "${1:-start}" in
  start) start_demo ;;
  stop) stop_demo ;;
  *) die "usage: bash scripts/demo.sh [start|stop]" ;;
esac
