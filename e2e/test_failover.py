"""Failover: pgkeel follows a promoted replica, closes sessions to the old primary, and waits (or fails
clearly with 57P03) while there is no primary. Every test here owns its cluster."""

import threading
import time

import psycopg2
import pytest

import pgwire
from e2e_util import connect, identity, one, poll, run_psql, with_timeout


def session_broken(conn) -> bool:
    """True when a query on conn fails (the session was closed under it); bounded so a hang fails the test."""
    try:
        with_timeout(lambda: one(conn, "select 1"), 10, "query on a session whose primary went away")
        return False
    except psycopg2.Error:
        return True


def test_failover_time_with_default_probe_interval(new_cluster, pgkeel_factory):
    """With the default --probe-interval (1s): promote the replica and stop the old primary; a new connection
    through the primary port reaches the new primary (pg_is_in_recovery() = f on its port, with the data
    written before) in under 3 s from the promotion; the session open on the old primary gets an error."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"probe_interval": None, "primary_wait": "5s"})
    old = connect(pk.dsn("primary"))
    assert one(old, "select pg_is_in_recovery(), inet_server_port()") == (False, c.primary_port)
    one(old, "create table failover_marker(v text); insert into failover_marker values ('before'); select 1")
    c.wait_caught_up()

    t0 = time.monotonic()
    promote_took = c.promote_replica()
    c.stop_node("primary", mode="fast")
    stopped_at = time.monotonic() - t0

    def on_new_primary():
        try:
            return identity(pk.dsn("primary"), timeout=5) == (False, c.replica_port)
        except psycopg2.OperationalError:
            return False
    _, waited = poll(on_new_primary, timeout=15, interval=0.02, what="the primary port to reach the new primary")
    failover = time.monotonic() - t0
    print(f"\nFAILOVER: promote {promote_took:.2f}s, old primary stopped at {stopped_at:.2f}s, "
          f"new primary reachable through pgkeel {failover:.2f}s after the promotion started")
    assert failover < 3.0, f"failover took {failover:.2f}s"

    new = connect(pk.dsn("primary"))
    try:
        assert one(new, "select string_agg(v, ',') from failover_marker") == ("before",)
        assert one(new, "insert into failover_marker values ('after') returning v") == ("after",)
    finally:
        new.close()
    assert session_broken(old)
    old.close()


def test_session_on_demoted_primary_is_closed(new_cluster, pgkeel_factory):
    """Promote the replica while the old primary keeps running (two nodes answer pg_is_in_recovery() = f; the
    promoted one has the higher timeline). pgkeel moves the primary port to the promoted node and closes
    the session still open on the old primary, instead of letting it write to a demoted node."""
    c = new_cluster()
    pk = pgkeel_factory(c)
    old = connect(pk.dsn("primary"))
    assert one(old, "select inet_server_port()") == (c.primary_port,)

    c.promote_replica()
    poll(lambda: identity(pk.dsn("primary")) == (False, c.replica_port), timeout=5, interval=0.05,
         what="new connections to reach the promoted node")
    _, waited = poll(lambda: session_broken(old), timeout=5, interval=0.2,
                     what="the session on the old primary to be closed")
    old.close()


def test_no_primary_fails_after_primary_wait(new_cluster, pgkeel_factory):
    """Primary stopped, replica not promoted, --primary-wait 1s: a new connection through the primary port
    gets ErrorResponse 57P03 naming the missing primary after about 1 s, and is closed; the replica port
    still serves reads; after the promotion, new connections through the primary port succeed."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"primary_wait": "1s"}, wait_replica=True)
    c.stop_node("primary")

    def refused_with_57p03():
        return pgwire.try_startup("127.0.0.1", pk.primary_port, timeout=10).sqlstate == "57P03"
    poll(refused_with_57p03, timeout=10, interval=0.1, what="57P03 once pgkeel saw the primary go")

    res = pgwire.try_startup("127.0.0.1", pk.primary_port, timeout=10)
    assert res.outcome == "error", res
    assert res.sqlstate == "57P03", res.fields
    assert "primary" in res.message.lower(), res.fields
    assert 0.8 <= res.elapsed <= 4.0, f"answered after {res.elapsed:.2f}s"
    assert res.fields.get("S") in ("FATAL", "ERROR"), res.fields

    assert identity(pk.dsn("replica")) == (True, c.replica_port)

    c.promote_replica()
    poll(lambda: identity(pk.dsn("primary")) == (False, c.replica_port), timeout=5, interval=0.05,
         what="the primary port to work again after the promotion")


def test_no_primary_message_reaches_libpq_clients(new_cluster, pgkeel_factory):
    """With no primary, a libpq client (psycopg2 and psql, default sslmode=prefer, so they open with an
    SSLRequest) is shown pgkeel's message naming the missing primary. libpq >= 15.10 (CVE-2024-10977)
    ignores any ErrorResponse sent as the answer to an SSLRequest, so pgkeel must answer 'N' first and send
    its 57P03 after the StartupMessage, as PostgreSQL itself does."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"primary_wait": "500ms"})
    c.stop_node("primary")
    poll(lambda: pgwire.try_startup("127.0.0.1", pk.primary_port, timeout=10).sqlstate == "57P03", timeout=10,
         interval=0.1, what="57P03 once pgkeel saw the primary go")

    answer = pgwire.ssl_request_answer("127.0.0.1", pk.primary_port, timeout=10)
    assert answer.ssl_byte == b"N", f"SSLRequest answered {answer}"
    assert answer.after_startup.sqlstate == "57P03", answer
    with pytest.raises(psycopg2.OperationalError) as exc:
        connect(pk.dsn("primary"))
    assert "primary" in str(exc.value).lower(), str(exc.value)
    res = run_psql(pk.primary_port, "-c", "select 1")
    assert res.returncode == 2 and "primary" in res.stderr.lower(), res.stderr


def test_connection_waiting_for_primary_succeeds_after_promotion(new_cluster, pgkeel_factory):
    """Primary stopped and out of routing; a client connecting through the primary port waits (--primary-wait
    8s); the replica is promoted 1 s into the wait; the waiting client then lands on the new primary."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"primary_wait": "8s"})
    c.stop_node("primary")
    time.sleep(1.2)  # probe interval 200ms x unhealthy-after 2, plus margin: pgkeel knows the primary is gone

    result = {}

    def client():
        t0 = time.monotonic()
        try:
            result["identity"] = identity(pk.dsn("primary"), timeout=20)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=client)
    t0 = time.monotonic()
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), f"the client did not wait for a primary: {result}"
    c.promote_replica()
    promoted_at = time.monotonic() - t0
    t.join(15)
    assert not t.is_alive(), "the waiting client never got an answer"
    assert "error" not in result, f"waiting client failed: {result['error']}"
    assert result["identity"] == (False, c.replica_port)
    assert result["elapsed"] >= 1.0
    assert result["elapsed"] < promoted_at + 3.0, result


def test_replica_session_on_promoted_node_is_closed(new_cluster, pgkeel_factory):
    """A replica-port session whose replica is promoted is closed (it was promised a read-only replica),
    while new replica-port connections fall back to the primary because no replica is left."""
    c = new_cluster()
    pk = pgkeel_factory(c, wait_replica=True)
    reader = connect(pk.dsn("replica"))
    assert one(reader, "select pg_is_in_recovery(), inet_server_port()") == (True, c.replica_port)

    c.promote_replica()
    poll(lambda: session_broken(reader), timeout=5, interval=0.2,
         what="the replica-port session on the promoted node to be closed")
    reader.close()
    assert "closed (node_promoted)" in pk.log_tail(400)
