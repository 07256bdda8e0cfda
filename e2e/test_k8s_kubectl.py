"""kubectl 1.32 against the Kubernetes API server stand-in (e2e/k8s_apiserver.py): get, apply (client- and
server-side, every kind the chart renders), patch --subresource=status, label, annotate, delete and watch behave
as against a real API server."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import time

from k8s_apiserver import K8sApiServer
from test_k8s_apiserver import FIXTURES, PODS, Kubectl, brief, kubectl, needs_kubectl, request, srv  # noqa: F401

# ---------------------------------------------------------------------------------------------------------
# kubectl


@needs_kubectl
def test_kubectl_get_by_label_field_and_name(kubectl, srv):
    """kubectl get: label selectors (=, in), a field selector on status.podIP, all namespaces, and a CR as JSON."""
    primary = kubectl.json("get", "pods", "-l", "cnpg.io/cluster=pg-main,cnpg.io/instanceRole=primary")
    assert [p["metadata"]["name"] for p in primary["items"]] == ["pg-main-1"]
    assert kubectl.names("get", "pods", "-l", "role in (replica)") == ["pod/pg-main-2", "pod/pg-main-3"]
    ip = srv.get("pods", "pg-main-2", "db")["status"]["podIP"]
    assert kubectl.names("get", "pods", "--field-selector", f"status.podIP={ip}") == ["pod/pg-main-2"]
    assert kubectl.names("get", "pods", "--all-namespaces") == ["pod/pg-main-1", "pod/pg-main-2", "pod/pg-main-3"]
    cluster = kubectl.json("get", "clusters.postgresql.cnpg.io", "pg-main")
    assert cluster["status"]["currentPrimary"] == "pg-main-1" and cluster["kind"] == "Cluster"
    assert kubectl.json("get", "pg", "acid-main")["kind"] == "postgresql"
    assert "pg-main-1" in kubectl.run("get", "pods").stdout  # human-readable output without a Table answer


@needs_kubectl
def test_kubectl_apply_creates_then_changes(kubectl, srv, tmp_path):
    """kubectl apply -f creates a Pod and a postgresql CR, then a changed file patches them (strategic merge for
    the Pod, JSON merge for the CR); the CR's generation rises with its spec."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app-1", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    pg = json.loads((FIXTURES / "zalando-postgresql.json").read_text())
    pg["metadata"] = {"name": "acid-other", "labels": {"team": "acid"}}
    del pg["status"]  # an apply file has none (the server would drop it, and every later apply would resend it)
    path = tmp_path / "objs.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, pg]}))
    out = kubectl.run("apply", "-f", str(path)).stdout
    assert "pod/app-1 created" in out and "postgresql.acid.zalan.do/acid-other created" in out
    created = srv.get("pods", "app-1", "db")
    assert created["status"] == {"phase": "Pending"}  # an HTTP create does not set status
    assert "kubectl.kubernetes.io/last-applied-configuration" in created["metadata"]["annotations"]
    assert "status" not in srv.get("postgresqls", "acid-other", "db")
    pod["metadata"]["labels"] = {"app": "web", "tier": "front"}
    pg["spec"]["numberOfInstances"] = 5
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, pg]}))
    out = kubectl.run("apply", "-f", str(path)).stdout
    assert "pod/app-1 configured" in out and "acid-other configured" in out
    assert srv.get("pods", "app-1", "db")["metadata"]["labels"] == {"app": "web", "tier": "front"}
    changed = srv.get("postgresqls", "acid-other", "db")
    assert changed["spec"]["numberOfInstances"] == 5 and changed["metadata"]["generation"] == 2
    assert "unchanged" in kubectl.run("apply", "-f", str(path)).stdout


