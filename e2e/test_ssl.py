"""TLS through pgkeel is end-to-end: the client negotiates TLS with the PostgreSQL server itself."""

import hashlib
import ssl
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

import pgwire
from e2e_util import connect, one, psql_conninfo

SSL_QUERY = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def ssl_cluster():
    """A primary + replica with ssl=on and a self-signed certificate."""
    from pgcluster import PgCluster
    c = PgCluster(ssl=True).start()
    yield c
    c.stop_all()


@pytest.fixture
def ssl_pgkeel(pgkeel_factory, ssl_cluster):
    return pgkeel_factory(ssl_cluster, wait_replica=True)


def server_cert_der(cluster) -> bytes:
    with open(cluster.ssl_cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_harness_ssl_cluster_serves_tls_directly(ssl_cluster):
    """Harness check: the SSL cluster itself answers SSLRequest with its own certificate, on both nodes."""
    for name in ("primary", "replica"):
        assert pgwire.ssl_handshake_peer_cert("127.0.0.1", ssl_cluster.port(name)) == server_cert_der(ssl_cluster)


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_psql_sslmode_require_through_pgkeel(role, ssl_pgkeel, ssl_cluster):
    """psql sslmode=require through each port: the backend's pg_stat_ssl row says ssl = t."""
    res = psql_conninfo(ssl_pgkeel.dsn(role, sslmode="require"), "-At", "-c", SSL_QUERY)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "t\n"
    res = psql_conninfo(ssl_pgkeel.dsn(role, sslmode="require"), "-At", "-c", "select pg_is_in_recovery()")
    assert res.stdout == ("f\n" if role == "primary" else "t\n")


def test_plaintext_still_works_on_ssl_cluster(ssl_pgkeel):
    """sslmode=disable through pgkeel to an ssl=on server: a plain session, pg_stat_ssl says f."""
    res = psql_conninfo(ssl_pgkeel.dsn("primary", sslmode="disable"), "-At", "-c", SSL_QUERY)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "f\n"


def test_tls_peer_is_the_postgres_server(ssl_pgkeel, ssl_cluster):
    """The certificate a client sees through pgkeel is the server's own (pgkeel does not terminate TLS)."""
    assert pgwire.ssl_handshake_peer_cert("127.0.0.1", ssl_pgkeel.primary_port) == server_cert_der(ssl_cluster)


def test_large_result_over_tls(ssl_pgkeel):
    """A ~20 MB result over TLS through pgkeel arrives complete: 100000 rows, the last one intact."""
    res = psql_conninfo(ssl_pgkeel.dsn("primary", sslmode="require"), "-At", "-c",
                        "select g, repeat(md5(g::text), 6) from generate_series(1, 100000) g")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) > 19_000_000
    lines = res.stdout.splitlines()
    assert len(lines) == 100000
    assert lines[0] == "1|" + hashlib.md5(b"1").hexdigest() * 6
    assert lines[-1] == "100000|" + hashlib.md5(b"100000").hexdigest() * 6
    assert all(len(line.split("|", 1)[1]) == 192 for line in lines[::997])


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_cancel_ssl_session(role, ssl_pgkeel):
    """conn.cancel() on a TLS session through pgkeel (the CancelRequest goes in plain text to pgkeel's port,
    which cannot read the BackendKeyData inside TLS) still cancels pg_sleep(30) within a few seconds."""
    conn = connect(ssl_pgkeel.dsn(role, sslmode="require"))
    try:
        assert one(conn, SSL_QUERY) == (True,)
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled):
            one(conn, "select pg_sleep(30)")
        elapsed = time.monotonic() - t0
        timer.join()
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        assert one(conn, "select 1") == (1,)
    finally:
        conn.close()


def test_ssl_connection_refused_by_pgkeel_is_not_downgraded(pgkeel_factory, cluster):
    """On a cluster with ssl=off, sslmode=require through pgkeel fails like it does directly (the server's
    'N' answer is passed on), instead of pgkeel pretending to offer TLS."""
    pk = pgkeel_factory(cluster)
    direct = psql_conninfo(cluster.dsn("primary", sslmode="require"), "-c", "select 1")
    proxied = psql_conninfo(pk.dsn("primary", sslmode="require"), "-c", "select 1")
    assert direct.returncode == 2 and "does not support SSL" in direct.stderr
    assert proxied.returncode == 2 and "does not support SSL" in proxied.stderr, proxied.stderr
