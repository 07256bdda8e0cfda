"""Replica fallback: with no healthy replica the replica port uses the primary, unless --replica-fallback false."""

import pgwire
from e2e_util import identity, poll


def test_replica_port_falls_back_to_primary_and_back(new_cluster, pgkeel_factory):
    """Replica stopped: new connections through the replica port reach the primary (pg_is_in_recovery() = f)
    with the default --replica-fallback true; once the replica is back they reach it again."""
    c = new_cluster()
    pk = pgkeel_factory(c, wait_replica=True)
    c.stop_node("replica")
    poll(lambda: identity(pk.dsn("replica")) == (False, c.primary_port), timeout=8, interval=0.1,
         what="the replica port to fall back to the primary")
    # And it stays there (not a one-off).
    for _ in range(3):
        assert identity(pk.dsn("replica")) == (False, c.primary_port)
    c.start_node("replica")
    poll(lambda: identity(pk.dsn("replica")) == (True, c.replica_port), timeout=10, interval=0.1,
         what="the replica port to use the restarted replica")


def test_no_fallback_gives_57p03(new_cluster, pgkeel_factory):
    """--replica-fallback false with the replica stopped: the replica port answers ErrorResponse 57P03 naming
    the missing replica (within a few seconds) while the primary port keeps working."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"replica_fallback": "false", "primary_wait": "1s"}, wait_replica=True)
    c.stop_node("replica")

    def refused():
        # Until pgkeel has seen --unhealthy-after failed probes it may still try the stopped replica.
        res = pgwire.try_startup("127.0.0.1", pk.replica_port, timeout=10)
        return res if res.sqlstate == "57P03" else None
    res, _ = poll(refused, timeout=10, interval=0.1, what="the replica port to answer 57P03")
    assert "replica" in res.message.lower(), res.fields
    res = pgwire.try_startup("127.0.0.1", pk.replica_port, timeout=10)
    assert res.outcome == "error" and res.sqlstate == "57P03", res
    assert res.elapsed < 4.0
    assert identity(pk.dsn("primary")) == (False, c.primary_port)
