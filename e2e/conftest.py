"""pytest fixtures for pgkeel's end-to-end tests: PostgreSQL clusters, pgkeel processes, log dumps, a watchdog."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pgcluster import ClusterError, Pgkeel, PgCluster, pgkeel_binary  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("PGKEEL_E2E_TEST_TIMEOUT", "90"))  # seconds per test, setup included


def pytest_configure(config):
    config.addinivalue_line("markers", "patroni: needs the real Patroni + etcd cluster (e2e/patronicluster.py)")


@pytest.fixture(scope="session")
def pgkeel_bin(tmp_path_factory) -> str:
    """A private copy of the pgkeel binary under test (a rebuild during the run cannot swap it midway);
    a missing binary is an error, not a skip."""
    path = pgkeel_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"pgkeel binary not found at {path}: build it (cmake --build build) or set PGKEEL_BIN",
                    pytrace=False)
    copy = tmp_path_factory.mktemp("bin") / "pgkeel"
    shutil.copy2(path, copy)
    return str(copy)


@pytest.fixture(scope="session")
def cluster():
    """A primary + streaming replica shared by every test that leaves the roles and nodes as it found them."""
    c = PgCluster().start()
    yield c
    c.stop_all()


@pytest.fixture
def new_cluster(request):
    """Factory for a cluster owned by one test (for tests that promote, stop or otherwise break nodes)."""
    made: list[PgCluster] = []

    def make(ssl: bool = False) -> PgCluster:
        c = PgCluster(ssl=ssl)
        made.append(c)
        request.node._pg_clusters = getattr(request.node, "_pg_clusters", []) + [c]
        return c.start()

    yield make
    for c in made:
        c.stop_all()


@pytest.fixture
def pgkeel_factory(request, pgkeel_bin, tmp_path):
    """Factory: pgkeel_factory(cluster, flags={...}, wait=True) starts a pgkeel in front of the cluster.

    Every instance is stopped with SIGTERM at teardown; one that died during the test (and was not
    marked expect_exit) fails the test there, with its log.
    """
    made: list[Pgkeel] = []

    def make(cluster: PgCluster, flags: dict | None = None, wait: bool = True, wait_replica: bool = False,
             **kw) -> Pgkeel:
        pk = Pgkeel(cluster.candidates, tmp_path / f"pgkeel-{len(made)}.log", flags=flags, binary=pgkeel_bin, **kw)
        made.append(pk)
        request.node._pgkeels = getattr(request.node, "_pgkeels", []) + [pk]
        if cluster not in getattr(request.node, "_pg_clusters", []):
            request.node._pg_clusters = getattr(request.node, "_pg_clusters", []) + [cluster]
        pk.start(wait=wait)
        if wait_replica:
            pk.wait_ready(role="replica")
        return pk

    yield make
    crashed = []
    for pk in made:
        if pk.proc is not None and pk.proc.poll() is not None and not pk.expect_exit:
            crashed.append(f"pgkeel exited by itself with code {pk.proc.returncode}; log {pk.log_path}:\n"
                           f"{pk.log_tail(80)}")
        pk.stop()
    if crashed:
        pytest.fail("\n".join(crashed), pytrace=False)


@pytest.fixture
def pgkeel(pgkeel_factory, cluster) -> Pgkeel:
    """pgkeel in front of the shared cluster, serving both its primary and its replica port."""
    return pgkeel_factory(cluster, wait_replica=True)


@pytest.fixture(autouse=True)
def _watchdog():
    """Fail a test that runs longer than TEST_TIMEOUT; kill the run (with tracebacks) if even that hangs."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT}s (PGKEEL_E2E_TEST_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    faulthandler.dump_traceback_later(TEST_TIMEOUT + 60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the log of every pgkeel the test started and the tail of its clusters' server logs."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for i, pk in enumerate(getattr(item, "_pgkeels", [])):
        rep.sections.append((f"pgkeel #{i} log ({pk.log_path})", pk.log_tail(150)))
    for i, c in enumerate(getattr(item, "_pg_clusters", [])):
        for name in c.nodes:
            rep.sections.append((f"cluster #{i} {name} log (port {c.port(name)})", c.log_tail(name, 25)))


def pytest_report_header(config):
    return [f"pgkeel binary: {pgkeel_binary()}"]


__all__ = ["ClusterError"]
