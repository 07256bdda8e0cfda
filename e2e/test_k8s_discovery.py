"""CloudNativePG and Zalando discovery end to end: pgkeel follows a Cluster / postgresql and its pods on the
test Kubernetes API server, while kubectl plays the operator through a failover of a real PostgreSQL primary
and replica on 127.0.0.2 and 127.0.0.3 (same port, as pods). A writer reconnecting through pgkeel in a loop
must never write to the old primary once the control plane has moved, and must resume soon after the new
primary answers pg_is_in_recovery() = false."""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from e2e_util import Writer, poll
from k8s_apiserver import K8sApiServer
from pgcluster import REPO_ROOT, PgCluster, client_env

FIXTURES = Path(os.environ.get("PGKEEL_SHARED_DIR", REPO_ROOT.parent / "shared")) / "fixtures" / "k8s"
HOSTS = ("127.0.0.2", "127.0.0.3")

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def pods_on_hosts(list_fixture: str, first: str) -> list[dict]:
    """The fixture list's first two pods as objects (with kind), `first` on HOSTS[0], the other on HOSTS[1]."""
    pods = []
    for item in fixture(list_fixture)["items"][:2]:
        pod = copy.deepcopy(item)
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        ip = HOSTS[0] if pod["metadata"]["name"] == first else HOSTS[1]
        pod["status"]["podIP"] = ip
        pod["status"]["podIPs"] = [{"ip": ip}]
        pods.append(pod)
    return pods


class Kubectl:
    """kubectl against the test API server, with its discovery cache in the test's directory."""

    def __init__(self, kubeconfig: Path, cache: Path):
        self.base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), "-n", "db"]

    def __call__(self, *args: str) -> str:
        res = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, env=client_env())
        assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stdout}{res.stderr}"
        return res.stdout

    def patch_status(self, kind: str, name: str, status: dict):
        self("patch", kind, name, "--type=merge", "--subresource=status", "-p", json.dumps({"status": status}))

    def label(self, pod: str, **labels: str):
        self("label", "pod", pod, "--overwrite", *[f"{k}={v}" for k, v in labels.items()])

    def annotate(self, kind: str, name: str, **annotations: str):
        self("annotate", kind, name, "--overwrite", *[f"{k}={v}" for k, v in annotations.items()])


