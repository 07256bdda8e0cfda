"""Shutdown on SIGTERM: stop accepting at once, let sessions finish within --shutdown-timeout, exit 0."""

import signal
import time

import psycopg2

import pgwire
from e2e_util import connect, one, poll, with_timeout


def test_sigterm_with_idle_session(pgkeel_factory, cluster):
    """--shutdown-timeout 1s and an idle session open: after SIGTERM both listening ports refuse new
    connections within 2 s (at once, but this VM stalls now and then), the process exits with code 0
    within 3 s, and the idle session is closed."""
    pk = pgkeel_factory(cluster, flags={"shutdown_timeout": "1s"})
    idle = connect(pk.dsn("primary"))
    assert one(idle, "select 1") == (1,)
    pk.expect_exit = True
    t0 = time.monotonic()
    pk.signal(signal.SIGTERM)
    poll(lambda: pgwire.connect_refused("127.0.0.1", pk.primary_port), timeout=2, interval=0.01,
         what="the primary port to refuse connections after SIGTERM")
    assert pgwire.connect_refused("127.0.0.1", pk.replica_port)
    rc = pk.proc.wait(timeout=5)
    exited = time.monotonic() - t0
    assert rc == 0, f"exit code {rc}"
    assert exited < 3.0, f"exited {exited:.2f}s after SIGTERM"
    try:
        with_timeout(lambda: one(idle, "select 1"), 5, "query on a session of a stopped pgkeel")
        raise AssertionError("the idle session still works after pgkeel exited")
    except psycopg2.Error:
        pass
    idle.close()


def test_sigterm_lets_running_query_finish(pgkeel_factory, cluster):
    """SIGTERM while a query runs (--shutdown-timeout 10s): the query completes with its result, and once the
    client disconnects the process exits with code 0 well before the timeout."""
    pk = pgkeel_factory(cluster, flags={"shutdown_timeout": "10s"})
    conn = connect(pk.dsn("primary"))
    pk.expect_exit = True
    result = {}

    def run():
        return one(conn, "select pg_sleep(1), 'finished'")

    import threading
    t = threading.Thread(target=lambda: result.update(row=with_timeout(run, 15, "query during shutdown")))
    t.start()
    time.sleep(0.3)
    pk.signal(signal.SIGTERM)
    t.join(20)
    assert result.get("row") == ("", "finished")
    assert pk.proc.poll() is None or pk.proc.returncode == 0
    t_close = time.monotonic()
    conn.close()
    rc = pk.proc.wait(timeout=12)
    assert rc == 0
    assert time.monotonic() - t_close < 3.0, "pgkeel waited for the full shutdown timeout with no sessions left"


def test_sigint_without_sessions_exits_promptly(pgkeel_factory, cluster):
    """SIGINT with no client connected: exit code 0 within 2 s."""
    pk = pgkeel_factory(cluster)
    pk.expect_exit = True
    t0 = time.monotonic()
    pk.signal(signal.SIGINT)
    assert pk.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2.0


def test_sigterm_during_connection_storm(pgkeel_factory, cluster):
    """SIGTERM while clients keep connecting to both ports (five rounds): pgkeel always exits with code 0
    (no crash from accept events that arrive while the listeners are being closed)."""
    import socket
    import threading

    for round_no in range(5):
        pk = pgkeel_factory(cluster, flags={"shutdown_timeout": "1s"})
        pk.expect_exit = True
        stop = threading.Event()

        def hammer(port):
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(pgwire.startup_packet())
                except OSError:
                    pass

        threads = [threading.Thread(target=hammer, args=(port,), daemon=True)
                   for port in (pk.primary_port, pk.replica_port) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        pk.signal(signal.SIGTERM)
        try:
            rc = pk.proc.wait(timeout=5)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        assert rc == 0, f"round {round_no}: exit code {rc}"
