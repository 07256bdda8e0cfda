#!/usr/bin/env python3
"""Throwaway PostgreSQL primary + streaming replica on loopback, and a runner for pgkeel, for e2e tests and the demo.

Standard library only (psql/pg_ctl/initdb/pg_basebackup do the PostgreSQL work), so the demo can run it with any
python3. Command line (used by scripts/demo.sh):

    python3 e2e/pgcluster.py start --dir D [--ssl]     # prints {"primary": PORT, "replica": PORT, ...} as JSON
    python3 e2e/pgcluster.py status --dir D            # roles and ports as JSON
    python3 e2e/pgcluster.py promote --dir D           # pg_ctl promote the replica, wait until it is writable
    python3 e2e/pgcluster.py stop-node --dir D NAME    # NAME is primary or replica (their roles at start)
    python3 e2e/pgcluster.py start-node --dir D NAME
    python3 e2e/pgcluster.py stop --dir D              # stop both nodes and delete D

Nodes keep the names of their roles at start ("primary", "replica") even after a promotion.
PostgreSQL refuses to run as root, so when we are root every server-side command runs as the postgres user.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ClusterError(RuntimeError):
    """A cluster command failed; the message carries the command's output."""


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the kernel picks it when we bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct free ports (all sockets are held open together so the kernel cannot repeat one)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pg_bindir() -> str:
    """Directory of initdb/pg_ctl: $PG_BINDIR, else PostgreSQL 15 from Debian's layout, else the newest installed."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    if os.path.exists("/usr/lib/postgresql/15/bin/initdb"):
        return "/usr/lib/postgresql/15/bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise ClusterError("cannot find initdb: install postgresql-15 or set PG_BINDIR")


def client_env(**extra: str) -> dict:
    """Our environment without PG* variables (tests must not depend on the caller's PGHOST etc.)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    env.update(extra)
    return env


def psql(port: int, sql: str, host: str = HOST, timeout: float = 30, check: bool = True,
         dbname: str = "postgres", extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run one SQL string with psql (unaligned, tuples only, quiet); raise ClusterError on failure when check."""
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
           "-U", "postgres", "-d", dbname, "-c", sql] + (extra or [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=client_env(PGCONNECT_TIMEOUT="5"))
    if check and res.returncode != 0:
        raise ClusterError(f"psql -p {port} -c {sql!r} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def query(port: int, sql: str, **kw) -> str:
    """First output of psql for `sql`, stripped."""
    return psql(port, sql, **kw).stdout.strip()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Call predicate until it returns a truthy value (returned) or timeout passes (ClusterError)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (ClusterError, OSError, subprocess.SubprocessError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout}s waiting for {what}" +
                               (f"; last error: {last_exc}" if last_exc else ""))
        time.sleep(interval)


@dataclass
class Node:
    """One PostgreSQL server of the cluster."""
    name: str
    port: int
    datadir: str
    logfile: str
    host: str = HOST

    def dsn(self, dbname: str = "postgres", user: str = "postgres", **kw) -> str:
        parts = {"host": self.host, "port": self.port, "dbname": dbname, "user": user, **kw}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class PgCluster:
    """A PostgreSQL primary ("primary") and one streaming replica ("replica") under base_dir, on free ports.

    With ssl=True both nodes get ssl=on with a fresh self-signed certificate (openssl CLI), see ssl_cert.
    Instances created in-process stop themselves at interpreter exit unless keep=True.
    With hosts=("127.0.0.2", "127.0.0.3") the two nodes listen on those addresses with the same port, as
    pods with their own IPs do.
    """

    def __init__(self, base_dir: str | None = None, ssl: bool = False, keep: bool = False,
                 hosts: tuple[str, str] | None = None):
        self.base_dir = base_dir
        self.ssl = ssl
        self.keep = keep
        self.hosts = hosts
        self.nodes: dict[str, Node] = {}
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.started = False

    # ----- properties -------------------------------------------------------------------------
    @property
    def primary(self) -> Node:
        return self.nodes["primary"]

    @property
    def replica(self) -> Node:
        return self.nodes["replica"]

    @property
    def primary_port(self) -> int:
        return self.primary.port

    @property
    def replica_port(self) -> int:
        return self.replica.port

    def port(self, name: str) -> int:
        return self.nodes[name].port

    def dsn(self, name: str = "primary", **kw) -> str:
        return self.nodes[name].dsn(**kw)

    @property
    def candidates(self) -> str:
        """The --candidates value for pgkeel: every node, primary first."""
        return ",".join(n.address for n in self.nodes.values())

    @property
    def ssl_cert(self) -> str:
        return os.path.join(self.base_dir, "server.crt")

    @property
    def ssl_key(self) -> str:
        return os.path.join(self.base_dir, "server.key")

    # ----- running commands -------------------------------------------------------------------
    def _as_postgres(self, cmd: list[str]) -> list[str]:
        if not self.as_root:
            return cmd
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                "env", "HOME=/var/lib/postgresql"] + cmd

    def _run(self, cmd: list[str], timeout: float = 60) -> str:
        full = self._as_postgres(cmd)
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=self.base_dir,
                             env=client_env(), stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        return res.stdout

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _chown(self, path: str):
        if self.as_root:
            shutil.chown(path, "postgres", "postgres")

    # ----- life cycle -------------------------------------------------------------------------
    def start(self) -> "PgCluster":
        """initdb the primary, start it, pg_basebackup the replica, start it, wait until it streams."""
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="pgkeel-e2e-", dir="/tmp")
        os.makedirs(self.base_dir, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self._chown(self.base_dir)
        if not self.keep:
            atexit.register(self._atexit)
        if self.hosts:
            port = free_port(self.hosts[0])
            while not all(_port_free(h, port) for h in self.hosts):
                port = free_port(self.hosts[0])
            placement = (("primary", self.hosts[0], port), ("replica", self.hosts[1], port))
        else:
            p1, p2 = free_ports(2)
            placement = (("primary", HOST, p1), ("replica", HOST, p2))
        for name, host, port in placement:
            self.nodes[name] = Node(name, port, os.path.join(self.base_dir, name),
                                    os.path.join(self.base_dir, f"{name}.log"), host)
            os.makedirs(self._socket_dir(name), exist_ok=True)
            self._chown(self._socket_dir(name))
        if self.ssl:
            self._make_certificate()
        self._init_primary()
        self._pg_ctl_start(self.primary)
        self._make_replica()
        self._pg_ctl_start(self.replica)
        self.wait_streaming()
        self.started = True
        self.save_state()
        return self

    def _socket_dir(self, name: str) -> str:
        # One per node: two nodes on one port would fight over one .s.PGSQL.<port> in a shared directory.
        return os.path.join(self.base_dir, f"sock-{name}")

    def _make_certificate(self):
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-keyout", self.ssl_key, "-out", self.ssl_cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        os.chmod(self.ssl_key, 0o600)
        self._chown(self.ssl_key)
        self._chown(self.ssl_cert)

    def _init_primary(self):
        node = self.primary
        self._run([self._bin("initdb"), "-D", node.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C.UTF-8", "-N"])
        conf = [
            f"listen_addresses = '{node.host}'",
            f"port = {node.port}",
            f"unix_socket_directories = '{self._socket_dir(node.name)}'",
            "wal_level = replica",
            "max_wal_senders = 10",
            "max_replication_slots = 10",
            "hot_standby = on",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 32MB",
            "max_connections = 100",
            "cluster_name = 'primary'",
        ]
        if self.ssl:
            conf += ["ssl = on", f"ssl_cert_file = '{self.ssl_cert}'", f"ssl_key_file = '{self.ssl_key}'"]
        with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgcluster.py\n" + "\n".join(conf) + "\n")
        with open(os.path.join(node.datadir, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.0/8 trust\nhost all all 127.0.0.0/8 trust\n")

    def _make_replica(self):
        node = self.replica
        self._run([self._bin("pg_basebackup"), "-h", self.primary.host, "-p", str(self.primary.port), "-U",
                   "postgres", "-D", node.datadir, "-R", "-X", "stream", "-c", "fast", "-C", "-S", "replica_slot"])
        with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
            f.write(f"port = {node.port}\ncluster_name = 'replica'\nlisten_addresses = '{node.host}'\n"
                    f"unix_socket_directories = '{self._socket_dir(node.name)}'\n")

    def _pg_ctl_start(self, node: Node):
        self._run([self._bin("pg_ctl"), "-D", node.datadir, "-l", node.logfile, "-w", "-t", "60", "start"],
                  timeout=90)

    def wait_streaming(self, timeout: float = 30):
        """Until the replica streams from the primary (pg_stat_replication on the primary says so)."""
        wait_until(lambda: query(self.primary.port,
                                 "select count(*) from pg_stat_replication where state = 'streaming'",
                                 host=self.primary.host) == "1",
                   timeout, what="replica streaming")

    def wait_caught_up(self, timeout: float = 30):
        """Until the replica has replayed everything the primary has written so far."""
        # A synchronous commit flushes all WAL before it; the write position is then its end.
        lsn = query(self.primary.port, "set synchronous_commit = on; select txid_current(); "
                                       "select pg_current_wal_lsn()", host=self.primary.host).splitlines()[-1]
        wait_until(lambda: query(self.replica.port,
                                 f"select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn",
                                 host=self.replica.host) == "t",
                   timeout, what=f"replica replay past {lsn}")

    def in_recovery(self, name: str) -> bool:
        return query(self.port(name), "select pg_is_in_recovery()", host=self.nodes[name].host) == "t"

    def promote_replica(self, name: str = "replica", timeout: float = 30) -> float:
        """pg_ctl promote, then wait until the node accepts writes; returns the seconds it took."""
        t0 = time.monotonic()
        node = self.nodes[name]
        self._run([self._bin("pg_ctl"), "-D", node.datadir, "-w", "-t", str(int(timeout)), "promote"],
                  timeout=timeout + 10)
        wait_until(lambda: query(node.port, "select pg_is_in_recovery()", host=node.host) == "f", timeout,
                   interval=0.01, what=f"{name} to leave recovery")
        wait_until(lambda: psql(node.port, "create temp table promote_check(x int)", host=node.host,
                                check=False).returncode == 0,
                   timeout, interval=0.01, what=f"{name} to accept writes")
        return time.monotonic() - t0

    def is_running(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.nodes[name].datadir, "postmaster.pid"))

    def stop_node(self, name: str, mode: str = "fast"):
        """pg_ctl stop -m mode (fast, immediate or smart); a no-op when the node is not running."""
        if self.is_running(name):
            node = self.nodes[name]
            self._run([self._bin("pg_ctl"), "-D", node.datadir, "-m", mode, "-w", "-t", "60", "stop"], timeout=90)

    def start_node(self, name: str):
        """Start a stopped node again with its old configuration (a replica resumes streaming)."""
        if not self.is_running(name):
            self._pg_ctl_start(self.nodes[name])

    def stop_all(self, remove: bool = True):
        """Stop every node (replica first); delete base_dir when remove."""
        for name in reversed(list(self.nodes)):
            try:
                self.stop_node(name, mode="fast")
            except ClusterError:
                self.stop_node(name, mode="immediate")
        if remove and self.base_dir and os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self.started = False

    def _atexit(self):
        if self.started and self.base_dir and os.path.isdir(self.base_dir):
            try:
                self.stop_all()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            with open(self.nodes[name].logfile, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    # ----- state for the command line ---------------------------------------------------------
    def state(self) -> dict:
        return {"dir": self.base_dir, "ssl": self.ssl, "host": HOST,
                "primary": self.primary.port, "replica": self.replica.port,
                "nodes": {n.name: {"port": n.port, "datadir": n.datadir, "log": n.logfile, "host": n.host}
                          for n in self.nodes.values()}}

    def save_state(self):
        with open(os.path.join(self.base_dir, STATE_FILE), "w") as f:
            json.dump(self.state(), f, indent=2)

    @classmethod
    def load(cls, base_dir: str) -> "PgCluster":
        with open(os.path.join(base_dir, STATE_FILE)) as f:
            st = json.load(f)
        cluster = cls(base_dir=base_dir, ssl=st["ssl"], keep=True)
        for name, n in st["nodes"].items():
            cluster.nodes[name] = Node(name, n["port"], n["datadir"], n["log"], n.get("host", HOST))
        cluster.started = True
        return cluster


def pgkeel_binary() -> str:
    """$PGKEEL_BIN, else build/pgkeel in the repository."""
    return os.environ.get("PGKEEL_BIN", str(REPO_ROOT / "build" / "pgkeel"))


class Pgkeel:
    """One pgkeel process on free loopback ports, with stderr captured in log_path.

    flags: extra or overriding flags, as {"probe_interval": "200ms"}; a value of None drops a default flag.
    """

    DEFAULT_FLAGS = {
        "probe": "dbname=postgres user=postgres",
        "probe_interval": "200ms",
        "probe_timeout": "1s",
        "unhealthy_after": "2",
        "healthy_after": "1",
        "primary_wait": "2s",
        "connect_timeout": "2s",
        "workers": "2",
        "log_level": "debug",
        "shutdown_timeout": "5s",
    }

    def __init__(self, candidates: str, log_path: str, flags: dict | None = None, binary: str | None = None,
                 env: dict | None = None, pass_candidates_flag: bool = True, equals_form: bool = False,
                 listen_flags: bool = True, listen_ports: tuple[int, int] | None = None):
        self.binary = binary or pgkeel_binary()
        self.candidates = candidates
        self.log_path = str(log_path)
        self.primary_port, self.replica_port, self.admin_port = free_ports(3)
        if listen_ports:  # the test names them, e.g. in a config file, with listen_flags=False
            self.primary_port, self.replica_port = listen_ports
        self.listen_flags = listen_flags
        # A port of its own for the admin server, so several instances never fight over 9432.
        self.flags = {**self.DEFAULT_FLAGS, "admin_listen": f"{HOST}:{self.admin_port}"}
        self.flags.update(flags or {})
        self.env = env
        self.pass_candidates_flag = pass_candidates_flag
        self.equals_form = equals_form  # --flag=value instead of --flag value
        self.proc: subprocess.Popen | None = None
        self.expect_exit = False  # set by tests that end the process themselves

    def argv(self) -> list[str]:
        argv = [self.binary]
        if self.pass_candidates_flag:
            argv += ["--candidates", self.candidates]
        if self.listen_flags:
            argv += ["--listen-primary", f"{HOST}:{self.primary_port}",
                     "--listen-replica", f"{HOST}:{self.replica_port}"]
        for key, value in self.flags.items():
            if value is not None:
                argv += ["--" + key.replace("_", "-"), str(value)]
        if self.equals_form:
            argv = [argv[0]] + [f"{argv[i]}={argv[i + 1]}" for i in range(1, len(argv), 2)]
        return argv

    def start(self, wait: bool = True, timeout: float = 15) -> "Pgkeel":
        """Start pgkeel; with wait, return once `SELECT 1` works through the primary port."""
        if not os.access(self.binary, os.X_OK):
            raise ClusterError(f"pgkeel binary not found at {self.binary} (build it, or set PGKEEL_BIN)")
        env = client_env(**(self.env or {}))
        with open(self.log_path, "ab") as log:
            log.write(("+ " + " ".join(self.argv()) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise ClusterError(f"pgkeel exited with code {self.proc.returncode}; log:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 15, role: str = "primary"):
        """Until a `SELECT 1` through the role's port works (and for role replica: the answer comes from a replica)."""
        def ready():
            self._check_alive()
            if role == "primary":
                return query(self.port(role), "select 1", timeout=10) == "1"
            return query(self.port(role), "select pg_is_in_recovery()", timeout=10) == "t"
        try:
            wait_until(ready, timeout, interval=0.05, what=f"pgkeel to serve its {role} port")
        except ClusterError as exc:
            raise ClusterError(f"{exc}\npgkeel log:\n{self.log_tail()}") from None

    def admin_url(self, path: str) -> str:
        return f"http://{HOST}:{self.admin_port}{path}"

    def port(self, role: str = "primary") -> int:
        return self.primary_port if role == "primary" else self.replica_port

    def dsn(self, role: str = "primary", dbname: str = "postgres", user: str = "postgres", **kw) -> str:
        parts = {"host": HOST, "port": self.port(role), "dbname": dbname, "user": user, **kw}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def signal(self, sig: int):
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        return "".join(self.log_text().splitlines(keepends=True)[-lines:])


# ----- command line ---------------------------------------------------------------------------
def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="PostgreSQL primary + replica on loopback for pgkeel's e2e and demo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("start", "stop", "status", "promote"):
        p = sub.add_parser(cmd)
        p.add_argument("--dir", required=True)
        if cmd == "start":
            p.add_argument("--ssl", action="store_true", help="ssl=on with a self-signed certificate")
    for cmd in ("stop-node", "start-node"):
        p = sub.add_parser(cmd)
        p.add_argument("--dir", required=True)
        p.add_argument("name", choices=["primary", "replica"])
        p.add_argument("--mode", default="fast", choices=["smart", "fast", "immediate"])
    args = ap.parse_args(argv)
    base = os.path.abspath(args.dir)
    state = os.path.join(base, STATE_FILE)

    if args.cmd == "start":
        if os.path.exists(state):
            print(f"pgcluster: {base} already holds a cluster; run `stop --dir {args.dir}` first", file=sys.stderr)
            return 1
        cluster = PgCluster(base_dir=base, ssl=args.ssl, keep=True)
        try:
            cluster.start()
        except Exception:
            cluster.stop_all(remove=False)
            raise
        print(json.dumps(cluster.state()))
        return 0
    if args.cmd == "stop":
        if os.path.exists(state):
            PgCluster.load(base).stop_all(remove=True)
        elif os.path.isdir(base):
            shutil.rmtree(base, ignore_errors=True)
        return 0
    if not os.path.exists(state):
        print(f"pgcluster: no cluster in {base}", file=sys.stderr)
        return 1
    cluster = PgCluster.load(base)
    if args.cmd == "status":
        st = cluster.state()
        for name in cluster.nodes:
            running = cluster.is_running(name)
            role = "stopped"
            if running:
                res = psql(cluster.port(name), "select pg_is_in_recovery()", check=False)
                role = {"t": "replica", "f": "primary"}.get(res.stdout.strip(), "unreachable")
            st["nodes"][name]["role"] = role
        print(json.dumps(st))
    elif args.cmd == "promote":
        took = cluster.promote_replica()
        print(f"replica (port {cluster.replica_port}) promoted and writable after {took:.2f}s")
    elif args.cmd == "stop-node":
        cluster.stop_node(args.name, mode=args.mode)
        print(f"{args.name} (port {cluster.port(args.name)}) stopped")
    elif args.cmd == "start-node":
        cluster.start_node(args.name)
        print(f"{args.name} (port {cluster.port(args.name)}) started")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
