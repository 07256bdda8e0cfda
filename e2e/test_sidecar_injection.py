"""Sidecar injection end to end, from the chart to a running sidecar: the sidecar config the Helm chart renders
(ci/sidecar-injector-values.yaml) goes to a real `pgkeel inject-webhook`; an app pod annotated for the CNPG
cluster pg-main is admitted over TLS; the injected container's own command line then runs against that
cluster on the test Kubernetes API server, with a real primary on 127.0.0.2 and replica on 127.0.0.3. Only
what a pod provides and a test cannot (ports 6432/9432 of its own network namespace, the service-account
token) is overridden. Its readiness probe path answers, both ports reach the right node, and its preStop
command drains: it waits for the open session and returns once it ends."""

from __future__ import annotations

import base64
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psycopg2
import yaml

from pgcluster import REPO_ROOT, client_env, free_ports, wait_until
from helm_util import helm  # noqa: F401  (fixture)
from test_inject_webhook import Webhook, app_pod, applied, make_pki, mutate, review_for, sidecars
from test_k8s_discovery import HOSTS, apiserver, cnpg_objects, pod_cluster  # noqa: F401  (fixtures)

CHART = REPO_ROOT / "charts" / "pgkeel"


def chart_sidecar_config(helm: str) -> str:
    """sidecar.yaml from the chart's sidecar-injector rendering."""
    res = subprocess.run([helm, "template", "r", str(CHART), "-n", "db", "-f",
                          str(CHART / "ci" / "sidecar-injector-values.yaml")],
                         capture_output=True, text=True, timeout=60, check=True)
    for doc in yaml.safe_load_all(res.stdout):
        if doc and doc["kind"] == "ConfigMap" and "sidecar.yaml" in doc.get("data", {}):
            return doc["data"]["sidecar.yaml"]
    raise AssertionError("the chart rendered no sidecar.yaml")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def replace_flags(args: list[str], values: dict[str, str]) -> list[str]:
    """args with the value of each flag in `values` replaced (each must be there exactly once)."""
    out = list(args)
    for flag, value in values.items():
        assert out.count(flag) == 1, (flag, args)
        out[out.index(flag) + 1] = value
    return out


def server_addr(port: int) -> str:
    conn = psycopg2.connect(host="127.0.0.1", port=port, dbname="postgres", user="postgres", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("select host(inet_server_addr())")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_injected_sidecar_runs_against_the_annotated_cluster(helm, pgkeel_bin, pod_cluster, apiserver, tmp_path):
    srv, kubeconfig, _ = apiserver
    cluster_obj, pods = cnpg_objects(pod_cluster.primary_port)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
              "metadata": {"name": "pg-main-app", "namespace": "db"},
              "data": {k: base64.b64encode(v.encode()).decode()
                       for k, v in {"username": "postgres", "password": "unused-with-trust"}.items()}}
    for obj in (cluster_obj, *pods, secret):
        srv.load(obj)

    # The chart's sidecar config, served by the real webhook over TLS.
    pki = make_pki(tmp_path / "pki", "pgkeel test CA")
    hook = Webhook(pgkeel_bin, tmp_path / "webhook", pki)
    hook.config.write_text(chart_sidecar_config(helm))
    hook.start(pki / "ca.pem")
    try:
        pod = app_pod({"pgkeel.io/inject": "true", "pgkeel.io/cnpg-cluster": "pg-main",
                       "pgkeel.io/cluster-namespace": "db"})
        status, answer = mutate(hook, pki / "ca.pem", review_for(pod))
        assert status == 200 and answer["response"]["allowed"] is True, answer
        patched = applied(pod, answer)
    finally:
        assert hook.stop() == 0, hook.log()

    # A native sidecar: the first init container, restartPolicy Always, probes on its admin port.
    [sidecar] = sidecars(patched)
    assert patched["spec"]["initContainers"][0] is sidecar and sidecar["restartPolicy"] == "Always"
    admin_port = sidecar["readinessProbe"]["httpGet"]["port"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = sidecar["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["/usr/local/bin/pgkeel", "drain"]
    args = sidecar["args"]
    assert args[args.index("--admin-listen") + 1] == f"0.0.0.0:{admin_port}"
    for flag, value in {"--source": "cnpg", "--kubernetes-cluster": "pg-main", "--kubernetes-namespace": "db"}.items():
        assert args[args.index(flag) + 1] == value, args

    # Run the container's command line; the pod's network namespace and token are all that is replaced.
    primary, replica, admin = free_ports(3)
    argv = [pgkeel_bin] + replace_flags(args, {"--listen-primary": f"127.0.0.1:{primary}",
                                               "--listen-replica": f"127.0.0.1:{replica}",
                                               "--admin-listen": f"127.0.0.1:{admin}"})
    argv += ["--kubeconfig", str(kubeconfig), "--postgres-port", str(pod_cluster.primary_port)]
    log = open(tmp_path / "sidecar.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=client_env())
    session = None
    try:
        readyz = f"http://127.0.0.1:{admin}{sidecar['readinessProbe']['httpGet']['path']}"
        wait_until(lambda: proc.poll() is None and http_status(readyz) == 200, 20, what="the sidecar's readiness")
        assert server_addr(primary) == HOSTS[0]  # pg-main-1, the cluster's primary
        assert server_addr(replica) == HOSTS[1]

        # preStop: waits while the app's session is open, returns 0 once it ends.
        session = psycopg2.connect(host="127.0.0.1", port=primary, dbname="postgres", user="postgres")
        drain = [pgkeel_bin] + replace_flags(pre_stop[1:], {"--admin": f"127.0.0.1:{admin}"})
        waiting = subprocess.Popen(drain, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: http_status(readyz) == 503, 5, what="/readyz to fail once the drain starts")
        time.sleep(0.5)
        assert waiting.poll() is None, waiting.communicate()
        session.close()
        out, err = waiting.communicate(timeout=15)
        assert waiting.returncode == 0 and out.startswith("drained"), (out, err)
    finally:
        if session is not None:
            session.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    assert code == 0, (tmp_path / "sidecar.log").read_text()
