"""CancelRequest through pgkeel: conn.cancel() sent to pgkeel's port cancels the query on the right node."""

import threading
import time

import psycopg2.errors
import pytest

from e2e_util import connect, one


def cancel_after(conn, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, conn.cancel)
    timer.start()
    return timer


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_cancel_pg_sleep(role, pgkeel):
    """pg_sleep(30) through each port, cancelled from another thread after 0.5 s: QueryCanceled (57014)
    arrives within a few seconds and the session still works afterwards."""
    conn = connect(pgkeel.dsn(role))
    try:
        assert one(conn, "select pg_is_in_recovery()") == (role == "replica",)
        timer = cancel_after(conn, 0.5)
        t0 = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled) as exc:
            one(conn, "select pg_sleep(30)")
        elapsed = time.monotonic() - t0
        timer.join()
        assert exc.value.pgcode == "57014"
        assert 0.4 < elapsed < 5, f"cancel arrived after {elapsed:.2f}s"
        assert one(conn, "select 'alive'") == ("alive",)
    finally:
        conn.close()


def test_cancel_hits_only_its_own_session(pgkeel):
    """Two sessions sleep through the primary port; cancelling one leaves the other running to completion."""
    a = connect(pgkeel.dsn("primary"))
    b = connect(pgkeel.dsn("primary"))
    try:
        result = {}

        def run_b():
            t0 = time.monotonic()
            result["b"] = one(b, "select pg_sleep(1.5), 'b done'")
            result["b_elapsed"] = time.monotonic() - t0

        tb = threading.Thread(target=run_b)
        tb.start()
        timer = cancel_after(a, 0.5)
        with pytest.raises(psycopg2.errors.QueryCanceled):
            one(a, "select pg_sleep(30)")
        timer.join()
        tb.join(10)
        assert result.get("b") == ("", "b done")
        assert result["b_elapsed"] >= 1.4
    finally:
        a.close()
        b.close()
