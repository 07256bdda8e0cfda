#!/usr/bin/env python3
"""Throwaway Patroni 3.0 + etcd 3.4 cluster on loopback (one etcd, N Patroni-managed PostgreSQL 15 members).

Made for pgkeel's e2e tests of Patroni discovery, and usable by hand:

    python3 e2e/patronicluster.py run [--members 3] [--ttl 10 --loop-wait 2 --retry-timeout 3] [--same-host]

prints the cluster's addresses as JSON and keeps it up until Ctrl-C.

Layout (``c = PatroniCluster(tmpdir).start()``):

* etcd: one node on ``127.0.0.1``, free client and peer ports; ``c.etcd_url`` is ``http://127.0.0.1:<client>``.
* members ``m0 .. m{N-1}``; by default each on its own loopback address with the same PostgreSQL port, like
  pods (``127.0.0.2``, ``127.0.0.3``, ... : Linux routes all of 127/8 to ``lo``); with ``distinct_hosts=False``
  all on ``127.0.0.1`` with distinct ports. The REST API of a member listens on the member's address with a free
  port of its own. ``c.member("m0").host / .pg_port / .api_url / .pg_pid() / .patroni_pid``.
* DCS keys under ``c.namespace`` (``/service/``) + ``c.scope`` (unique per harness):
  ``/service/<scope>/{leader,members/<name>,config,initialize,history,status,failover,sync}``; ``leader`` holds
  just the leader's member name and is bound to a lease (it disappears about ``ttl`` s after its holder dies).
* ``pg_hba``: ``local all all trust``; ``host all all 127.0.0.0/8 <auth>`` and ``host replication all
  127.0.0.0/8 <auth>`` with auth ``trust`` by default (``auth="scram-sha-256"`` for password checks). The
  superuser ``postgres`` has the password ``c.superuser_password`` either way; replication user ``replicator``.
* logs: ``<dir>/etcd.log``, ``<dir>/m0/patroni.log`` (Patroni; PostgreSQL's own stderr before the logging
  collector starts), ``<dir>/m0/pglog/postgresql.log`` (PostgreSQL). ``c.log_tails()`` returns their ends.

API (times are seconds; every wait raises PatroniError at its timeout):

* ``PatroniCluster(tmpdir=None, members=3, ttl=20, loop_wait=5, retry_timeout=5, distinct_hosts=True,
  auth="trust", scope=None, keep=False, dcs_extra=None)``; ``.start(timeout=60)`` returns once /cluster shows one
  running leader and members-1 running replicas, every Patroni answers on its REST API and the leader's
  pg_stat_replication shows every replica streaming (``.start_seconds``); ``.stop(graceful=True)``.
* state: ``.cluster(via=None)`` (``GET /cluster`` JSON), ``.leader()``, ``.healthy()``, ``.wait_healthy()``,
  ``.wait_for(predicate, timeout)``, ``.pg_is_in_recovery(name)`` (True/False, None when it cannot be asked),
  ``.query(name, sql)``, ``.rest(name, method, path, body)``, ``.api_urls()``, ``.pg_addresses()``,
  ``.member(name)``, ``.members``, ``.scope``, ``.namespace``, ``.key_prefix``, ``.log_tails()``, ``.info()``.
* actions: ``.switchover(candidate=None)`` (REST ``POST /switchover {"leader":..,"candidate":..}``; returns the
  new leader once it answers f and the cluster is healthy again), ``.kill_leader_hard(name=None)`` (kill -9 of
  Patroni and postmaster), ``.kill_patroni_only(name)`` (PostgreSQL keeps running, without a lock),
  ``.restart_member(name)``, ``.heal()`` (restart every member whose Patroni is down, wait until healthy).
* etcd: ``.etcd_url``, ``.etcd_leader_key()``, ``.etcd_get(key, prefix=False)``, ``.etcd_post(path, body)``,
  ``.etcd_watch(key=None, prefix=True, start_revision=None)`` -> ``EtcdWatch`` (``.messages``, ``.raw``,
  ``.events()``, ``.wait_for()``, ``.close()``).

When we are root, Patroni (and so PostgreSQL) runs as the ``postgres`` user through ``setpriv``, which execs, so
``member.patroni_pid`` is Patroni's own pid (``runuser`` forks and waits, so its pid would be runuser's). initdb
refuses root. Patroni runs in a session of its own; the postmaster is started by Patroni in yet another session
(``os.setsid`` in ``patroni/postgresql/postmaster.py``), so ``stop()`` stops both kinds of groups, and at the end
kills any process whose command line or working directory is still under the cluster's directory.

etcd v3 JSON gateway (grpc-gateway) as etcd 3.4.23 serves it. This is what Patroni's own ``etcd3`` DCS client uses,
and what a C++ client can implement with plain HTTP/1.1 + JSON:

* Paths: ``POST /v3/kv/range``, ``/v3/kv/put``, ``/v3/kv/deleterange``, ``/v3/kv/compaction``,
  ``/v3/lease/grant``, ``/v3/watch`` (3.4 also still serves the ``/v3beta/`` prefix; ``/v3alpha/`` answers 404).
  ``GET /version`` gives ``{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}`` and ``GET /health``
  ``{"health":"true"}``. Bodies are JSON; the Content-Type of the request is not checked.
* ``key``, ``range_end`` and ``value`` are **base64** of the raw bytes. Every int64 (revision, lease, version,
  count, ids) is a JSON **string**. Fields with zero values are **omitted**: no ``kvs`` and no ``count`` when
  nothing matched, no ``type`` for a PUT event (only ``"type":"DELETE"`` appears), no ``watch_id`` for watch 0.
* A prefix is the range ``[prefix, prefix with its last byte + 1)``: for ``/service/s1/`` the range_end is
  ``/service/s10``.

Range (``curl -s -X POST http://127.0.0.1:<port>/v3/kv/range -d '{"key":"L3NlcnZpY2UvczEvbGVhZGVy"}'``; the key
is base64 of ``/service/s1/leader``), captured (one line on the wire)::

    {"header":{"cluster_id":"3664121347810696361","member_id":"13816651514214477724","revision":"23",
     "raft_term":"2"},"kvs":[{"key":"L3NlcnZpY2UvczEvbGVhZGVy","create_revision":"13","mod_revision":"13",
     "version":"1","value":"bTE=","lease":"8042481159150960648"}],"count":"1"}

(``bTE=`` is ``m1``.) No match: ``{"header":{...}}`` only. Add ``"range_end":"<base64>"`` for a prefix.

Watch: ``POST /v3/watch`` with one ``WatchRequest`` as the body and no end::

    {"create_request":{"key":"<base64>","range_end":"<base64>","start_revision":"<rev>","prev_kv":true}}

``start_revision`` is optional (default: from now on; use the range answer's ``header.revision`` + 1 to miss
nothing), ``prev_kv`` adds the value before the change. The answer is ``200``, ``Content-Type:
application/json``, ``Transfer-Encoding: chunked``, and never ends by itself: one JSON object per line (``\\n``
ends each, and etcd sends each in a chunk of its own, but a client must de-chunk and split on ``\\n`` rather than
trust chunk boundaries). Every message is wrapped in ``{"result": WatchResponse}``; the first one confirms the
watch with ``"created":true``. Captured from this harness (scope ``s1``, ttl 10, loop_wait 2) with
``{"create_request":{"key":"L3NlcnZpY2UvczEvbGVhZGVy","prev_kv":true}}`` (the single key ``/service/s1/leader``)
while the leader went m1 -> m0 by switchover and then m0 -> m2 by ``kill -9`` of m0's Patroni and postmaster. Each
message below is one line on the wire; here it is wrapped, and "H(rev)" stands for the header, which reads
``{"cluster_id":"3664121347810696361","member_id":"13816651514214477724","revision":"<rev>","raft_term":"2"}``.
The number before each message is its arrival in seconds relative to the kill::

    -7.17 {"result":{"header":{"cluster_id":"3664121347810696361","member_id":"13816651514214477724",
                     "revision":"23","raft_term":"2"},"created":true}}
    -5.82 {"result":{"header":H(28),"events":[{"type":"DELETE","kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy",
          "mod_revision":"28"},"prev_kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy","create_revision":"13",
          "mod_revision":"13","version":"1","value":"bTE=","lease":"8042481159150960648"}}]}}
    -5.69 {"result":{"header":H(32),"events":[{"kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy","create_revision":"32",
          "mod_revision":"32","version":"1","value":"bTA=","lease":"8042481159150960656"}}]}}
     9.54 {"result":{"header":H(44),"events":[{"type":"DELETE","kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy",
          "mod_revision":"44"},"prev_kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy","create_revision":"32",
          "mod_revision":"32","version":"1","value":"bTA=","lease":"8042481159150960656"}}]}}
     9.62 {"result":{"header":H(45),"events":[{"kv":{"key":"L3NlcnZpY2UvczEvbGVhZGVy","create_revision":"45",
          "mod_revision":"45","version":"1","value":"bTI=","lease":"8042481159150960658"}}]}}

``bTE=``/``bTA=``/``bTI=`` are m1/m0/m2. So: on a switchover the old leader **deletes** the leader key and the new
one **creates** it (new ``create_revision``, its own lease) about 0.1 s later; it is never updated in place. After a
kill -9 the key stays until its lease runs out (here 9.5 s after the kill), arrives as a DELETE, and the new
leader's PUT follows within about 0.1 s. The gaps in ``revision`` (28 -> 32) are changes to other keys. A watch on
the whole prefix during a switchover from m0 to m1 (another run) showed, in order: ``failover`` put to
``{"leader":"m0","member":"m1"}``; ``status`` and ``members/*`` updates; the leader key DELETE (value m0);
``members/m0`` with ``"state":"stopping","role":"demoted"``; the leader key PUT (value m1); ``members/m0`` with
``"state":"stopped"``; ``failover`` put to ``{}`` (it is not deleted); ``members/m1`` with ``"role":"promoted"``
and then ``"role":"master"`` on timeline 2, ``history`` in between; at last ``members/m0`` as a running replica.
A member value is JSON like ``{"conn_url":"postgres://127.0.0.2:43945/postgres",
"api_url":"http://127.0.0.2:46191/patroni","state":"running","role":"master","version":"3.0.2",
"xlog_location":67109424,"timeline":2}``.

On a request etcd cannot decode (not JSON) it sends one ``{"error":"...","message":"...","code":2}`` line and
ends the response; a JSON body without ``create_request`` is silently ignored (the stream stays open and
empty). A watch from a compacted revision is answered with ``"created":true`` and then
``{"result":{"header":{...},"canceled":true,"compact_revision":"5"}}``, and the HTTP stream stays open: the client
must close it, range again and watch from the new revision. A lease expiring shows up as a ``DELETE`` event.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgcluster import client_env, pg_bindir  # noqa: E402

try:
    import psycopg2
except ImportError:  # pragma: no cover - the CLI also works with psql only
    psycopg2 = None

ETCD_HOST = "127.0.0.1"
NAMESPACE = "/service/"
SUPERUSER_PASSWORD = "pgkeel-super"
REPLICATION_PASSWORD = "pgkeel-repl"
REWIND_PASSWORD = "pgkeel-rewind"


class PatroniError(RuntimeError):
    """The cluster did not do what was asked in time; the message says what and usually carries log tails."""


class DaemonDied(PatroniError):
    """etcd or a Patroni we did not stop exited; waits end at once with this."""


# ----- small helpers ------------------------------------------------------------------------------
def _try_bind(host: str, port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return s
    except OSError:
        s.close()
        return None


def port_free_on_all(hosts: list[str], attempts: int = 50) -> int:
    """A port nobody listens on at any of hosts (picked by the kernel on the first host, checked on the rest)."""
    for _ in range(attempts):
        held = [_try_bind(hosts[0], 0)]
        port = held[0].getsockname()[1]
        held += [_try_bind(h, port) for h in hosts[1:]]
        ok = all(held)
        for s in held:
            if s:
                s.close()
        if ok:
            return port
    raise PatroniError(f"no port free on all of {hosts}")


def free_ports_on(host: str, count: int) -> list[int]:
    """`count` distinct free ports on host (all bound together so the kernel cannot repeat one)."""
    socks = [_try_bind(host, 0) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via $http_proxy


def http_request(method: str, url: str, body: dict | None = None, timeout: float = 2) -> tuple[int, str]:
    """(status, body text) of one HTTP request; non-2xx statuses are returned, not raised; OSError when no answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> str | None:
    return None if text is None else base64.b64decode(text).decode(errors="replace")