def wait_answers_false(host: str, port: int, timeout: float = 30) -> float:
    """Polls pg_is_in_recovery() on one node every 5 ms; returns the monotonic time it first said false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = psycopg2.connect(host=host, port=port, dbname="postgres", user="postgres", connect_timeout=2)
            try:
                with conn.cursor() as cur:
                    cur.execute("select pg_is_in_recovery()")
                    if cur.fetchone()[0] is False:
                        return time.monotonic()
            finally:
                conn.close()
        except psycopg2.Error:
            pass
        time.sleep(0.005)
    raise AssertionError(f"{host}:{port} never answered pg_is_in_recovery() = false")


@pytest.fixture
def pod_cluster(tmp_path):
    """A primary on 127.0.0.2 and a replica on 127.0.0.3 (same port), with a writes table."""
    cluster = PgCluster(hosts=HOSTS).start()  # under /tmp: pytest's tmp_path is not reachable by postgres
    conn = psycopg2.connect(cluster.primary.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create table writes(id bigserial primary key, at timestamptz default clock_timestamp(), "
                    "node text)")
    conn.close()
    cluster.wait_caught_up()
    yield cluster
    cluster.stop_all()


@pytest.fixture
def apiserver(tmp_path):
    srv = K8sApiServer(bookmark_interval=1.0).start()
    kubeconfig = tmp_path / "kubeconfig"
    srv.write_kubeconfig(str(kubeconfig), namespace="db")
    yield srv, kubeconfig, Kubectl(kubeconfig, tmp_path / "kube-cache")
    srv.stop()


def start_pgkeel(pgkeel_factory, cluster, kubeconfig, source: str, name: str):
    return pgkeel_factory(cluster, pass_candidates_flag=False, flags={
        "source": source, "kubernetes_cluster": name, "kubernetes_namespace": "db",
        "kubeconfig": str(kubeconfig), "postgres_port": str(cluster.primary_port),
        "primary_wait": "5s", "probe_interval": "1s"})


def cnpg_objects(port: int) -> tuple[dict, list[dict]]:
    """The fixture Cluster cut down to two instances, pg-main-1 (primary, 127.0.0.2) and pg-main-2 (127.0.0.3)."""
    cluster = fixture("cnpg-cluster-3-instances.json")
    st = cluster["status"]
    st.update(instances=2, readyInstances=2, instanceNames=["pg-main-1", "pg-main-2"],
              currentPrimary="pg-main-1", targetPrimary="pg-main-1",
              instancesStatus={"healthy": ["pg-main-1", "pg-main-2"]},
              instancesReportedState={"pg-main-1": {"isPrimary": True, "timeLineID": 1, "ip": HOSTS[0]},
                                      "pg-main-2": {"isPrimary": False, "timeLineID": 1, "ip": HOSTS[1]}})
    cluster["spec"]["instances"] = 2
    return cluster, pods_on_hosts("cnpg-pods-list.json", "pg-main-1")


def freeze(cluster: PgCluster, name: str) -> list[int]:
    """SIGSTOP the node's postmaster and every child (each backend has a session of its own): like a lost
    Kubernetes node, it accepts TCP connections and answers nothing. Returns the pids for thaw()."""
    with open(os.path.join(cluster.nodes[name].datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def thaw(pids: list[int]):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("old_primary", ["stopped", "frozen"])
def test_cnpg_failover_followed_from_the_cluster_status(old_primary, pod_cluster, apiserver, pgkeel_factory):
    """kubectl plays CloudNativePG's failover in the operator's order: targetPrimary "pending" (the old primary
    still answers f, yet gets no more writes), the old primary goes away (stopped, or frozen like a lost node
    whose probes time out), targetPrimary names pg-main-2, it is promoted, currentPrimary follows, and the pods
    are relabelled one by one. The writer never writes to pg-main-1 after "pending", and its writes resume on
    pg-main-2 soon after it answers f, also when probes of the frozen pg-main-1 take probe_timeout."""
    srv, kubeconfig, kubectl = apiserver
    cluster_obj, pods = cnpg_objects(pod_cluster.primary_port)
    for obj in (cluster_obj, *pods):
        srv.load(obj)
    pk = start_pgkeel(pgkeel_factory, pod_cluster, kubeconfig, "cnpg", "pg-main")
    status, _ = poll(lambda: (lambda s: s if s["primary"] else None)(json.loads(urllib_get(pk.admin_url("/status")))),
                  10, what="a primary in /status")
    assert status["primary"] == f"{HOSTS[0]}:{pod_cluster.primary_port}"
    assert "pg-main" in status["controlPlane"]
    assert {n["name"] for n in status["nodes"]} == {"pg-main-1", "pg-main-2"}

    writer = Writer(pk.primary_port).start()
    poll(lambda: len(writer.writes_on(HOSTS[0])) >= 5, 10, what="writes on pg-main-1")

    kubectl.patch_status("cluster", "pg-main", {"phase": "Failing over",
                                                "phaseReason": "Initiating a failover from pg-main-1"})
    kubectl.patch_status("cluster", "pg-main", {"targetPrimary": "pending"})
    t_pending = time.monotonic()
    time.sleep(0.5)  # pg-main-1 still runs and answers f: only the control plane says it is leaving
    kubectl.label("pg-main-1", **{"cnpg.io/instanceRole": "unhealthy", "role": "unhealthy"})
    frozen = None
    if old_primary == "stopped":
        pod_cluster.stop_node("primary", mode="fast")
    else:
        frozen = freeze(pod_cluster, "primary")
        time.sleep(1.5)  # a full round has met the frozen node: probes of it now take probe_timeout
    try:
        resumed_ms = promote_and_measure(pod_cluster, kubectl, writer, t_pending)
    finally:
        if frozen:
            thaw(frozen)
    print(f"\ncnpg ({old_primary} old primary): writes resumed {resumed_ms:.0f} ms after pg-main-2 answered "
          "pg_is_in_recovery() = false")
    assert resumed_ms < 500, resumed_ms
    metrics = urllib_get(pk.admin_url("/metrics"))
    assert 'pgkeel_discovery_source_synced{source="cnpg"} 1' in metrics


def promote_and_measure(pod_cluster: PgCluster, kubectl: Kubectl, writer: Writer, t_pending: float) -> float:
    """The rest of the CNPG failover after the old primary is gone; the ms from pg-main-2 answering f to the
    writer's first write there. Asserts that nothing was written to pg-main-1 after "pending"."""
    kubectl.patch_status("cluster", "pg-main", {"targetPrimary": "pg-main-2",
                                                "phaseReason": "Failing over from pg-main-1 to pg-main-2"})
    answered = {}
    watcher = threading.Thread(target=lambda: answered.update(t=wait_answers_false(HOSTS[1], pod_cluster.replica_port)))
    watcher.start()
    pod_cluster.promote_replica()
    watcher.join()
    t_false = answered["t"]
    kubectl.patch_status("cluster", "pg-main", {"currentPrimary": "pg-main-2", "timelineID": 2})
    kubectl.label("pg-main-1", **{"cnpg.io/instanceRole": "replica", "role": "replica"})
    kubectl.label("pg-main-2", **{"cnpg.io/instanceRole": "primary", "role": "primary"})
    poll(lambda: len(writer.writes_on(HOSTS[1])) >= 5, 15, what="writes on pg-main-2")
    writer.finish()
    late = writer.writes_on(HOSTS[0], after=t_pending + 0.05)
    assert late == [], f"{len(late)} writes reached pg-main-1 after targetPrimary went pending"
    return (min(writer.writes_on(HOSTS[1])) - t_false) * 1000


