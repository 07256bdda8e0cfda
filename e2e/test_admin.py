"""Admin HTTP server: /healthz, /readyz through a failover, /status and /metrics against a real cluster."""

import json
import re
import urllib.error
import urllib.request

from e2e_util import connect, poll
from pgcluster import query


def get(pk, path: str) -> tuple[int, str, str]:
    """(status, body, content type) of GET path on pgkeel's admin port; an HTTP error status is returned too."""
    try:
        with urllib.request.urlopen(pk.admin_url(path), timeout=5) as resp:
            return resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers.get("Content-Type", "")


def samples(text: str, name: str) -> dict[str, float]:
    """Label text -> value for every sample of metric `name` in a Prometheus exposition."""
    found = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{.*\}})? (\S+)$", line)
        if m:
            found[m.group(1) or ""] = float(m.group(2))
    return found


def test_healthz_and_status(cluster, pgkeel):
    """/healthz answers ok; /status lists both nodes with their roles, the listeners and the workers."""
    assert get(pgkeel, "/healthz")[:2] == (200, "ok\n")
    status, body, ctype = get(pgkeel, "/status")
    assert status == 200 and ctype.startswith("application/json")
    doc = json.loads(body)
    roles = {n["endpoint"]: (n["role"], n["health"]) for n in doc["nodes"]}
    assert roles == {f"127.0.0.1:{cluster.primary_port}": ("primary", "healthy"),
                     f"127.0.0.1:{cluster.replica_port}": ("replica", "healthy")}
    assert doc["primary"] == f"127.0.0.1:{cluster.primary_port}"
    assert doc["version"] >= 1 and doc["workers"] == 2
    assert {l["role"] for l in doc["listeners"]} == {"primary", "replica"}