def prefix_range_end(prefix: str) -> str:
    """etcd's range_end for "every key starting with prefix": the prefix with its last byte incremented."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw).decode()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int | None, sig: int):
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _killpg(pgid: int | None, sig: int):
    if pgid and pgid != os.getpgrp():
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid is gone; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _tail(path: str | Path, lines: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})\n"


# ----- etcd watch stream --------------------------------------------------------------------------
@dataclass
class EtcdEvent:
    """One decoded watch event: kind PUT or DELETE, key and value as text (value None for a DELETE)."""
    kind: str
    key: str
    value: str | None
    mod_revision: int
    prev_value: str | None
    at: float  # time.monotonic() when the message arrived


class EtcdWatch:
    """One ``POST /v3/watch`` stream, read by a background thread.

    ``messages`` holds every decoded line (``{"result": {...}}``) in order, ``raw`` the exact lines as bytes,
    ``events()`` the decoded events. Use as a context manager, or call ``close()``.
    """

    def __init__(self, etcd_url: str, key: str, prefix: bool = False, start_revision: int | None = None,
                 prev_kv: bool = True):
        host, port = etcd_url.removeprefix("http://").rsplit(":", 1)
        req: dict = {"key": b64(key)}
        if prefix:
            req["range_end"] = b64(prefix_range_end(key))
        if start_revision is not None:
            req["start_revision"] = str(start_revision)
        if prev_kv:
            req["prev_kv"] = True
        self.request_body = json.dumps({"create_request": req})
        self.messages: list[dict] = []
        self.raw: list[bytes] = []
        self.arrival: list[float] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._conn = http.client.HTTPConnection(host, int(port), timeout=5)
        self._conn.request("POST", "/v3/watch", body=self.request_body,
                           headers={"Content-Type": "application/json"})
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            raise PatroniError(f"etcd watch answered {self._resp.status}: {self._resp.read()[:500]!r}")
        self.headers = dict(self._resp.getheaders())
        self._conn.sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._thread.start()
        self.wait_for(lambda: any(m.get("result", {}).get("created") for m in self.messages), 5, "watch created")

    def _run(self):
        try:
            while True:
                line = self._resp.readline()
                if not line:
                    break
                msg = json.loads(line)
                with self._cond:
                    self.raw.append(line)
                    self.messages.append(msg)
                    self.arrival.append(time.monotonic())
                    self._cond.notify_all()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.error = exc
        with self._cond:
            self._cond.notify_all()

    def events(self) -> list[EtcdEvent]:
        with self._cond:
            pairs = list(zip(self.messages, self.arrival))
        out = []
        for msg, at in pairs:
            for ev in msg.get("result", {}).get("events", []):
                kv, prev = ev["kv"], ev.get("prev_kv", {})
                out.append(EtcdEvent(ev.get("type", "PUT"), unb64(kv["key"]), unb64(kv.get("value")),
                                     int(kv.get("mod_revision", 0)), unb64(prev.get("value")), at))
        return out

    def wait_for(self, predicate, timeout: float, what: str = "watch message"):
        """Until predicate() (called under the lock, after each message) is truthy; PatroniError at timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (not self._thread.is_alive() and self.error is not None):
                    raise PatroniError(f"etcd watch: no {what} within {timeout}s (error: {self.error}); "
                                       f"messages: {self.messages[-5:]}")
                self._cond.wait(min(left, 0.5))

    def close(self):
        try:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self._thread.join(5)
        self._conn.close()

    def __enter__(self) -> "EtcdWatch":
        return self

    def __exit__(self, *exc):
        self.close()


