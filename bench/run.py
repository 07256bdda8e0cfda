#!/usr/bin/env python3
"""pgkeel benchmark harness: pgbench select-only through pgkeel, PgBouncer and HAProxy, compared with direct.

One command (python3 standard library only; see bench/README.md):

    python3 bench/run.py [--seconds 5] [--rounds 3] [--clients 1,16,64] [--modes simple,extended,prepared]
                         [--targets direct,pgkeel,pgbouncer,haproxy] [--no-connect-run] [--pgkeel PATH]
                         [--pgkeel-workers N] [--quick]

It starts a throwaway PostgreSQL primary + streaming replica on loopback (e2e/pgcluster.py), loads
`pgbench -i -s 10`, puts every target in front of the primary on its own free port, then runs each scenario
against every target in turn (direct, pgkeel, pgbouncer, haproxy, direct, ...) for --rounds rounds. It writes
bench/results/<date>-<commit>.md (tables of medians), a .png chart of TPS relative to direct and a .json of
every raw run, and prints the tables. Everything it started is stopped and deleted on exit, Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(REPO_ROOT / "e2e"))
sys.dont_write_bytecode = True  # leave no __pycache__ in e2e/ (or bench/)

import pgcluster  # noqa: E402  (e2e/pgcluster.py: PgCluster, free_port, query, wait_until, client_env)

HOST = pgcluster.HOST
SCALE = 10
ALL_TARGETS = ["direct", "pgkeel", "pgbouncer", "haproxy"]
ALL_MODES = ["simple", "extended", "prepared"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
# PostgreSQL settings on top of pgcluster's: room for 64 pgbench clients plus PgBouncer's idle server
# connections (kept up to server_idle_timeout while another target runs), and the whole scale-10 data set
# (~160 MB) in shared buffers so that runs measure the network path rather than page-cache copies.
PG_EXTRA_CONF = ["max_connections = 300", "shared_buffers = 256MB"]
# Seconds a run costs beyond --seconds (pgbench start-up, connection set-up, our bookkeeping), for the estimate.
RUN_OVERHEAD_S = 0.6
SETUP_ESTIMATE_S = 45


def log(msg: str):
    print(msg, flush=True)


# ----- small helpers ----------------------------------------------------------------------------------------
def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: wrap cmd so it runs as the postgres user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
            "env", "HOME=/var/lib/postgresql"] + cmd


def _die_with_parent():
    """preexec_fn: SIGTERM the child if this script dies without cleaning up (e.g. SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/PID/stat, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state); utime is field 14
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cmd_output(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (res.stdout or res.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({' '.join(cmd)}: {exc})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def git(*args: str) -> str:
    return cmd_output(["git", "-C", str(REPO_ROOT), *args])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def wait_select1(port: int, proc: subprocess.Popen | None, name: str, log_path: str | None, timeout: float = 20):
    """Until `select 1` works through port; fail early if the process behind it exited."""
    def ready():
        if proc is not None and proc.poll() is not None:
            tail = Path(log_path).read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up:\n{tail}")
        return pgcluster.query(port, "select 1", timeout=10) == "1"
    pgcluster.wait_until(ready, timeout, interval=0.1, what=f"{name} on port {port} to answer")


# ----- targets ----------------------------------------------------------------------------------------------
class Target:
    """Something pgbench connects to in front of the primary; pid is the process whose CPU we charge to it."""
    name = "?"

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.log_path: str | None = None
        self.description = ""

    def start(self, primary_port: int):
        raise NotImplementedError

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def _spawn(self, argv: list[str], log_name: str, pdeathsig: bool = True):
        self.log_path = os.path.join(self.workdir, log_name)
        with open(self.log_path, "ab") as logf:
            logf.write(("+ " + shlex.join(argv) + "\n").encode())
            logf.flush()
            # Own session: Ctrl-C in the terminal reaches pgbench and us, not the daemons; we stop them in order.
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         env=pgcluster.client_env(), start_new_session=True,
                                         preexec_fn=_die_with_parent if pdeathsig else None)
        self.pid = self.proc.pid

    def _resolve_pid(self, comm: str):
        """setpriv and env exec, so the Popen pid normally is the daemon itself; otherwise find its child."""
        if proc_comm(self.pid) == comm:
            return
        try:
            out = subprocess.run(["pgrep", "-P", str(self.pid), "-x", comm], capture_output=True, text=True).stdout
            if out.split():
                self.pid = int(out.split()[0])
        except OSError:
            pass

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        if not self.log_path:
            return ""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


class Direct(Target):
    name = "direct"

    def start(self, primary_port: int):
        self.port = primary_port
        self.description = "the primary itself, no proxy"


class PgkeelTarget(Target):
    name = "pgkeel"

    def __init__(self, workdir: str, binary: str, workers: int, candidates: str):
        super().__init__(workdir)
        self.binary = binary
        self.workers = workers
        self.candidates = candidates

    def start(self, primary_port: int):
        self.port, replica_listen = pgcluster.free_ports(2)
        argv = [self.binary, "--candidates", self.candidates,
                "--listen-primary", f"{HOST}:{self.port}", "--listen-replica", f"{HOST}:{replica_listen}",
                "--probe", "dbname=postgres user=postgres", "--workers", str(self.workers), "--log-level", "warn"]
        self.description = f"`{shlex.join(argv)}`"
        self._spawn(argv, "pgkeel.log")
        wait_select1(self.port, self.proc, "pgkeel", self.log_path)

    def log_lines(self) -> list[str]:
        return [ln for ln in self.log_text().splitlines() if ln.strip() and not ln.startswith("+ ")]


class PgbouncerTarget(Target):
    name = "pgbouncer"

    def start(self, primary_port: int):
        self.port = pgcluster.free_port()
        d = os.path.join(self.workdir, "pgbouncer")
        os.makedirs(d, exist_ok=True)
        userlist = os.path.join(d, "userlist.txt")
        Path(userlist).write_text('"postgres" ""\n')
        ini = os.path.join(d, "pgbouncer.ini")
        Path(ini).write_text("\n".join([
            "[databases]",
            f"postgres = host={HOST} port={primary_port} dbname=postgres",
            "",
            "[pgbouncer]",
            f"listen_addr = {HOST}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {userlist}",
            "pool_mode = session",
            "default_pool_size = 100",
            "max_client_conn = 1000",
            "ignore_startup_parameters = extra_float_digits",
            "log_connections = 0",
            "log_disconnections = 0",
            "log_pooler_errors = 1",
            "stats_period = 3600",
            "",
        ]))
        if os.geteuid() == 0:
            for p in (d, userlist, ini):
                shutil.chown(p, "postgres", "postgres")
        # PgBouncer refuses to run as root: run it as postgres (setpriv/env exec, so the pid stays the daemon's).
        self._spawn(as_postgres(["pgbouncer", ini]), "pgbouncer.log", pdeathsig=False)
        self.description = "session pooling, default_pool_size 100, auth_type trust, run as user postgres"
        wait_select1(self.port, self.proc, "pgbouncer", self.log_path)
        self._resolve_pid("pgbouncer")


class HaproxyTarget(Target):
    name = "haproxy"

    def start(self, primary_port: int):
        self.port = pgcluster.free_port()
        cfg = os.path.join(self.workdir, "haproxy.cfg")
        Path(cfg).write_text("\n".join([
            "global",
            "    nbthread 2",
            "    maxconn 2000",
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            "    timeout client 1h",
            "    timeout server 1h",
            "frontend pg",
            f"    bind {HOST}:{self.port}",
            "    default_backend primary",
            "backend primary",
            f"    server primary {HOST}:{primary_port}",
            "",
        ]))
        self._spawn(["haproxy", "-db", "-f", cfg], "haproxy.log")
        self.description = "mode tcp, one backend server, nbthread 2, foreground (-db)"
        wait_select1(self.port, self.proc, "haproxy", self.log_path)
        self._resolve_pid("haproxy")


# ----- scenarios and pgbench ------------------------------------------------------------------------------
@dataclass
class Scenario:
    mode: str
    clients: int
    connect: bool = False

    @property
    def key(self) -> str:
        return f"{'connect' if self.connect else self.mode}-c{self.clients}"

    @property
    def title(self) -> str:
        plural = "client" if self.clients == 1 else "clients"
        if self.connect:
            return f"select-only, new connection per transaction (-C), -M {self.mode}, {self.clients} {plural}"
        return f"select-only, -M {self.mode}, {self.clients} {plural}"

    @property
    def label(self) -> str:  # short, for the chart
        return f"{'-C ' + self.mode if self.connect else self.mode} c{self.clients}"

    def pgbench_args(self, seconds: int) -> list[str]:
        args = ["-n", "-S", "-M", self.mode, "-c", str(self.clients), "-T", str(seconds)]
        if self.clients > 1:
            args += ["-j", "2"]
        if self.connect:
            args.append("-C")
        return args


@dataclass
class Run:
    round: int
    scenario: str
    target: str
    tps: float | None = None
    latency_ms: float | None = None
    transactions: int | None = None
    failed: int | None = None
    cpu_s: float | None = None
    cpu_us_per_tx: float | None = None
    load_before: str = ""
    exit_code: int | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)