def test_metrics_count_connections(cluster, pgkeel):
    """After a few psql connections, /metrics shows them accepted and closed on the primary listener, with
    the node metrics of both nodes, in Prometheus text format."""
    for _ in range(3):
        assert query(pgkeel.port("primary"), "select 1") == "1"

    def closed_enough():
        text = get(pgkeel, "/metrics")[1]
        closed = samples(text, "pgkeel_client_connections_closed_total")
        return text if closed.get('{listener="primary",reason="client_closed"}', 0) >= 3 else None

    text, _ = poll(closed_enough, 10, what="3 client_closed sessions in /metrics")
    status, _, ctype = get(pgkeel, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    accepted = samples(text, "pgkeel_client_connections_accepted_total")
    assert accepted['{listener="primary"}'] >= 3
    assert samples(text, "pgkeel_up") == {"": 1.0}
    roles = samples(text, "pgkeel_node_role")
    assert roles[f'{{node="127.0.0.1:{cluster.primary_port}",role="primary"}}'] == 1
    assert roles[f'{{node="127.0.0.1:{cluster.replica_port}",role="replica"}}'] == 1
    assert samples(text, "pgkeel_bytes_forwarded_total")['{direction="server_to_client"}'] > 0
    connects = samples(text, "pgkeel_server_connect_duration_seconds_count")[""]
    assert connects >= 3
    assert samples(text, "pgkeel_server_connect_duration_seconds_bucket")['{le="+Inf"}'] == connects
    assert 0 < samples(text, "pgkeel_server_connect_duration_seconds_sum")[""] < connects * 5
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^pgkeel_[a-z0-9_]+(\{.*\})? \S+$", line), line
    probes = samples(text, "pgkeel_node_probe_duration_seconds_count")
    assert probes[f'{{node="127.0.0.1:{cluster.primary_port}"}}'] >= 1


def test_bytes_are_counted_while_a_session_is_open(cluster, pgkeel):
    """A long session's traffic shows in pgkeel_bytes_forwarded_total before the session ends."""
    def forwarded():
        return samples(get(pgkeel, "/metrics")[1], "pgkeel_bytes_forwarded_total")

    conn = connect(pgkeel.dsn("primary"))
    try:
        before = forwarded().get('{direction="server_to_client"}', 0)
        with conn.cursor() as cur:
            cur.execute("select repeat('x', 1000000)")
            assert len(cur.fetchone()[0]) == 1000000
            after = forwarded()['{direction="server_to_client"}']
            assert after - before >= 1000000, (before, after)
            cur.execute("select length(%s)", ("y" * 500000,))
            assert cur.fetchone()[0] == 500000
        assert forwarded()['{direction="client_to_server"}'] >= 500000
    finally:
        conn.close()


def test_readyz_follows_the_primary(new_cluster, pgkeel_factory):
    """/readyz is 200 with a primary, 503 with a reason once the primary is stopped, 200 again after the
    replica is promoted; the promotion shows in pgkeel_primary_changes_total."""
    c = new_cluster()
    pk = pgkeel_factory(c)
    assert get(pk, "/readyz")[:2] == (200, "ready\n")
    c.stop_node("primary", mode="fast")
    (status, body, _), _ = poll(lambda: (r := get(pk, "/readyz"))[0] == 503 and r, 15,
                                what="/readyz 503 without a primary")
    assert body.startswith("no primary"), body
    assert get(pk, "/healthz")[0] == 200
    # A client arriving now waits (primary_wait 2s) and is refused with 57P03.
    assert query(pk.primary_port, "select 1", check=False) == ""
    c.promote_replica()
    poll(lambda: get(pk, "/readyz")[0] == 200, 15, what="/readyz 200 after the promotion")
    text = get(pk, "/metrics")[1]
    assert samples(text, "pgkeel_primary_changes_total") == {"": 1.0}
    assert samples(text, "pgkeel_no_primary_seconds_total")[""] > 0.5
    assert samples(text, "pgkeel_client_connections_waited_total")['{listener="primary"}'] >= 1
    old_primary = f'{{node="127.0.0.1:{c.primary_port}"}}'
    assert samples(text, "pgkeel_node_probe_failures_total")[old_primary] >= 1
    assert samples(text, "pgkeel_server_connections_opened_total")[old_primary] >= 1


def test_readyz_requires_replica(new_cluster, pgkeel_factory):
    """With readyz_requires_replica, stopping the replica makes /readyz 503 though the primary is up."""
    c = new_cluster()
    pk = pgkeel_factory(c, flags={"readyz_requires_replica": "true"})
    poll(lambda: get(pk, "/readyz")[0] == 200, 10, what="/readyz 200 with both nodes")
    c.stop_node("replica", mode="fast")
    (status, body, _), _ = poll(lambda: (r := get(pk, "/readyz"))[0] == 503 and r, 15,
                                what="/readyz 503 without a replica")
    assert body == "no healthy replica\n"


def test_admin_listen_empty_disables_it(cluster, pgkeel_factory):
    """An empty admin_listen serves no HTTP; the proxy works as before."""
    pk = pgkeel_factory(cluster, flags={"admin_listen": ""})
    try:
        urllib.request.urlopen(pk.admin_url("/healthz"), timeout=2)
        raise AssertionError("admin port answered with admin_listen empty")
    except urllib.error.URLError:
        pass
    assert query(pk.port("primary"), "select 1") == "1"


def post(pk, path: str, method: str = "POST") -> tuple[int, str]:
    """(status, body) of POST (or `method`) path on pgkeel's admin port."""
    req = urllib.request.Request(pk.admin_url(path), data=b"", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_sigterm_drain_delay(cluster, pgkeel_factory):
    """SIGTERM with drain_delay 1.5s: /readyz answers 503 draining at once, new connections are still
    accepted during the delay (a pgbench-style client keeps working), then refused; exit code 0."""
    import signal
    import time

    import pgwire
    from e2e_util import connect, one

    pk = pgkeel_factory(cluster, flags={"drain_delay": "1500ms", "shutdown_timeout": "5s"})
    assert get(pk, "/readyz")[0] == 200
    pk.expect_exit = True
    t0 = time.monotonic()
    pk.signal(signal.SIGTERM)
    # "At once": as soon as the main thread has taken the signal, well within a probe period.
    (status, body, _), _ = poll(lambda: (r := get(pk, "/readyz"))[0] == 503 and r, timeout=0.5,
                                interval=0.01, what="/readyz 503 right after SIGTERM")
    assert body == "draining: pgkeel is shutting down\n"
    during = connect(pk.dsn("primary"))  # accepted during drain_delay
    assert one(during, "select 'still accepting'") == ("still accepting",)
    assert time.monotonic() - t0 < 1.5
    poll(lambda: pgwire.connect_refused("127.0.0.1", pk.primary_port), timeout=4, interval=0.05,
         what="the listeners to close after drain_delay")
    assert time.monotonic() - t0 >= 1.4
    assert one(during, "select 'in-flight session finishes'") == ("in-flight session finishes",)
    during.close()
    assert pk.proc.wait(timeout=10) == 0


def test_post_reload_keeps_config_on_error(cluster, pgkeel_factory, tmp_path):
    """POST /reload: a good file answers 200; a bad one answers 400 naming the key and line and changes
    nothing (pgkeel keeps serving); both outcomes are counted in pgkeel_config_reloads_total."""
    conf = tmp_path / "pgkeel.yaml"
    conf.write_text("replica_fallback: true\n")
    pk = pgkeel_factory(cluster, flags={"config": str(conf)})
    assert post(pk, "/reload") == (200, "configuration reloaded\n")
    conf.write_text("replica_fallback: true\nprobe_timeout: soon\n")
    status, body = post(pk, "/reload")
    assert status == 400
    assert "probe_timeout" in body and ":2:" in body, body
    assert query(pk.primary_port, "select pg_is_in_recovery()") == "f"
    counts = samples(get(pk, "/metrics")[1], "pgkeel_config_reloads_total")
    assert counts == {'{result="success"}': 1.0, '{result="failure"}': 1.0}


def test_drain_command_waits_for_sessions(cluster, pgkeel_factory, pgkeel_bin):
    """`pgkeel drain` (a sidecar's preStop) makes /readyz fail at once and waits for the open client
    session: exit 1 naming it when the timeout passes first, exit 0 as soon as the client leaves; new
    clients are still served while draining; DELETE /drain makes /readyz answer again."""
    import subprocess
    import time

    from e2e_util import one

    pk = pgkeel_factory(cluster)
    admin = f"127.0.0.1:{pk.admin_port}"
    drain = [pgkeel_bin, "drain", "--admin", admin]
    session = connect(pk.dsn("primary"))
    assert one(session, "select 1") == (1,)

    t0 = time.monotonic()
    res = subprocess.run(drain + ["--timeout", "1s"], capture_output=True, text=True, timeout=15)
    assert (res.returncode, res.stdout) == (1, f"timeout: 1 client session(s) still open on {admin} after 1s\n")
    assert time.monotonic() - t0 >= 1.0
    assert get(pk, "/readyz")[:2] == (503, "draining: pgkeel is shutting down\n")
    late = connect(pk.dsn("primary"))  # still served while draining
    assert one(late, "select 2") == (2,)
    late.close()

    waiting = subprocess.Popen(drain + ["--timeout", "20s"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiting.poll() is None, "drain returned while a session was open"
    session.close()
    out, _ = waiting.communicate(timeout=10)
    assert (waiting.returncode, out) == (0, f"drained: no client session open on {admin}\n")

    status, body = post(pk, "/drain", method="DELETE")
    assert status == 200 and json.loads(body) == {"draining": False}
    assert get(pk, "/readyz")[0] == 200


def test_drain_command_usage(pgkeel_bin):
    """Bad flags exit 2 naming the flag; an admin address nobody listens on exits 1 saying so."""
    import subprocess

    from pgcluster import free_port

    bad = subprocess.run([pgkeel_bin, "drain", "--timeout", "soon"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--timeout" in bad.stderr, bad.stderr
    bad = subprocess.run([pgkeel_bin, "drain", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown flag --bogus" in bad.stderr, bad.stderr
    port = free_port()
    gone = subprocess.run([pgkeel_bin, "drain", "--admin", f"127.0.0.1:{port}", "--timeout", "1s"],
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and f"no answer from 127.0.0.1:{port}" in gone.stderr, gone.stderr


def test_reload_command(cluster, pgkeel_factory, pgkeel_bin, tmp_path):
    """`pgkeel reload` (for kubectl exec; the image has no shell): exit 0 for a good file; exit 1 printing the
    key and line for a bad one, which pgkeel does not apply (it keeps serving)."""
    import subprocess

    conf = tmp_path / "pgkeel.yaml"
    conf.write_text("replica_fallback: true\n")
    pk = pgkeel_factory(cluster, flags={"config": str(conf)})
    reload = [pgkeel_bin, "reload", "--admin", f"127.0.0.1:{pk.admin_port}"]
    res = subprocess.run(reload, capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout) == (0, f"reloaded: 127.0.0.1:{pk.admin_port} runs the new configuration\n")
    conf.write_text("replica_fallback: true\nprobe_timeout: soon\n")
    res = subprocess.run(reload, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "probe_timeout" in res.stderr and ":2:" in res.stderr, res.stderr
    assert query(pk.primary_port, "select pg_is_in_recovery()") == "f"
    counts = samples(get(pk, "/metrics")[1], "pgkeel_config_reloads_total")
    assert counts == {'{result="success"}': 1.0, '{result="failure"}': 1.0}