# ----- the cluster --------------------------------------------------------------------------------
@dataclass
class Member:
    """One Patroni member and its PostgreSQL."""
    name: str
    host: str
    pg_port: int
    api_port: int
    dir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    expected_down: bool = False  # set while Patroni is down on purpose (kill_*, stop)
    killed_at: float | None = None  # time.monotonic() right after the last kill_* sent its signals

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "run"

    @property
    def config_path(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.dir / "patroni.log"

    @property
    def pg_log_path(self) -> Path:
        return self.dir / "pglog" / "postgresql.log"

    @property
    def api_url(self) -> str:
        """Base URL of the REST API (no path; /cluster's api_url is this + "/patroni")."""
        return f"http://{self.host}:{self.api_port}"

    @property
    def pg_address(self) -> str:
        return f"{self.host}:{self.pg_port}"

    @property
    def patroni_pid(self) -> int | None:
        """Pid of the Patroni daemon, None when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def pg_pid(self) -> int | None:
        """Postmaster pid (first line of postmaster.pid) when that process is alive, else None."""
        try:
            with open(self.data_dir / "postmaster.pid") as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str = SUPERUSER_PASSWORD,
            **kw) -> str:
        parts = {"host": self.host, "port": self.pg_port, "dbname": dbname, "user": user,
                 "password": password, **kw}
        return " ".join(f"{k}={v}" for k, v in parts.items())


class PatroniCluster:
    """etcd + `members` Patroni members on loopback under tmpdir (a fresh directory in /tmp when None).

    When we are root, tmpdir and its parents must be reachable by the postgres user (pytest's tmp_path is not:
    /tmp/pytest-of-root is 0700), so tests pass None. Data directories are deleted by stop(); logs stay in a
    tmpdir that was passed in.

    Timing (``ttl``, ``loop_wait``, ``retry_timeout``) goes into the bootstrap DCS config; Patroni wants
    ``loop_wait + 2 * retry_timeout <= ttl``. Instances stop themselves at interpreter exit unless keep=True.
    """

    def __init__(self, tmpdir: str | Path | None = None, members: int = 3, ttl: int = 20, loop_wait: int = 5,
                 retry_timeout: int = 5, distinct_hosts: bool = True, auth: str = "trust",
                 scope: str | None = None, keep: bool = False, dcs_extra: dict | None = None):
        if loop_wait + 2 * retry_timeout > ttl:
            raise ValueError(f"loop_wait + 2*retry_timeout must be <= ttl (got {loop_wait} + 2*{retry_timeout} "
                             f"> {ttl})")
        if not 1 <= members <= 200:
            raise ValueError("members must be 1..200")
        self.owns_dir = tmpdir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="pgkeel-patroni-", dir="/tmp") if tmpdir is None else tmpdir)
        self.n_members = members
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.distinct_hosts = distinct_hosts
        self.auth = auth
        self.scope = scope or f"pgkeel-{uuid.uuid4().hex[:8]}"
        self.namespace = NAMESPACE
        self.superuser_password = SUPERUSER_PASSWORD
        self.keep = keep
        self.dcs_extra = dcs_extra or {}
        self.as_root = os.geteuid() == 0
        self.bindir = pg_bindir()
        self.members: dict[str, Member] = {}
        self.etcd_proc: subprocess.Popen | None = None
        self.etcd_client_port = self.etcd_peer_port = 0
        self.start_seconds: float | None = None
        self.stop_seconds: dict[str, float] = {}  # by member, after stop(): seconds until its Patroni exited
        self.leftovers_killed: list[int] = []  # after stop(): pids found under the directory and killed
        self._stopped = False

    # ----- addresses -----------------------------------------------------------------------------
    @property
    def etcd_url(self) -> str:
        return f"http://{ETCD_HOST}:{self.etcd_client_port}"

    @property
    def etcd_dir(self) -> Path:
        return self.base_dir / "etcd"

    @property
    def etcd_log_path(self) -> Path:
        return self.base_dir / "etcd.log"

    @property
    def key_prefix(self) -> str:
        """``/service/<scope>/``: every DCS key of this cluster starts with it."""
        return f"{self.namespace}{self.scope}/"

    def member(self, name: str) -> Member:
        return self.members[name]

    def api_urls(self) -> list[str]:
        return [m.api_url for m in self.members.values()]

    def pg_addresses(self) -> list[str]:
        """host:port of every member's PostgreSQL (a --candidates style list)."""
        return [m.pg_address for m in self.members.values()]

    # ----- life cycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "PatroniCluster":
        """Start etcd and every member at once; return when one leader and members-1 streaming replicas exist.

        On failure everything is stopped and PatroniError carries the tail of every log.
        """
        t0 = time.monotonic()
        if not self.keep:
            atexit.register(self._atexit)
        try:
            self._prepare()
            self._start_etcd(timeout=15)
            for m in self.members.values():
                self._start_patroni(m)
            self.wait_healthy(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            if isinstance(exc, (PatroniError, OSError, subprocess.SubprocessError)):
                raise PatroniError(f"Patroni cluster did not start: {exc}\n{tails}") from exc
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _prepare(self):
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self._chown(self.base_dir)
        if self.as_root and self._run_as_postgres(["test", "-w", str(self.base_dir)]).returncode != 0:
            raise PatroniError(f"{self.base_dir} (or a parent) is not reachable by the postgres user; pass a "
                               f"directory under /tmp, or tmpdir=None")
        if self.distinct_hosts:
            hosts = [f"127.0.0.{2 + i}" for i in range(self.n_members)]
            pg_ports = [port_free_on_all(hosts)] * self.n_members
        else:
            hosts = ["127.0.0.1"] * self.n_members
            pg_ports = free_ports_on("127.0.0.1", self.n_members)
        api_ports = free_ports_on("127.0.0.1", self.n_members) if not self.distinct_hosts else \
            [free_ports_on(h, 1)[0] for h in hosts]
        self.etcd_client_port, self.etcd_peer_port = free_ports_on(ETCD_HOST, 2)
        for i in range(self.n_members):
            m = Member(f"m{i}", hosts[i], pg_ports[i], api_ports[i], self.base_dir / f"m{i}")
            m.dir.mkdir(mode=0o700, exist_ok=True)
            m.socket_dir.mkdir(exist_ok=True)
            m.config_path.write_text(json.dumps(self._patroni_config(m), indent=2) + "\n")
            for p in (m.dir, m.socket_dir, m.config_path):
                self._chown(p)
            os.chmod(m.dir, 0o700)
            self.members[m.name] = m

    def _patroni_config(self, m: Member) -> dict:
        """Patroni's YAML configuration for a member (written as JSON, which YAML reads)."""
        hba = ["local all all trust", f"host all all 127.0.0.0/8 {self.auth}",
               f"host replication all 127.0.0.0/8 {self.auth}"]
        dcs = {
            "ttl": self.ttl, "loop_wait": self.loop_wait, "retry_timeout": self.retry_timeout,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {
                "use_pg_rewind": True, "use_slots": True,
                "parameters": {"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                               "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "64MB",
                               "max_connections": 100},
            },
            **self.dcs_extra,
        }
        return {
            "scope": self.scope, "namespace": self.namespace, "name": m.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"{m.host}:{m.api_port}", "connect_address": f"{m.host}:{m.api_port}"},
            "etcd3": {"hosts": f"{ETCD_HOST}:{self.etcd_client_port}", "protocol": "http"},
            "bootstrap": {"dcs": dcs, "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "no-sync"]},
            "postgresql": {
                "listen": f"{m.host}:{m.pg_port}", "connect_address": f"{m.host}:{m.pg_port}",
                "data_dir": str(m.data_dir), "bin_dir": self.bindir, "pgpass": str(m.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                    "replication": {"username": "replicator", "password": REPLICATION_PASSWORD},
                    "rewind": {"username": "rewinder", "password": REWIND_PASSWORD},
                },
                "pg_hba": hba,
                "basebackup": [{"checkpoint": "fast"}, "no-sync"],  # no fsync: throwaway data
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
                "parameters": {
                    "unix_socket_directories": str(m.socket_dir), "shared_buffers": "32MB", "fsync": "off",
                    "logging_collector": "on", "log_directory": str(m.dir / "pglog"),
                    "log_filename": "postgresql.log", "log_line_prefix": "%m [%p] %q%u@%d ",
                },
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def _daemon_env(self) -> dict:
        """Our environment without PG*, PATRONI_* and ETCD_* variables (Patroni and etcd read them as config)."""
        env = {k: v for k, v in client_env().items() if not k.startswith(("PATRONI_", "ETCD_", "ETCDCTL_"))}
        if self.as_root:
            env["HOME"] = "/var/lib/postgresql"
            env["USER"] = env["LOGNAME"] = "postgres"
        return env

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        if not self.as_root:
            return cmd
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + cmd

    def _run_as_postgres(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(self._as_postgres(cmd), capture_output=True, text=True, timeout=30,
                              env=self._daemon_env(), stdin=subprocess.DEVNULL)

    def _chown(self, path: Path):
        if self.as_root:
            shutil.chown(path, "postgres", "postgres")

    def _start_etcd(self, timeout: float):
        peer = f"http://{ETCD_HOST}:{self.etcd_peer_port}"
        cmd = ["etcd", "--name", "e0", "--data-dir", str(self.etcd_dir),
               "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"e0={peer}", "--initial-cluster-state", "new",
               "--initial-cluster-token", self.scope]
        with open(self.etcd_log_path, "ab") as log:
            self.etcd_proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                              env=self._daemon_env(), start_new_session=True,
                                              cwd=self.base_dir)

        def healthy():
            if self.etcd_proc.poll() is not None:
                raise DaemonDied(f"etcd exited with code {self.etcd_proc.returncode}")
            status, body = http_request("GET", self.etcd_url + "/health", timeout=1)
            return status == 200 and json.loads(body).get("health") == "true"
        self.wait_for(healthy, timeout, what="etcd /health", interval=0.05)

    def _start_patroni(self, m: Member):
        m.expected_down = False
        with open(m.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} starting patroni {m.config_path}\n".encode())
            log.flush()
            m.proc = subprocess.Popen(self._as_postgres(["patroni", str(m.config_path)]), stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, env=self._daemon_env(), start_new_session=True,
                                      cwd=m.dir)

    def stop(self, graceful: bool = True, timeout: float = 20):
        """Stop every Patroni (SIGTERM: it stops its PostgreSQL), then any PostgreSQL left (SIGQUIT, then
        SIGKILL), then etcd; kill whatever still runs under the cluster's directory; delete the data
        directories (the whole directory when the harness made it). Safe to call more than once.

        graceful=False kills everything at once (SIGKILL / SIGQUIT), which is faster and enough for a teardown.
        """
        for m in self.members.values():
            m.expected_down = True
        patronis = [m.proc for m in self.members.values() if m.patroni_pid]
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        for p in patronis:
            _kill(p.pid, sig)
        t0 = time.monotonic()
        self.stop_seconds = {}
        for m in self.members.values():
            if m.proc in patronis:
                try:
                    m.proc.wait(max(0.1, (timeout if graceful else 5) - (time.monotonic() - t0)))
                except subprocess.TimeoutExpired:
                    _killpg(m.proc.pid, signal.SIGKILL)
                    m.proc.wait(5)
                self.stop_seconds[m.name] = round(time.monotonic() - t0, 2)
        for m in self.members.values():
            if m.proc is not None:  # helpers Patroni left in its group (pg_basebackup, pg_rewind, initdb)
                _killpg(m.proc.pid, signal.SIGKILL)
        self._stop_postmasters()
        if self.etcd_proc is not None and self.etcd_proc.poll() is None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(10)
            except subprocess.TimeoutExpired:
                _killpg(self.etcd_proc.pid, signal.SIGKILL)
                self.etcd_proc.wait(5)
        self.stop_seconds["all"] = round(time.monotonic() - t0, 2)
        self.leftovers_killed = self._kill_leftovers()
        self._remove_data()
        self._stopped = True

    def _stop_postmasters(self):
        pids = [pid for pid in (m.pg_pid() for m in self.members.values()) if pid]
        for pid in pids:
            _kill(pid, signal.SIGQUIT)  # immediate shutdown: the postmaster ends its children first
        for pid in _wait_gone(pids, 5):
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                continue
            _kill(pid, signal.SIGKILL)
            _killpg(pgid, signal.SIGKILL)
        _wait_gone(pids, 5)

    def processes_under_dir(self) -> list[int]:
        """Pids whose command line mentions the cluster's directory or whose working directory is inside it
        (PostgreSQL backends rewrite their command line but keep the data directory as their cwd)."""
        base = str(self.base_dir.resolve())
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if (base in cmdline or cwd == base or cwd.startswith(base + "/")) and _pid_alive(int(entry)):
                found.append(int(entry))
        return found

    def _kill_leftovers(self) -> list[int]:
        left = self.processes_under_dir()
        for pid in left:
            _kill(pid, signal.SIGKILL)
        _wait_gone(left, 5)
        return left

    def _remove_data(self):
        if self.owns_dir and not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            return
        shutil.rmtree(self.etcd_dir, ignore_errors=True)
        for m in self.members.values():
            shutil.rmtree(m.data_dir, ignore_errors=True)

    def _atexit(self):
        if not self._stopped:
            try:
                self.stop(graceful=False)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every log of the cluster, each under a header."""
        out = [f"--- {self.etcd_log_path}\n{_tail(self.etcd_log_path, lines)}"]
        for m in self.members.values():
            out.append(f"--- {m.log_path}\n{_tail(m.log_path, lines)}")
            if m.pg_log_path.exists():
                out.append(f"--- {m.pg_log_path}\n{_tail(m.pg_log_path, lines)}")
        return "".join(out)

    # ----- waiting -------------------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float, what: str = "condition", interval: float = 0.1):
        """Call predicate until it returns a truthy value (returned); PatroniError after timeout.

        Exceptions from predicate count as "not yet" (the last one is in the message), except DaemonDied,
        which ends the wait at once.
        """
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except DaemonDied:
                raise
            except Exception as exc:  # noqa: BLE001 - kept for the message
                last = exc
            if time.monotonic() > deadline:
                raise PatroniError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
            time.sleep(interval)

    def _check_daemons(self):
        """DaemonDied when etcd, or a Patroni that no kill_* or stop() ended, is no longer running."""
        if self.etcd_proc is not None and self.etcd_proc.poll() is not None:
            raise DaemonDied(f"etcd exited with code {self.etcd_proc.returncode}")
        for m in self.members.values():
            if m.proc is not None and not m.expected_down and m.proc.poll() is not None:
                raise DaemonDied(f"patroni {m.name} exited with code {m.proc.returncode}")

    def healthy(self) -> bool:
        """One leader running, every other member a running replica per /cluster, every Patroni up and
        answering on its REST API, and the leader's pg_stat_replication shows all replicas streaming."""
        self._check_daemons()
        members = self.cluster()["members"]
        leaders = [m for m in members if m["role"] in ("leader", "master", "standby_leader")]
        others = [m for m in members if m not in leaders]
        if len(members) != self.n_members or len(leaders) != 1 or leaders[0]["state"] != "running":
            return False
        if any(m["state"] not in ("running", "streaming") for m in others):
            return False
        if not all(self.member_running(name) for name in self.members):
            return False
        leader = self.members[leaders[0]["name"]]
        n = self.query(leader.name, "select count(*) from pg_stat_replication where state = 'streaming'")
        return n[0][0] == self.n_members - 1

    def member_running(self, name: str) -> bool:
        """The member's Patroni process is ours and alive, and its own ``GET /patroni`` says PostgreSQL runs.

        (/cluster alone is not enough: a member key outlives its Patroni by up to ttl seconds.)"""
        m = self.members[name]
        if not m.patroni_pid:
            return False
        try:
            status, body = self.rest(name, "GET", "/patroni", timeout=1)
        except OSError:
            return False
        return status in (200, 503) and json.loads(body).get("state") == "running"

    def wait_healthy(self, timeout: float = 60):
        """Until healthy(); PatroniError with the tail of every log at the timeout."""
        try:
            self.wait_for(self.healthy, timeout, what=f"one leader and {self.n_members - 1} streaming replicas",
                          interval=0.2)
        except PatroniError as exc:
            raise PatroniError(f"{exc}\n{self.log_tails()}") from None

    # ----- REST ----------------------------------------------------------------------------------
    def cluster(self, via: str | None = None, timeout: float = 2) -> dict:
        """``GET /cluster`` from member `via`, or from the first member that answers."""
        names = [via] if via else list(self.members)
        errors = []
        for name in names:
            try:
                status, body = http_request("GET", self.members[name].api_url + "/cluster", timeout=timeout)
                if status == 200:
                    return json.loads(body)
                errors.append(f"{name}: {status}")
            except (OSError, ValueError) as exc:
                errors.append(f"{name}: {exc}")
        raise PatroniError(f"no member answered GET /cluster: {'; '.join(errors)}")

    def leader(self, via: str | None = None) -> str | None:
        """Name of the member /cluster calls leader, None when there is none."""
        for m in self.cluster(via)["members"]:
            if m["role"] in ("leader", "master", "standby_leader"):
                return m["name"]
        return None

    def rest(self, name: str, method: str, path: str, body: dict | None = None,
             timeout: float = 2) -> tuple[int, str]:
        """(status, body) of one request to a member's REST API."""
        return http_request(method, self.members[name].api_url + path, body, timeout)

    def switchover(self, candidate: str | None = None, timeout: float = 60, wait_healthy: bool = True) -> str:
        """``POST /switchover {"leader":..,"candidate":..}`` to the leader; return the new leader's name once it
        answers pg_is_in_recovery() = f (and, with wait_healthy, once the old leader streams from it)."""
        old = self.leader()
        if old is None:
            raise PatroniError("switchover: the cluster has no leader")
        body = {"leader": old}
        if candidate:
            body["candidate"] = candidate
        # Patroni polls the result for up to 2 * max(10, loop_wait) s before it answers.
        status, text = self.rest(old, "POST", "/switchover", body, timeout=2 * max(10, self.loop_wait) + 15)
        match = re.search(r'over to "([^"]+)"', text)
        if status != 200 or not match:
            raise PatroniError(f"switchover {body} answered {status}: {text}\n{self.log_tails()}")
        new = match.group(1)
        self.wait_for(lambda: self.pg_is_in_recovery(new) is False, timeout, what=f"{new} to leave recovery")
        if wait_healthy:
            self.wait_healthy(timeout)
        return new

    # ----- faults --------------------------------------------------------------------------------
    def kill_leader_hard(self, name: str | None = None) -> str:
        """kill -9 the leader's (or member name's) Patroni and its postmaster, one right after the other; return
        the member's name. ``member.killed_at`` is the time.monotonic() just after the signals: from then on the
        postmaster takes no new connection, though backends already connected may answer a moment longer."""
        name = name or self.leader()
        if name is None:
            raise PatroniError("kill_leader_hard: the cluster has no leader")
        m = self.members[name]
        m.expected_down = True
        pids = [p for p in (m.patroni_pid, m.pg_pid()) if p]
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        m.killed_at = time.monotonic()
        if m.proc is not None:
            m.proc.wait(10)
        _wait_gone(pids, 10)
        return name

    def kill_patroni_only(self, name: str):
        """kill -9 a member's Patroni only: its PostgreSQL keeps running (in its role, without a lock)."""
        m = self.members[name]
        m.expected_down = True
        if m.patroni_pid:
            _kill(m.patroni_pid, signal.SIGKILL)
            m.killed_at = time.monotonic()
            m.proc.wait(10)

    def restart_member(self, name: str, wait: bool = True, timeout: float = 60):
        """Stop the member's Patroni if it runs (SIGTERM, it stops PostgreSQL), start it again; with wait,
        return once the whole cluster is healthy again (a killed ex-leader rejoins through pg_rewind)."""
        m = self.members[name]
        m.expected_down = True
        if m.patroni_pid:
            m.proc.terminate()
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                _killpg(m.proc.pid, signal.SIGKILL)
                m.proc.wait(5)
        self._start_patroni(m)
        if wait:
            self.wait_healthy(timeout)

    def heal(self, timeout: float = 60):
        """Start Patroni again on every member where it is not running, then wait until the cluster is healthy."""
        for m in self.members.values():
            if not m.patroni_pid:
                self.restart_member(m.name, wait=False)
        self.wait_healthy(timeout)

    # ----- SQL -----------------------------------------------------------------------------------
    def query(self, name: str, sql: str, timeout: int = 3) -> list[tuple]:
        """Rows of one statement on a member (autocommit), as the superuser over TCP."""
        m = self.members[name]
        if psycopg2 is None:
            res = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1", m.dsn(),
                                  "-c", sql], capture_output=True, text=True, timeout=timeout + 5,
                                 env=client_env(PGCONNECT_TIMEOUT=str(timeout)))
            if res.returncode != 0:
                raise PatroniError(f"psql on {name}: {res.stderr.strip()}")
            return [tuple(line.split("\t")) for line in res.stdout.splitlines()]
        conn = psycopg2.connect(m.dsn(), connect_timeout=timeout)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def pg_is_in_recovery(self, name: str, timeout: int = 2) -> bool | None:
        """pg_is_in_recovery() of a member's PostgreSQL; None when it cannot be asked (down, starting, ...)."""
        try:
            value = self.query(name, "select pg_is_in_recovery()", timeout=timeout)[0][0]
        except Exception:  # noqa: BLE001 - any failure means "no answer"
            return None
        return value in (True, "t")

    # ----- etcd ----------------------------------------------------------------------------------
    def etcd_post(self, path: str, body: dict, timeout: float = 2) -> dict:
        """One JSON gateway call, e.g. etcd_post("/v3/kv/range", {"key": b64("/a")})."""
        status, text = http_request("POST", self.etcd_url + path, body, timeout)
        if status != 200:
            raise PatroniError(f"etcd {path} answered {status}: {text}")
        return json.loads(text)

    def etcd_get(self, key: str, prefix: bool = False) -> dict[str, str]:
        """{key: value} of one key, or of every key under a prefix, decoded from base64."""
        req = {"key": b64(key)}
        if prefix:
            req["range_end"] = b64(prefix_range_end(key))
        resp = self.etcd_post("/v3/kv/range", req)
        return {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in resp.get("kvs", [])}

    def etcd_leader_key(self) -> str | None:
        """Value of ``/service/<scope>/leader`` (the leader's member name), None when the key does not exist."""
        return self.etcd_get(self.key_prefix + "leader").get(self.key_prefix + "leader")

    def etcd_watch(self, key: str | None = None, prefix: bool = True, **kw) -> EtcdWatch:
        """An EtcdWatch on key (default: every key of this cluster, ``/service/<scope>/``)."""
        return EtcdWatch(self.etcd_url, key or self.key_prefix, prefix=prefix, **kw)

    def info(self) -> dict:
        return {"dir": str(self.base_dir), "scope": self.scope, "namespace": self.namespace,
                "etcd": self.etcd_url, "ttl": self.ttl, "loop_wait": self.loop_wait,
                "retry_timeout": self.retry_timeout, "superuser_password": self.superuser_password,
                "members": {m.name: {"host": m.host, "pg_port": m.pg_port, "api_url": m.api_url,
                                     "patroni_pid": m.patroni_pid, "pg_pid": m.pg_pid()}
                            for m in self.members.values()}}


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Patroni + etcd cluster on loopback; runs until Ctrl-C")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--dir", help="working directory (default: a new one in /tmp, deleted at the end)")
    run.add_argument("--members", type=int, default=3)
    run.add_argument("--ttl", type=int, default=20)
    run.add_argument("--loop-wait", type=int, default=5)
    run.add_argument("--retry-timeout", type=int, default=5)
    run.add_argument("--same-host", action="store_true", help="all members on 127.0.0.1 with distinct ports")
    args = ap.parse_args(argv)
    c = PatroniCluster(args.dir, members=args.members, ttl=args.ttl, loop_wait=args.loop_wait,
                       retry_timeout=args.retry_timeout, distinct_hosts=not args.same_host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    c.start()
    print(json.dumps({**c.info(), "start_seconds": round(c.start_seconds, 2)}, indent=2), flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
