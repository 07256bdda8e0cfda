"""Routing by port: the primary port reaches the primary, the replica port a replica (psql and psycopg2)."""

from e2e_util import connect, identity, one, run_psql


def test_psql_primary_port_reaches_primary(pgkeel, cluster):
    """psql through the primary port: pg_is_in_recovery() is f and the server is the primary node."""
    res = run_psql(pgkeel.primary_port, "-At", "-c", "select pg_is_in_recovery(), inet_server_port()")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"f|{cluster.primary_port}\n"


def test_psql_replica_port_reaches_replica(pgkeel, cluster):
    """psql through the replica port: pg_is_in_recovery() is t and the server is the replica node."""
    res = run_psql(pgkeel.replica_port, "-At", "-c", "select pg_is_in_recovery(), inet_server_port()")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"t|{cluster.replica_port}\n"


def test_psycopg2_both_ports(pgkeel, cluster):
    """psycopg2 through each port lands on the right node, every time, over several fresh connections."""
    for _ in range(5):
        assert identity(pgkeel.dsn("primary")) == (False, cluster.primary_port)
        assert identity(pgkeel.dsn("replica")) == (True, cluster.replica_port)


def test_write_through_primary_read_through_replica(pgkeel, cluster):
    """A row written through the primary port becomes visible through the replica port; writes there fail."""
    import psycopg2
    import psycopg2.errors

    w = connect(pgkeel.dsn("primary"))
    r = connect(pgkeel.dsn("replica"))
    try:
        with w.cursor() as cur:
            cur.execute("create table if not exists routing_marker(v text)")
            cur.execute("insert into routing_marker values ('written via pgkeel') returning v")
            assert cur.fetchone() == ("written via pgkeel",)
        cluster.wait_caught_up()
        assert one(r, "select count(*) from routing_marker where v = 'written via pgkeel'")[0] >= 1
        try:
            one(r, "insert into routing_marker values ('nope') returning v")
            raise AssertionError("a write through the replica port succeeded")
        except psycopg2.errors.ReadOnlySqlTransaction:
            pass
        # The session survives its error.
        assert one(r, "select pg_is_in_recovery()") == (True,)
    finally:
        w.close()
        r.close()


def test_host_name_candidates(cluster, pgkeel_bin, tmp_path):
    """Candidates given as names ("localhost:PORT") work: the probe resolves them, and clients are sent
    to the address the probe reached (no DNS lookup on the data path)."""
    from pgcluster import Pgkeel

    names = f"localhost:{cluster.primary_port},localhost:{cluster.replica_port}"
    pk = Pgkeel(names, tmp_path / "pgkeel-names.log", binary=pgkeel_bin)
    try:
        pk.start()
        pk.wait_ready(role="replica")
        assert identity(pk.dsn("primary")) == (False, cluster.primary_port)
        assert identity(pk.dsn("replica")) == (True, cluster.replica_port)
    finally:
        pk.stop()
