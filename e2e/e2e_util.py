"""Helpers shared by the e2e tests: psycopg2 connections with time limits, polling, psql runs."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg2

from pgcluster import client_env


def connect(dsn: str, timeout: int = 10, **kw):
    """psycopg2 connection in autocommit mode (libpq connect_timeout bounds the start-up)."""
    conn = psycopg2.connect(dsn, connect_timeout=timeout, **kw)
    conn.autocommit = True
    return conn


def one(conn, sql: str, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def identity(dsn: str, timeout: int = 10) -> tuple[bool, int]:
    """(pg_is_in_recovery(), inet_server_port()) of the node a new connection to dsn lands on."""
    conn = connect(dsn, timeout=timeout)
    try:
        return tuple(one(conn, "select pg_is_in_recovery(), inet_server_port()"))
    finally:
        conn.close()


def with_timeout(fn, timeout: float, what: str):
    """Run fn() in a thread; return its result or re-raise its exception; AssertionError if it hangs.

    Used for calls through pgkeel that would block forever if pgkeel stopped forwarding.
    """
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{what}: still blocked after {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def poll(fn, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Call fn until it returns a truthy value; return (value, seconds waited); AssertionError on timeout."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value, time.monotonic() - t0
            last = value
        except Exception as exc:  # noqa: BLE001 - remembered for the message
            last = exc
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last result: {last!r}")
        time.sleep(interval)


def run_psql(port: int, *args: str, timeout: float = 60, input: str | None = None,
             host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    """psql -X against host:port as postgres/postgres with extra args; output captured as text."""
    cmd = ["psql", "-X", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                          env=client_env(PGCONNECT_TIMEOUT="10"))


def psql_conninfo(conninfo: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """psql -X "conninfo" with extra args."""
    return subprocess.run(["psql", "-X", conninfo, *args], capture_output=True, text=True, timeout=timeout,
                          env=client_env(PGCONNECT_TIMEOUT="10"))


class Writer:
    """A reconnecting writer: a new connection through pgkeel's primary port for every insert into
    writes(node), in a thread; records (time done, server address or None, error or None). The table
    `writes(node text)` must exist."""

    def __init__(self, port: int):
        self.port = port
        self.results: list[tuple[float, str | None, str | None]] = []  # (done at, node address, error)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Writer":
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="postgres", user="postgres",
                                        connect_timeout=5)
                try:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("insert into writes(node) values (host(inet_server_addr())) returning node")
                        node = cur.fetchone()[0]
                    self.results.append((time.monotonic(), node, None))
                finally:
                    conn.close()
            except psycopg2.Error as exc:
                self.results.append((time.monotonic(), None, str(exc).strip().splitlines()[0]))
                time.sleep(0.005)
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=15)

    def writes_on(self, node: str, after: float = 0.0) -> list[float]:
        return [t for t, n, _ in self.results if n == node and t > after]
