"""Bad clients get an error or a close; the other clients of pgkeel carry on undisturbed."""

import socket
import struct
import subprocess
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

import pgwire
from e2e_util import connect, one, poll
from pgcluster import client_env

GARBAGE = {
    "unknown protocol version": struct.pack("!II", 8, 0x12345678),
    "length too large": struct.pack("!I", 0x7FFFFFF0) + b"\x00\x03\x00\x00user\x00x\x00\x00",
    "length too small": struct.pack("!I", 3) + b"\xde\xad\xbe\xef" * 4,
    "http request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "random bytes": bytes(range(256)) * 4,
    "startup without terminator": struct.pack("!II", 17, 196608) + b"user\x00postgr",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_startup_packet_is_rejected_others_unaffected(name, pgkeel):
    """A client whose first bytes are not a valid startup packet gets an ErrorResponse or a close within 5 s,
    while a psql session started before it and a psycopg2 session opened before it keep working."""
    steady = connect(pgkeel.dsn("primary"))
    psql = subprocess.Popen(["psql", "-X", "-At", pgkeel.dsn("primary"), "-c", "select pg_sleep(1.5)",
                             "-c", "select 'psql still fine'"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
    try:
        time.sleep(0.3)
        res = pgwire.send_garbage("127.0.0.1", pgkeel.primary_port, GARBAGE[name], timeout=5)
        assert res.outcome in ("error", "closed"), f"{name}: {res}"
        if res.outcome == "error":
            assert res.sqlstate and res.sqlstate[:2] in ("08", "0A", "28", "3D", "57"), res.fields
        assert one(steady, "select 'steady'") == ("steady",)
        out, err = psql.communicate(timeout=20)
        assert psql.returncode == 0, err
        assert out == "\npsql still fine\n"
        fresh = connect(pgkeel.dsn("primary"))
        assert one(fresh, "select 1") == (1,)
        fresh.close()
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.wait()
        steady.close()


def test_silent_and_half_open_clients_do_not_block_others(pgkeel):
    """Twenty clients that connect and send nothing (or half a startup packet) do not stop a new client."""
    idle = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", pgkeel.primary_port), timeout=5)
            if i % 2:
                s.sendall(struct.pack("!I", 41))  # announces 41 bytes, sends 4
            idle.append(s)
        t0 = time.monotonic()
        conn = connect(pgkeel.dsn("primary"))
        assert one(conn, "select 'served'") == ("served",)
        conn.close()
        assert time.monotonic() - t0 < 2
    finally:
        for s in idle:
            s.close()


def test_client_vanishing_mid_query_frees_nothing_else(pgkeel, cluster):
    """A client that disconnects abruptly in the middle of a big result leaves pgkeel serving others, and its
    server session ends (no leftover backend running the query after a few seconds)."""
    s = socket.create_connection(("127.0.0.1", pgkeel.primary_port), timeout=5)
    s.sendall(pgwire.startup_packet(application_name="e2e-vanishing"))
    assert pgwire.read_until_ready(s, time.monotonic() + 10).outcome == "ready"
    sql = b"select g, repeat('x', 500) from generate_series(1, 2000000) g\0"
    s.sendall(b"Q" + struct.pack("!I", len(sql) + 4) + sql)
    s.recv(65536)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    s.close()

    conn = connect(pgkeel.dsn("primary"))
    assert one(conn, "select 'others fine'") == ("others fine",)
    direct = connect(cluster.dsn("primary"))
    try:
        deadline = time.monotonic() + 10
        while one(direct, "select count(*) from pg_stat_activity where application_name = 'e2e-vanishing'")[0]:
            assert time.monotonic() < deadline, "the abandoned server session is still there after 10 s"
            time.sleep(0.1)
    finally:
        direct.close()
        conn.close()


def test_silent_client_is_closed_after_client_login_timeout(cluster, pgkeel_factory):
    """A client that connects and sends nothing is closed after client_login_timeout (here 600ms), and
    so is one that sends half a start-up packet; a normal client meanwhile connects fine."""
    pk = pgkeel_factory(cluster, flags={"client-login-timeout": "600ms"})
    silent = socket.create_connection(("127.0.0.1", pk.primary_port), timeout=10)
    partial = socket.create_connection(("127.0.0.1", pk.primary_port), timeout=10)
    partial.sendall(struct.pack("!II", 40, 196608) + b"user\x00")
    started = time.monotonic()
    assert one(connect(pk.dsn("primary")), "select 1") == (1,)
    for sock in (silent, partial):
        assert sock.recv(1) == b"", "pgkeel should close a client that does not finish its start-up"
    waited = time.monotonic() - started
    assert 0.3 < waited < 5, waited
    silent.close()
    partial.close()


def test_connection_caps_answer_53300(cluster, pgkeel_factory):
    """max_client_connections 3 and max_replica_connections 1: the connection past a cap gets FATAL
    53300 naming the cap (a raw StartupMessage, and psql through SSLRequest + 'N'), the sessions already
    open keep working, a cancel still passes at the cap, and a slot frees when a session ends."""
    pk = pgkeel_factory(cluster, flags={"max_client_connections": "3",
                                        "max_replica_connections": "1"}, wait_replica=True)
    reader = connect(pk.dsn("replica"))
    refused = pgwire.try_startup("127.0.0.1", pk.replica_port)
    assert (refused.outcome, refused.sqlstate) == ("error", "53300"), refused
    assert "max_replica_connections 1" in refused.message
    writers = [connect(pk.dsn("primary")) for _ in range(2)]
    over = subprocess.run(["psql", "-X", "-At", pk.dsn("primary"), "-c", "select 1"],
                          capture_output=True, text=True, env=client_env(), timeout=20)
    assert over.returncode != 0 and "too many clients already (max_client_connections 3)" in over.stderr
    busy = writers[0]
    timer = threading.Timer(0.5, busy.cancel)  # a CancelRequest while at the cap
    timer.start()
    with pytest.raises(psycopg2.errors.QueryCanceled):
        one(busy, "select pg_sleep(10)")
    assert one(reader, "select pg_is_in_recovery()") == (True,)
    writers[1].close()
    poll(lambda: pgwire.try_startup("127.0.0.1", pk.primary_port).outcome == "ready", timeout=5,
         what="a slot to free after a session ended")
    for c in [reader, writers[0]]:
        c.close()