def parse_pgbench(out: str, connect: bool) -> dict:
    res: dict = {}
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res["transactions"] = int(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    res["failed"] = int(m.group(1)) if m else None
    m = re.search(r"latency average = ([\d.]+) ms", out)
    res["latency_ms"] = float(m.group(1)) if m else None
    tps_lines = re.findall(r"tps = ([\d.]+) \(([^)]*)\)", out)
    tps = None
    for value, what in tps_lines:
        if connect and "including" in what:
            tps = float(value)
        if not connect and ("without" in what or "excluding" in what):
            tps = float(value)
    if tps is None and tps_lines:
        tps = float(tps_lines[-1][0])
    res["tps"] = tps
    m = re.search(r"average connection time = ([\d.]+) ms", out)
    if m:
        res["avg_connection_ms"] = float(m.group(1))
    m = re.search(r"initial connection time = ([\d.]+) ms", out)
    if m:
        res["initial_connection_ms"] = float(m.group(1))
    return res


def run_pgbench(target: Target, sc: Scenario, seconds: int, rnd: int, load: str) -> Run:
    run = Run(rnd, sc.key, target.name, load_before=load)
    if not target.alive():
        run.error = f"{target.name} is not running (exit code {target.proc.returncode})"
        return run
    cmd = ["pgbench", *sc.pgbench_args(seconds), "-h", HOST, "-p", str(target.port), "-U", "postgres", "postgres"]
    cpu0 = proc_cpu_seconds(target.pid) if target.pid else None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, env=pgcluster.client_env())
    except subprocess.TimeoutExpired:
        run.error = "pgbench timed out"
        return run
    cpu1 = proc_cpu_seconds(target.pid) if target.pid and target.alive() else None
    run.exit_code = res.returncode
    parsed = parse_pgbench(res.stdout + res.stderr, sc.connect)
    run.tps, run.latency_ms = parsed["tps"], parsed["latency_ms"]
    run.transactions, run.failed = parsed["transactions"], parsed["failed"]
    run.extra = {k: v for k, v in parsed.items() if k.endswith("_ms") and k != "latency_ms"}
    if res.returncode != 0 or run.tps is None:
        errlines = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
        run.error = f"pgbench exit {res.returncode}: " + " | ".join(errlines[-5:])
    if cpu0 is not None and cpu1 is not None:
        run.cpu_s = cpu1 - cpu0
        if run.transactions:
            run.cpu_us_per_tx = run.cpu_s * 1e6 / run.transactions
    return run


