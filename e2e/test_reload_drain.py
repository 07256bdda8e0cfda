"""Reload and drain under load: pgbench through pgkeel loses no transaction to a reload or a SIGTERM."""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pgwire
from e2e_util import identity, poll
from pgcluster import client_env, free_ports


def start_pgbench(port: int, seconds: int, script) -> subprocess.Popen:
    """pgbench -n with a `select 1` script (no tables needed), 4 clients, through `port`."""
    script.write_text("select 1;\n")
    return subprocess.Popen(["pgbench", "-n", "-f", str(script), "-c", "4", "-j", "2", "-T", str(seconds),
                             "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=client_env())


def finished_cleanly(bench: subprocess.Popen) -> str:
    out, _ = bench.communicate(timeout=60)
    assert bench.returncode == 0, out
    assert re.search(r"number of failed transactions: 0 ", out), out
    assert int(re.search(r"number of transactions actually processed: (\d+)", out).group(1)) > 100, out
    return out


def test_reload_changes_candidates_and_interval_under_pgbench(cluster, pgkeel_factory, tmp_path):
    """pgkeel starts from a file naming only the primary (so the replica port falls back to it). During a
    pgbench run, the file gains the replica and a new probe_interval and POST /reload applies it: the
    replica port reaches the replica, and pgbench finishes with zero failed transactions."""
    conf = tmp_path / "pgkeel.yaml"
    conf.write_text(f"candidates: ['127.0.0.1:{cluster.primary_port}']\nprobe_interval: 1s\n")
    # unhealthy_after 10: this VM's page-cache evictions can stall PostgreSQL for a second or two, and
    # a primary taken out of routing closes pgbench's sessions; that is not what this test is about.
    pk = pgkeel_factory(cluster, flags={"config": str(conf), "probe_interval": None, "unhealthy_after": "10"},
                        pass_candidates_flag=False)
    assert identity(pk.dsn("replica")) == (False, cluster.primary_port)  # fallback to the primary
    bench = start_pgbench(pk.primary_port, 4, tmp_path / "select1.sql")
    time.sleep(1)
    conf.write_text(f"candidates: ['127.0.0.1:{cluster.primary_port}', '127.0.0.1:{cluster.replica_port}']\n"
                    "probe_interval: 300ms\n")
    req = urllib.request.Request(pk.admin_url("/reload"), data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    poll(lambda: identity(pk.dsn("replica")) == (True, cluster.replica_port), timeout=5,
         what="the replica port to reach the replica added by the reload")
    finished_cleanly(bench)
    assert "configuration reloaded (2 candidates)" in pk.log_text()


def post_reload(pk) -> tuple[int, str]:
    req = urllib.request.Request(pk.admin_url("/reload"), data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_reload_moves_the_primary_listener_under_pgbench(cluster, pgkeel_factory, tmp_path):
    """listen_primary moves from port A to port B by a reload during a pgbench run: B serves at once, A
    refuses new connections, and the sessions opened on A finish with zero failed transactions. A reload
    naming a port already taken fails (400, naming listen_primary) and B keeps serving."""
    port_a, port_b, replica = free_ports(3)
    conf = tmp_path / "pgkeel.yaml"
    base = f"candidates: ['127.0.0.1:{cluster.primary_port}']\nlisten_replica: 127.0.0.1:{replica}\n"
    conf.write_text(base + f"listen_primary: 127.0.0.1:{port_a}\n")
    pk = pgkeel_factory(cluster, flags={"config": str(conf), "unhealthy_after": "10"}, pass_candidates_flag=False,
                        listen_flags=False, listen_ports=(port_a, replica))
    bench = start_pgbench(port_a, 4, tmp_path / "select1.sql")
    time.sleep(1)
    conf.write_text(base + f"listen_primary: 127.0.0.1:{port_b}\n")
    assert post_reload(pk) == (200, "configuration reloaded\n")
    assert identity(f"host=127.0.0.1 port={port_b} dbname=postgres user=postgres") == (False, cluster.primary_port)
    assert refused(port_a)
    finished_cleanly(bench)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        conf.write_text(base + f"listen_primary: 127.0.0.1:{taken.getsockname()[1]}\n")
        status, body = post_reload(pk)
    assert status == 400 and "listen_primary: " in body, body
    assert identity(f"host=127.0.0.1 port={port_b} dbname=postgres user=postgres") == (False, cluster.primary_port)
    status_doc = json.loads(urllib.request.urlopen(pk.admin_url("/status"), timeout=5).read())
    assert {l["role"]: l["address"] for l in status_doc["listeners"]}["primary"] == f"127.0.0.1:{port_b}"

    # The same address spelled another way is no move (and no "address in use" from our own socket).
    conf.write_text(base + f"listen_primary: localhost:{port_b}\n")
    assert post_reload(pk) == (200, "configuration reloaded\n")
    assert identity(f"host=127.0.0.1 port={port_b} dbname=postgres user=postgres") == (False, cluster.primary_port)


def test_sigterm_during_pgbench_drains(cluster, pgkeel_factory, tmp_path):
    """drain_delay 2s, shutdown_timeout 10s: SIGTERM during a 4 s pgbench run. New connections are still
    accepted right after SIGTERM and refused only after drain_delay; pgbench's open sessions finish their
    run with zero failed transactions; then pgkeel exits 0."""
    # unhealthy_after 10: a stall of this VM (see above) must not take the primary out of routing.
    pk = pgkeel_factory(cluster, flags={"drain_delay": "2s", "shutdown_timeout": "10s",
                                        "unhealthy_after": "10"})
    bench = start_pgbench(pk.primary_port, 4, tmp_path / "select1.sql")
    time.sleep(0.8)
    pk.expect_exit = True
    t0 = time.monotonic()
    pk.signal(signal.SIGTERM)
    # Sent right after SIGTERM, inside drain_delay: a closed listener would refuse it.
    assert pgwire.try_startup("127.0.0.1", pk.primary_port).outcome == "ready"
    poll(lambda: pgwire.connect_refused("127.0.0.1", pk.primary_port), timeout=4, interval=0.02,
         what="listeners to close after drain_delay")
    assert time.monotonic() - t0 >= 1.95
    finished_cleanly(bench)
    assert pk.proc.wait(timeout=15) == 0


def test_reload_cannot_switch_the_source_of_a_running_pgkeel(cluster, pgkeel_factory, tmp_path):
    """A file that switches `source` to cnpg (and so drops `candidates`) is checked as the running process
    would use it: the source stays static until a restart, so the reload fails with 400 naming the missing
    candidates, the log says the source applies at the next start, and routing goes on unchanged."""
    conf = tmp_path / "pgkeel.yaml"
    conf.write_text(f"candidates: ['127.0.0.1:{cluster.primary_port}', '127.0.0.1:{cluster.replica_port}']\n")
    pk = pgkeel_factory(cluster, flags={"config": str(conf)}, pass_candidates_flag=False)
    conf.write_text("source: cnpg\nkubernetes_cluster: pg-main\n")
    status, body = post_reload(pk)
    assert status == 400 and "no candidates" in body, body
    assert "source changed to 'cnpg'; it applies at the next start (still 'static')" in pk.log_text()
    assert identity(pk.dsn("primary")) == (False, cluster.primary_port)
    assert identity(pk.dsn("replica")) == (True, cluster.replica_port)