def zalando_objects(now: datetime.datetime) -> list[dict]:
    """The postgresql, two pods (acid-main-0 primary on 127.0.0.2, acid-main-1 on 127.0.0.3) and the leader
    ConfigMap naming acid-main-0 with a fresh renewTime."""
    objs = [fixture("zalando-postgresql.json"), *pods_on_hosts("zalando-pods-list.json", "acid-main-0")]
    leader = fixture("patroni-k8s-leader-configmap.json")
    ann = leader["metadata"]["annotations"]
    ann.update(leader="acid-main-0", renewTime=now.isoformat(), acquireTime=now.isoformat(), ttl="30")
    objs.append(leader)
    return objs


def test_zalando_failover_follows_the_leader_configmap(pod_cluster, apiserver, pgkeel_factory):
    """Zalando/Patroni on Kubernetes: the leader ConfigMap names acid-main-0. The old primary is cut off, the
    leader annotation moves to acid-main-1 (compare-and-swap by the new leader), it promotes and labels itself
    master while acid-main-0 keeps a stale spilo-role=master label and is started again as a primary: pgkeel
    follows the leader object, never the stale label, and writes resume on acid-main-1."""
    srv, kubeconfig, kubectl = apiserver
    now = datetime.datetime.now(datetime.timezone.utc)
    for obj in zalando_objects(now):
        srv.load(obj)
    pk = start_pgkeel(pgkeel_factory, pod_cluster, kubeconfig, "zalando", "acid-main")
    poll(lambda: json.loads(urllib_get(pk.admin_url("/status")))["primary"], 10, what="a primary")
    writer = Writer(pk.primary_port).start()
    poll(lambda: len(writer.writes_on(HOSTS[0])) >= 5, 10, what="writes on acid-main-0")

    # The leader's node is partitioned: Postgres there goes away for pgkeel, nothing changes in the API.
    pod_cluster.stop_node("primary", mode="immediate")
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    kubectl.annotate("configmap", "acid-main-leader", leader="acid-main-1", acquireTime=stamp, renewTime=stamp,
                     transitions="1")
    t_leader = time.monotonic()
    answered = {}
    watcher = threading.Thread(target=lambda: answered.update(t=wait_answers_false(HOSTS[1], pod_cluster.replica_port)))
    watcher.start()
    pod_cluster.promote_replica()
    watcher.join()
    kubectl.label("acid-main-1", **{"spilo-role": "master"})
    poll(lambda: len(writer.writes_on(HOSTS[1])) >= 5, 15, what="writes on acid-main-1")
    # The partition heals: acid-main-0's Postgres comes back still a primary (timeline 1) with its stale
    # master label. Only the leader object counts.
    pod_cluster.start_node("primary")
    time.sleep(1.5)
    writer.finish()
    late = writer.writes_on(HOSTS[0], after=t_leader + 0.05)
    assert late == [], f"{len(late)} writes reached acid-main-0 after the leader moved"
    resumed_ms = (min(writer.writes_on(HOSTS[1])) - answered["t"]) * 1000
    print(f"\nzalando: writes resumed {resumed_ms:.0f} ms after acid-main-1 answered pg_is_in_recovery() = false")
    assert resumed_ms < 500, resumed_ms


def urllib_get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()