# ----- reporting --------------------------------------------------------------------------------------------
def med(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def summarize(runs: list[Run], scenarios: list[Scenario], targets: list[str]) -> dict:
    """{scenario key: {target: {...medians...}}}"""
    out: dict = {}
    for sc in scenarios:
        rows = {}
        for t in targets:
            rs = [r for r in runs if r.scenario == sc.key and r.target == t]
            tps = [r.tps for r in rs if r.tps is not None]
            rows[t] = {
                "runs": len(rs),
                "ok_runs": len(tps),
                "tps": med(tps),
                "tps_min": min(tps) if tps else None,
                "tps_max": max(tps) if tps else None,
                "latency_ms": med([r.latency_ms for r in rs]),
                "cpu_us_per_tx": med([r.cpu_us_per_tx for r in rs]),
                "failed": sum(r.failed or 0 for r in rs),
                "errors": [r.error for r in rs if r.error],
            }
        d = rows.get("direct")
        for t, row in rows.items():
            row["ratio"] = row["tps"] / d["tps"] if d and d["tps"] and row["tps"] else None
            row["added_us"] = ((row["latency_ms"] - d["latency_ms"]) * 1000
                               if d and d["latency_ms"] is not None and row["latency_ms"] is not None else None)
        out[sc.key] = rows
    return out


def scenario_table(sc: Scenario, rows: dict) -> str:
    lines = [f"### {sc.title}", "",
             "| target | median TPS | TPS min–max | median latency (ms) | TPS ratio to direct "
             "| latency added vs direct (µs) | proxy CPU µs/tx | failed tx |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t, r in rows.items():
        if not r["runs"]:
            continue
        added = None if t == "direct" else r["added_us"]
        lines.append(
            f"| {t} | {fmt(r['tps'], ',.0f')} | "
            + (f"{r['tps_min']:,.0f}–{r['tps_max']:,.0f}" if r["tps"] is not None else "–") + " "
            f"| {fmt(r['latency_ms'], '.3f')} | {fmt(r['ratio'], '.3f')} | {fmt(added, '+.0f')} "
            f"| {fmt(r['cpu_us_per_tx'], '.1f') if t != 'direct' else '–'} | {r['failed']}"
            + (f" ({len(r['errors'])} run errors)" if r["errors"] else "") + " |")
    return "\n".join(lines) + "\n"


def acceptance(summary: dict, scenarios: list[Scenario]) -> list[str]:
    """pgkeel's acceptance targets against this run's medians."""
    lines = ["| check | scenario | measured | target | result |", "|---|---|---:|---|---|"]
    any_row = False
    for sc in scenarios:
        row = summary[sc.key].get("pgkeel")
        if not row or row["tps"] is None:
            continue
        if sc.clients == 16 and not sc.connect and row["ratio"] is not None:
            any_row = True
            ok = row["ratio"] >= 0.85
            lines.append(f"| TPS ratio to direct | {sc.label} | {row['ratio']:.3f} | ≥ 0.85 | "
                         f"{'PASS' if ok else 'FAIL'} |")
        if sc.clients == 1 and not sc.connect and row["added_us"] is not None:
            any_row = True
            ok = row["added_us"] < 30
            lines.append(f"| latency added | {sc.label} | {row['added_us']:+.0f} µs | < 30 µs | "
                         f"{'PASS' if ok else 'FAIL'} |")
        if not sc.connect and row["cpu_us_per_tx"] is not None:
            any_row = True
            ok = row["cpu_us_per_tx"] < 10
            lines.append(f"| pgkeel CPU per transaction | {sc.label} | {row['cpu_us_per_tx']:.1f} µs | < 10 µs | "
                         f"{'PASS' if ok else 'FAIL'} |")
    return lines if any_row else ["(no pgkeel results)"]


def write_chart(png: Path, summary: dict, scenarios: list[Scenario], targets: list[str], tmp: str, title: str) -> str:
    """Clustered bars of TPS ratio to direct per scenario and proxy; returns a note on failure, else ''."""
    gnuplot = shutil.which("gnuplot")
    proxies = [t for t in targets if t != "direct"]
    if not gnuplot:
        return "gnuplot not installed: no chart"
    if not proxies or "direct" not in targets:
        return "chart needs direct and at least one proxy"
    dat = os.path.join(tmp, "ratio.dat")
    ymax = 1.6  # PgBouncer's -C ratio can be 5x and more: clip the axis and print such values on the bar
    labels = []
    with open(dat, "w") as f:
        for i, sc in enumerate(scenarios):
            vals = [summary[sc.key][t]["ratio"] for t in proxies]
            f.write('"' + sc.label + '" ' + " ".join("NaN" if v is None else f"{v:.4f}" for v in vals) + "\n")
            for j, v in enumerate(vals):
                if v is not None and v > ymax:
                    x = i + (j - (len(proxies) - 1) / 2) / (len(proxies) + 1)
                    labels.append(f"set label '{v:.1f}x' at first {x + 0.14:.3f}, first {ymax * 0.95:.2f} left front")
    cols = " , ".join(f"'{dat}' using {i + 2}:xtic(1) title '{p}'" for i, p in enumerate(proxies))
    script = f"""
set terminal pngcairo size 1200,600 font ',10'
set output '{png}'
set title "{title}"
set ylabel 'TPS relative to direct (direct = 1.0)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:{ymax}]
{chr(10).join(labels)}
set grid ytics
set key outside top center horizontal maxrows 1
set xtics rotate by -30 left
plot {cols}, \\
     1.0 with lines lc rgb 'black' dt 2 title 'direct', \\
     0.85 with lines lc rgb 'red' dt 3 lw 2 title 'pgkeel target at 16 clients'
"""
    gp = os.path.join(tmp, "chart.gp")
    Path(gp).write_text(script)
    res = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
    if res.returncode != 0 or not png.exists():
        # pngcairo may be missing in some gnuplot builds: fall back to the plain png terminal.
        Path(gp).write_text(script.replace("pngcairo size 1200,600 font ',10'", "png size 1200,600"))
        res = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            return f"gnuplot failed: {res.stderr.strip()[:500]}"
    return ""


def interesting_log_lines(text: str, patterns=("ERROR", "FATAL", "PANIC", "WARNING", "[ALERT]", "[WARNING]")):
    return [ln for ln in text.splitlines() if any(p in ln for p in patterns)]


# ----- main -------------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5, help="length of each pgbench run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all scenarios and targets")
    ap.add_argument("--clients", default="1,16,64", help="comma-separated client counts")
    ap.add_argument("--modes", default="simple,extended,prepared", help="pgbench -M query modes")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help="which of " + ",".join(ALL_TARGETS))
    ap.add_argument("--no-connect-run", action="store_true",
                    help="skip the connection-per-transaction run (-C, simple, 16 clients)")
    ap.add_argument("--pgkeel", default=str(REPO_ROOT / "build" / "pgkeel"), help="pgkeel binary")
    ap.add_argument("--pgkeel-workers", type=int, default=cpu_count(), help="pgkeel --workers")
    ap.add_argument("--quick", action="store_true", help="--seconds 3 --rounds 1")
    ap.add_argument("--output", default=None,
                    help="results file (default bench/results/<YYYY-MM-DD>-<short commit>.md)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 3, 1
    try:
        args.client_list = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        ap.error("--clients takes comma-separated integers")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    for m in args.mode_list:
        if m not in ALL_MODES:
            ap.error(f"unknown mode {m!r} (choose from {', '.join(ALL_MODES)})")
    for t in args.target_list:
        if t not in ALL_TARGETS:
            ap.error(f"unknown target {t!r} (choose from {', '.join(ALL_TARGETS)})")
    if args.seconds < 1 or args.rounds < 1 or not args.client_list or min(args.client_list) < 1:
        ap.error("--seconds, --rounds and every client count must be at least 1")
    return args


def available_targets(args) -> tuple[list[str], list[str]]:
    """The requested targets that can run here, in the canonical order, and notes about skipped ones."""
    usable, notes = [], []
    for t in ALL_TARGETS:
        if t not in args.target_list:
            continue
        if t == "pgkeel" and not os.access(args.pgkeel, os.X_OK):
            notes.append(f"pgkeel skipped: no executable at {args.pgkeel} (build it or pass --pgkeel PATH)")
            continue
        if t in ("pgbouncer", "haproxy") and not shutil.which(t):
            notes.append(f"{t} skipped: not installed")
            continue
        usable.append(t)
    if not shutil.which("setpriv") and os.geteuid() == 0 and "pgbouncer" in usable:
        usable.remove("pgbouncer")
        notes.append("pgbouncer skipped: it refuses to run as root and setpriv is missing")
    return usable, notes


def snapshot(args, targets: list[str], tmp_root: str) -> dict:
    """What we measure, fixed at start: the commit (others may commit during the run) and a private copy of the
    pgkeel binary (others may rebuild build/pgkeel during the run), identified by version, mtime and sha256."""
    commit = git("rev-parse", "--short", "HEAD")
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        commit = "nocommit"
    meta = {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "pgkeel": "not run", "pgkeel_copy": None}
    if "pgkeel" in targets:
        src = os.path.abspath(args.pgkeel)
        copy = os.path.join(tmp_root, "pgkeel")
        shutil.copy2(src, copy)
        with open(copy, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(copy))
        meta["pgkeel_copy"] = copy
        meta["pgkeel"] = (f"{cmd_output([copy, '--version'])} (`{src}`, built {mtime:%Y-%m-%d %H:%M:%S}, "
                          f"sha256 {digest}; a copy taken at start ran)")
    return meta


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    for tool in ["pgbench", "psql"] + (["setpriv"] if os.geteuid() == 0 else []):
        if not shutil.which(tool):
            log(f"error: {tool} not found")
            return 2
    targets, notes = available_targets(args)
    for n in notes:
        log("note: " + n)
    if not targets:
        log("error: no target can run")
        return 2

    scenarios = [Scenario(m, c) for m in args.mode_list for c in args.client_list]
    if not args.no_connect_run:
        scenarios.append(Scenario("simple", 16, connect=True))
    n_runs = args.rounds * len(scenarios) * len(targets)
    est = n_runs * (args.seconds + RUN_OVERHEAD_S) + SETUP_ESTIMATE_S
    log(f"plan: {len(targets)} targets ({', '.join(targets)}) x {len(scenarios)} scenarios x {args.rounds} rounds "
        f"= {n_runs} pgbench runs of {args.seconds}s; estimated {est / 60:.1f} min "
        f"(finishing around {(datetime.datetime.now() + datetime.timedelta(seconds=est)):%H:%M})")

    started_at = datetime.datetime.now()
    t_start = time.monotonic()
    command = "python3 bench/run.py" + ("" if not argv else " " + shlex.join(argv))
    tmp_root = tempfile.mkdtemp(prefix="pgkeel-bench-", dir="/tmp")
    os.chmod(tmp_root, 0o755)  # the postgres user must reach the cluster and PgBouncer directories below
    meta: dict = {}
    cluster: pgcluster.PgCluster | None = None
    running: list[Target] = []
    runs: list[Run] = []
    round_loads: list[str] = []
    exit_code = 0
    try:
        meta = snapshot(args, targets, tmp_root)
        # 1. cluster
        log(f"starting PostgreSQL primary + streaming replica under {tmp_root} ...")
        cluster = pgcluster.PgCluster(base_dir=os.path.join(tmp_root, "cluster"), keep=True)
        cluster.start()
        cluster.stop_all(remove=False)  # restart both with PG_EXTRA_CONF (the replica must match max_connections)
        for node in (cluster.primary, cluster.replica):
            with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
                f.write("# bench/run.py\n" + "\n".join(PG_EXTRA_CONF) + "\n")
        cluster.start_node("primary")
        cluster.start_node("replica")
        cluster.wait_streaming()
        log(f"primary on {HOST}:{cluster.primary_port}, replica on {HOST}:{cluster.replica_port}; "
            f"pgbench -i -s {SCALE} ...")
        res = subprocess.run(["pgbench", "-i", "-q", "-s", str(SCALE), "-h", HOST, "-p", str(cluster.primary_port),
                              "-U", "postgres", "postgres"], capture_output=True, text=True, timeout=600,
                             env=pgcluster.client_env())
        if res.returncode != 0:
            raise RuntimeError(f"pgbench -i failed:\n{res.stderr}")
        cluster.wait_caught_up(timeout=120)

        # 2. targets
        for name in targets:
            if name == "direct":
                t: Target = Direct(tmp_root)
            elif name == "pgkeel":
                t = PgkeelTarget(tmp_root, meta["pgkeel_copy"], args.pgkeel_workers, cluster.candidates)
            elif name == "pgbouncer":
                t = PgbouncerTarget(tmp_root)
            else:
                t = HaproxyTarget(tmp_root)
            running.append(t)
            t.start(cluster.primary_port)
            log(f"  {name:9s} port {t.port}" + (f", pid {t.pid} ({proc_comm(t.pid)})" if t.pid else ""))

        # warm-up: the data set into shared buffers, every target's path exercised once
        log("warm-up (2 s direct, 1 s per proxy) ...")
        for t in running:
            run_pgbench(t, Scenario("simple", 4), 2 if t.name == "direct" else 1, 0, "")

        # 3. rounds: per round, per scenario, every target in turn
        for rnd in range(1, args.rounds + 1):
            load = loadavg()
            round_loads.append(load)
            log(f"round {rnd}/{args.rounds} (load average {load})")
            for sc in scenarios:
                for t in running:
                    r = run_pgbench(t, sc, args.seconds, rnd, loadavg())
                    runs.append(r)
                    cpu = f", proxy CPU {r.cpu_us_per_tx:.1f} µs/tx" if r.cpu_us_per_tx is not None else ""
                    err = f"  ERROR: {r.error}" if r.error else ""
                    log(f"  {sc.label:14s} {t.name:9s} {fmt(r.tps, '10,.0f')} tps  "
                        f"{fmt(r.latency_ms, '.3f')} ms  failed {fmt(r.failed, 'd')}{cpu}{err}")
    except Interrupted as exc:
        log(f"interrupted by {exc}; cleaning up")
        exit_code = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, still write what we have
        log(f"error: {exc}")
        if cluster is not None and cluster.nodes:
            log("primary log tail:\n" + cluster.log_tail("primary", 20))
        exit_code = 1
    finally:
        # Cleanup must not be interrupted by a second Ctrl-C (the commands it runs inherit the SIG_IGN too).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        logs = {t.name: t.log_text() for t in running}
        stop_codes = {}
        for t in reversed(running):
            try:
                t.stop()
                if t.proc is not None:
                    stop_codes[t.name] = t.proc.returncode
            except Exception as exc:  # noqa: BLE001
                log(f"warning: stopping {t.name}: {exc}")
        pg_log_lines = []
        if cluster is not None:
            if cluster.nodes:
                pg_log_lines = interesting_log_lines(cluster.log_tail("primary", 100000))
            try:
                cluster.stop_all(remove=True)
            except Exception as exc:  # noqa: BLE001
                log(f"warning: stopping PostgreSQL: {exc}")
        try:
            if runs:
                report(args, command, targets, notes, scenarios, runs, round_loads, logs, stop_codes,
                       pg_log_lines, started_at, time.monotonic() - t_start, tmp_root, exit_code, meta)
        except Exception as exc:  # noqa: BLE001 - still remove the temporary directory
            log(f"error: writing the results failed: {exc!r}")
            exit_code = exit_code or 1
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return exit_code


def report(args, command, targets, notes, scenarios, runs, round_loads, logs, stop_codes, pg_log_lines,
           started_at, elapsed, tmp_root, exit_code, meta):
    # An interrupted run reports only the scenarios and targets it measured.
    scenarios = [sc for sc in scenarios if any(r.scenario == sc.key for r in runs)]
    targets = [t for t in targets if any(r.target == t for r in runs)] or targets
    summary = summarize(runs, scenarios, targets)
    commit, dirty = meta["commit"], meta["dirty"]
    md_path = Path(args.output) if args.output else RESULTS_DIR / f"{started_at:%Y-%m-%d}-{commit}.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    png_path = md_path.with_suffix(".png")
    json_path = md_path.with_suffix(".json")

    pgkeel_info = meta["pgkeel"] if "pgkeel" in targets else "not run"
    versions = {
        "PostgreSQL": cmd_output([os.path.join(pgcluster.pg_bindir(), "postgres"), "--version"]),
        "pgbench": cmd_output(["pgbench", "--version"]),
        "PgBouncer": cmd_output(["pgbouncer", "-V"]).splitlines()[0] if shutil.which("pgbouncer") else "not installed",
        "HAProxy": cmd_output(["haproxy", "-v"]).splitlines()[0] if shutil.which("haproxy") else "not installed",
        "pgkeel": pgkeel_info,
    }
    host = {
        "nproc": str(os.cpu_count()),
        "kernel": cmd_output(["uname", "-r"]),
        "CPU": cpu_model(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
    }

    out = []
    out.append(f"# pgkeel benchmark {started_at:%Y-%m-%d %H:%M} — commit {commit}"
               f"{' (work tree modified)' if dirty else ''}")
    out.append("")
    if exit_code:
        out.append(f"**Incomplete run** (exit code {exit_code}): the tables cover only the runs that finished.\n")
    out.append("## Setup\n")
    out.append(f"- Command: `{command}` (from the repository root), {elapsed / 60:.1f} min in all")
    out.append("- Machine: " + ", ".join(f"{k} {v}" for k, v in host.items()))
    for k, v in versions.items():
        out.append(f"- {k}: {v}")
    out.append(f"- PostgreSQL 15 primary + streaming replica on loopback (e2e/pgcluster.py: initdb -N, fsync=off, "
               f"synchronous_commit=off; plus {', '.join(PG_EXTRA_CONF)}), `pgbench -i -s {SCALE}`; "
               "every target is in front of the primary, pgbench connects over TCP to 127.0.0.1")
    out.append(f"- pgbench: `pgbench -n -S -M MODE -c CLIENTS [-j 2 when clients > 1] -T {args.seconds}`, "
               f"{args.rounds} round(s); in each round every scenario runs against every target in turn "
               f"({', '.join(targets)}); medians over the rounds")
    out.append("- TPS excludes connection time, except the -C scenario (a new connection per transaction), "
               "which uses pgbench's figure including reconnection time")
    out.append("- Proxy CPU: utime+stime of the proxy process (all threads) from /proc/PID/stat right before and "
               f"after each run (clock tick {1000 / CLK_TCK:.0f} ms), divided by the transactions of the run")
    out.append("- Targets:")
    for name in targets:
        desc = {"direct": "the primary itself, no proxy",
                "pgkeel": f"`--workers {args.pgkeel_workers} --log-level warn`, candidates primary+replica",
                "pgbouncer": "1.18 session pooling, default_pool_size 100, auth_type trust, run as user postgres",
                "haproxy": "mode tcp, one backend server, nbthread 2"}[name]
        out.append(f"  - {name}: {desc}")
    for n in notes:
        out.append(f"- Note: {n}")
    out.append("- Load average (1/5/15 min) before each round: "
               + "; ".join(f"round {i + 1}: {la}" for i, la in enumerate(round_loads))
               + " — other work on this machine (e.g. compiles) adds noise; compare runs with similar load")
    out.append("")
    out.append("## pgkeel acceptance targets\n")
    out.extend(acceptance(summary, scenarios))
    out.append("")
    out.append(f"![TPS relative to direct]({png_path.name})\n")
    out.append("## Results (medians)\n")
    tables = []
    for sc in scenarios:
        tables.append(scenario_table(sc, summary[sc.key]))
    out.extend(tables)

    errors = [r for r in runs if r.error]
    if errors:
        out.append("## Run errors\n")
        for r in errors:
            out.append(f"- round {r.round}, {r.scenario}, {r.target}: {r.error}")
        out.append("")
    out.append("## Logs\n")
    pk_lines = [ln for ln in logs.get("pgkeel", "").splitlines() if ln.strip() and not ln.startswith("+ ")]
    if "pgkeel" in targets:
        out.append(f"pgkeel log (level warn): {len(pk_lines)} line(s); exit code after SIGTERM: "
                   f"{stop_codes.get('pgkeel')}")
        if pk_lines:
            out.append("\n```\n" + "\n".join(pk_lines[:40]) + ("\n..." if len(pk_lines) > 40 else "") + "\n```")
    for name in ("pgbouncer", "haproxy"):
        if name in logs:
            lines = interesting_log_lines(logs[name])
            out.append(f"\n{name} log: {len(lines)} warning/error line(s)")
            if lines:
                out.append("\n```\n" + "\n".join(lines[:20]) + "\n```")
    out.append(f"\nPostgreSQL primary log: {len(pg_log_lines)} warning/error line(s)")
    if pg_log_lines:
        out.append("\n```\n" + "\n".join(pg_log_lines[:20]) + "\n```")
    out.append(f"\nRaw runs: [{json_path.name}]({json_path.name})")

    chart_note = write_chart(png_path, summary, scenarios, targets, tmp_root,
                             f"pgbench -S TPS relative to direct, median of {args.rounds} round(s) "
                             f"({started_at:%Y-%m-%d}, {commit})")
    if chart_note:
        out.append(f"\nChart: {chart_note}")
    md_path.write_text("\n".join(out) + "\n")
    json_path.write_text(json.dumps({
        "command": command, "started_at": started_at.isoformat(), "commit": commit, "dirty": dirty,
        "pgkeel_binary": meta["pgkeel"],
        "host": host, "versions": versions, "round_loads": round_loads, "targets": targets,
        "scenarios": [sc.key for sc in scenarios], "summary": summary,
        "runs": [r.__dict__ for r in runs]}, indent=1, default=str) + "\n")

    print()
    print("\n".join(acceptance(summary, scenarios)))
    print()
    print("\n".join(tables))
    print(f"results: {md_path}" + ("" if chart_note else f", chart: {png_path}") + f", raw runs: {json_path}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