@needs_kubectl
def test_kubectl_server_side_apply(kubectl, srv, tmp_path):
    """kubectl apply --server-side creates and then changes a ConfigMap (PATCH application/apply-patch+yaml)."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "a"}}
    path = tmp_path / "cm.json"
    path.write_text(json.dumps(cm))
    kubectl.run("apply", "--server-side", "-f", str(path))
    cm["data"]["mode"] = "b"
    path.write_text(json.dumps(cm))
    assert "serverside-applied" in kubectl.run("apply", "--server-side", "-f", str(path)).stdout
    assert srv.get("configmaps", "settings", "db")["data"] == {"mode": "b"}


@needs_kubectl
def test_kubectl_apply_packaging_kinds(kubectl, srv, tmp_path):
    """kubectl apply -f (client-side, then again, then --server-side), get -f and delete -f work for every kind
    pgkeel's chart and manifests produce, cluster-scoped ones (Namespace, ClusterRole(Binding),
    MutatingWebhookConfiguration) at their cluster paths; a second client-side apply changes nothing."""
    objs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pgkeel"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pk"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pk"},
         "spec": {"selector": {"app": "pk"}, "ports": [{"name": "primary", "port": 6432}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pk"},
         "spec": {"selector": {"matchLabels": {"app": "pk"}}, "template": {
             "metadata": {"labels": {"app": "pk"}},
             "spec": {"containers": [{"name": "pgkeel", "image": "ghcr.io/pgkeel/pgkeel:0.1.0"}]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "pk"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pk"},
                  "maxReplicas": 3}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pk"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "pgkeel"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "pgkeel"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pgkeel"},
         "subjects": [{"kind": "ServiceAccount", "name": "pk", "namespace": "db"}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": "pgkeel"}, "webhooks": [{
             "name": "inject.pgkeel.io", "failurePolicy": "Fail", "sideEffects": "None",
             "admissionReviewVersions": ["v1"], "clientConfig": {"service": {"name": "pk", "namespace": "db"}}}]},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "pk"},
         "spec": {"selector": {}, "endpoints": [{"port": "admin"}]}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "pk"},
         "spec": {"secretName": "pk-tls", "issuerRef": {"name": "pk"}}},
    ]
    path = tmp_path / "objs.yaml"
    path.write_text("".join(f"---\n{json.dumps(o)}\n" for o in objs))  # YAML documents
    out = kubectl.run("apply", "-f", str(path)).stdout
    assert out.count(" created") == len(objs), out
    assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/pgkeel created" in out
    assert kubectl.run("apply", "-f", str(path)).stdout.count(" unchanged") == len(objs)
    webhook = srv.get("mutatingwebhookconfigurations", "pgkeel")
    assert webhook["webhooks"][0]["failurePolicy"] == "Fail" and "namespace" not in webhook["metadata"]
    assert srv.get("clusterroles", "pgkeel")["rules"][0]["verbs"] == ["list"]
    assert srv.get("deployments", "pk", "db")["metadata"]["generation"] == 1
    assert srv.get("namespaces", "pgkeel")["status"] == {"phase": "Active"}
    got = kubectl.json("get", "-f", str(path))["items"]
    assert [o["kind"] for o in got] == [o["kind"] for o in objs]
    assert got[3]["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/pgkeel/pgkeel:0.1.0"
    assert kubectl.names("get", "clusterroles,mutatingwebhookconfigurations") == [
        "clusterrole.rbac.authorization.k8s.io/pgkeel",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/pgkeel"]
    objs[8]["webhooks"][0]["failurePolicy"] = "Ignore"
    path.write_text("".join(f"---\n{json.dumps(o)}\n" for o in objs))  # YAML documents
    out = kubectl.run("apply", "--server-side", "-f", str(path)).stdout
    assert out.count("serverside-applied") == len(objs)
    assert srv.get("mutatingwebhookconfigurations", "pgkeel")["webhooks"][0]["failurePolicy"] == "Ignore"
    assert srv.get("mutatingwebhookconfigurations", "pgkeel")["metadata"]["generation"] == 2
    kubectl.run("delete", "-f", str(path))
    assert srv.get("clusterrolebindings", "pgkeel") is None and srv.get("serviceaccounts", "pk", "db") is None


@needs_kubectl
def test_kubectl_patch_status_subresource(kubectl, srv):
    """--subresource=status changes only status; a main-resource patch ignores status and bumps generation."""
    before = srv.get("clusters", "pg-main", "db")
    kubectl.run("patch", "cluster", "pg-main", "--type=merge", "--subresource=status",
                "-p", '{"status":{"targetPrimary":"pg-main-2"},"spec":{"instances":9}}')
    after = srv.get("clusters", "pg-main", "db")
    assert after["status"]["targetPrimary"] == "pg-main-2" and after["status"]["currentPrimary"] == "pg-main-1"
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    kubectl.run("patch", "cluster", "pg-main", "--type=merge",
                "-p", '{"status":{"targetPrimary":"pg-main-3"},"spec":{"instances":4}}')
    last = srv.get("clusters", "pg-main", "db")
    assert last["status"]["targetPrimary"] == "pg-main-2" and last["spec"]["instances"] == 4
    assert last["metadata"]["generation"] == before["metadata"]["generation"] + 1
    res = kubectl.run("patch", "cluster", "pg-main", "-p", '{"spec":{"instances":5}}', check=False)
    assert res.returncode != 0 and "application/strategic-merge-patch+json is not supported" in res.stderr


@needs_kubectl
def test_kubectl_label_and_delete(kubectl, srv):
    """kubectl label --overwrite moves the primary label; kubectl delete removes a pod (404 afterwards)."""
    kubectl.run("label", "pod", "pg-main-1", "cnpg.io/instanceRole=replica", "--overwrite")
    kubectl.run("label", "pod", "pg-main-2", "cnpg.io/instanceRole=primary", "--overwrite")
    assert kubectl.names("get", "pods", "-l", "cnpg.io/instanceRole=primary") == ["pod/pg-main-2"]
    assert srv.get("pods", "pg-main-1", "db")["metadata"]["labels"]["cnpg.io/instanceRole"] == "replica"
    assert 'pod "pg-main-3" deleted' in kubectl.run("delete", "pod", "pg-main-3").stdout
    assert srv.get("pods", "pg-main-3", "db") is None
    res = kubectl.run("get", "pod", "pg-main-3", check=False)
    assert res.returncode != 0 and 'pods "pg-main-3" not found' in res.stderr


@needs_kubectl
def test_kubectl_watch_sees_selector_changes(kubectl, srv):
    """kubectl get -w --watch-only with a selector sees a role move as DELETED (old primary) + ADDED (new)."""
    proc = subprocess.Popen(kubectl.base + ["get", "pods", "-l", "cnpg.io/instanceRole=primary", "--watch-only",
                                            "-o", "json", "--output-watch-events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert srv.wait_for_watches(1, timeout=15), "kubectl did not start watching"
        srv.patch("pods", "pg-main-1", {"metadata": {"labels": {"cnpg.io/instanceRole": "replica"}}}, "db")
        srv.patch("pods", "pg-main-2", {"metadata": {"labels": {"cnpg.io/instanceRole": "primary"}}}, "db")
        deadline = time.monotonic() + 10
        events: list[dict] = []
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            events = _json_stream("".join(out))
    finally:
        proc.kill()
        proc.wait()
    assert brief(events) == [("DELETED", "pg-main-1"), ("ADDED", "pg-main-2")]


def _json_stream(text: str) -> list[dict]:
    """Every complete JSON value in `text` (kubectl prints pretty JSON one after another)."""
    decoder, pos, values = json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return values
        values.append(value)


def _self_signed(tmp_path) -> tuple[str, str]:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@needs_kubectl
def test_kubectl_over_tls_with_rotating_token(tmp_path):
    """HTTPS with a self-signed CA and a bearer token re-read on every request: kubectl works with the token,
    is refused (401) after the file rotates, and a kubeconfig with tokenFile follows the rotation."""
    cert, key = _self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text("first\n")
    with K8sApiServer(token_file=str(token), tls_cert=cert, tls_key=key) as s:
        s.load_file(str(FIXTURES / "cnpg-pods-list.json"))
        assert s.url.startswith("https://127.0.0.1:")
        inline = Kubectl(s.write_kubeconfig(str(tmp_path / "inline"), "db"), str(tmp_path / "c1"))
        by_file = Kubectl(s.write_kubeconfig(str(tmp_path / "by-file"), "db", use_token_file=True),
                          str(tmp_path / "c2"))
        assert len(inline.names("get", "pods")) == 3
        token.write_text("second\n")
        res = inline.run("get", "pods", check=False)
        assert res.returncode != 0 and "Unauthorized" in res.stderr
        assert len(by_file.names("get", "pods")) == 3
        conn = http.client.HTTPSConnection(s.host, s.port, timeout=10,
                                           context=ssl.create_default_context(cafile=cert))
        status, _, body = request(s, "GET", PODS, conn=conn)
        assert status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
        assert s.requests[-1]["authorization"] is None
