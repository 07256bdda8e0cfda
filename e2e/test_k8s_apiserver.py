"""Tests of the Kubernetes API server stand-in (e2e/k8s_apiserver.py): loading fixtures, and raw HTTP for the
list/watch semantics pgkeel's discovery client relies on (selectors, replay, bookmarks, 410, timeouts); kubectl
against it: test_k8s_kubectl.py."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from k8s_apiserver import K8sApiServer, make_matcher, find_resource, parse_label_selector  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("PGKEEL_SHARED_DIR", REPO_ROOT.parent / "shared")) / "fixtures" / "k8s"
SEED = ["cnpg-cluster-3-instances.json", "cnpg-pods-list.json", "cnpg-secret-app.json", "zalando-postgresql.json",
        "patroni-k8s-leader-configmap.json"]
PODS = "/api/v1/namespaces/db/pods"
CLUSTERS = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters"

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture
def srv():
    """A server seeded with the CNPG cluster pg-main (3 pods, app secret), Zalando acid-main and its leader."""
    s = K8sApiServer(bookmark_interval=0.3).start()
    for name in SEED:
        s.load_file(str(FIXTURES / name))
    yield s
    s.stop()


class Kubectl:
    """The real kubectl with its own kubeconfig and discovery cache."""

    def __init__(self, kubeconfig: str, cache_dir: str):
        self.base = ["kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache_dir}"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def names(self, *args: str) -> list[str]:
        return self.run(*args, "-o", "name").stdout.split()


@pytest.fixture
def kubectl(srv, tmp_path) -> Kubectl:
    return Kubectl(srv.write_kubeconfig(str(tmp_path / "kubeconfig"), namespace="db"), str(tmp_path / "cache"))


def request(srv, method: str, path: str, body=None, headers: dict | None = None, conn=None):
    """One request: (status, headers, decoded JSON body). `body` is JSON-encoded unless it is bytes."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    if own:
        conn.close()
    return resp.status, resp, json.loads(raw) if raw else None


class WatchStream:
    """A raw watch: HTTP status and headers, then events one line at a time until the end of the stream.

    It reads with read1(), which (unlike readline()) tells a clean end (the last, empty chunk: b"") from a
    dropped connection (IncompleteRead)."""

    def __init__(self, srv, path: str, timeout: float = 10, conn=None):
        self.conn = conn or http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.buf = b""

    def next(self) -> dict | None:
        """The next event, or None at a clean end of the stream."""
        while b"\n" not in self.buf:
            data = self.resp.read1(65536)
            if not data:
                assert self.buf == b"", f"the stream ended inside an event: {self.buf!r}"
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def read_all(self) -> list[dict]:
        """Every event up to the clean end of the stream."""
        events = []
        while (ev := self.next()) is not None:
            events.append(ev)
        return events


def brief(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def pod_list_rv(srv) -> str:
    return request(srv, "GET", PODS)[2]["metadata"]["resourceVersion"]


# ---------------------------------------------------------------------------------------------------------
# Loading fixtures, the object model


def test_fixtures_get_fresh_resource_versions_and_uids(srv):
    """Loaded fixtures keep their content but get new uids and RVs from one rising counter; lists carry the RV."""
    original = json.loads((FIXTURES / "cnpg-cluster-3-instances.json").read_text())
    cluster = srv.get("clusters", "pg-main", "db")
    assert cluster["status"] == original["status"] and cluster["spec"] == original["spec"]
    assert cluster["metadata"]["uid"] != original["metadata"]["uid"]
    pods = srv.list("pods", "db")
    rvs = [int(o["metadata"]["resourceVersion"]) for o in [cluster] + pods]
    assert len(set(rvs)) == 4 and all(p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in pods)
    status, _, body = request(srv, "GET", PODS)
    assert status == 200 and body["kind"] == "PodList" and body["metadata"]["resourceVersion"] == srv.resource_version
    assert int(srv.resource_version) >= max(rvs)
    assert [i["metadata"]["name"] for i in body["items"]] == ["pg-main-1", "pg-main-2", "pg-main-3"]
    assert all("kind" not in i and "apiVersion" not in i for i in body["items"])  # built-in list items: no kind
    status, _, clusters = request(srv, "GET", CLUSTERS)
    assert clusters["kind"] == "ClusterList" and clusters["items"][0]["kind"] == "Cluster"  # CR list items keep it


def test_discovery_documents(srv):
    """/api, /api/v1, /apis and a group version describe every resource, and pods/status; also when aggregated
    discovery is asked for (the client falls back); /openapi/v3 says PATCH takes fieldValidation."""
    assert request(srv, "GET", "/api")[2]["versions"] == ["v1"]
    core = request(srv, "GET", "/api/v1")[2]
    assert {r["name"] for r in core["resources"]} == {
        "pods", "pods/status", "configmaps", "endpoints", "secrets", "serviceaccounts", "services", "services/status",
        "namespaces", "namespaces/status"}
    assert {r["name"]: r["namespaced"] for r in core["resources"]}["namespaces"] is False
    groups = {g["name"] for g in request(srv, "GET", "/apis")[2]["groups"]}
    assert groups == {"postgresql.cnpg.io", "acid.zalan.do", "coordination.k8s.io", "apps", "policy", "autoscaling",
                      "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "monitoring.coreos.com",
                      "cert-manager.io"}
    assert request(srv, "GET", "/apis/autoscaling")[2]["preferredVersion"]["groupVersion"] == "autoscaling/v2"
    rbac = {r["name"]: r["namespaced"] for r in request(srv, "GET", "/apis/rbac.authorization.k8s.io/v1")[2]["resources"]}
    assert rbac == {"roles": True, "rolebindings": True, "clusterroles": False, "clusterrolebindings": False}
    zalando = request(srv, "GET", "/apis/acid.zalan.do/v1")[2]["resources"]
    assert zalando[0]["kind"] == "postgresql" and zalando[0]["shortNames"] == ["pg"] and "watch" in zalando[0]["verbs"]
    aggregated = {"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"}
    status, resp, body = request(srv, "GET", "/apis", headers=aggregated)
    assert body["kind"] == "APIGroupList" and resp.getheader("Content-Type") == "application/json"
    root = request(srv, "GET", "/openapi/v3")[2]["paths"]
    assert root["apis/postgresql.cnpg.io/v1"]["serverRelativeURL"] == "/openapi/v3/apis/postgresql.cnpg.io/v1"
    patch = request(srv, "GET", "/openapi/v3/api/v1")[2]["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Pod"
    assert [p["name"] for p in patch["parameters"]] == ["fieldValidation"]
    rbac_paths = request(srv, "GET", "/openapi/v3/apis/rbac.authorization.k8s.io/v1")[2]["paths"]
    assert "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}" in rbac_paths  # cluster-scoped: no namespace
    assert "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}" in rbac_paths


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP: list, writes, patches


def test_cluster_scoped_resources(srv):
    """A cluster-scoped kind lives at /apis/<group>/<version>/<plural>/<name> (a namespace in the body is cleared,
    a namespaced path is 404); list, watch, patch and delete work there. A namespaced kind needs its namespace."""
    crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b1", "namespace": "db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"}}
    rv = srv.resource_version
    status, _, created = request(srv, "POST", crb, body)
    assert status == 201 and "namespace" not in created["metadata"]
    assert request(srv, "GET", f"{crb}/b1")[2]["roleRef"]["name"] == "r"
    assert request(srv, "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/db/clusterrolebindings/b1")[0] == 404
    assert request(srv, "GET", "/apis/rbac.authorization.k8s.io/v1/roles/b1")[0] == 404
    merge = {"Content-Type": "application/merge-patch+json"}
    _, _, patched = request(srv, "PATCH", f"{crb}/b1", {"subjects": [{"kind": "User", "name": "u"}]}, merge)
    assert patched["subjects"] == [{"kind": "User", "name": "u"}]
    listed = request(srv, "GET", crb)[2]
    assert listed["kind"] == "ClusterRoleBindingList" and [i["metadata"]["name"] for i in listed["items"]] == ["b1"]
    assert request(srv, "DELETE", f"{crb}/b1")[0] == 200
    events = WatchStream(srv, f"{crb}?watch=1&resourceVersion={rv}&timeoutSeconds=1").read_all()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert request(srv, "GET", f"{crb}/b1")[0] == 404
    srv.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": "w", "namespace": "ignored"}})
    assert "namespace" not in srv.get("mutatingwebhookconfigurations", "w", "anything")["metadata"]


def test_namespaces(srv):
    """A namespace that holds objects reads as existing without a Namespace object (kubectl's error messages ask);
    an empty, never created one is 404; a created one gets phase Active and its name label; a write to an
    implicit one stores it; /api/v1/namespaces/<name>/status is its status subresource; Secret stringData is
    stored as data, as the real server does."""
    status, _, implicit = request(srv, "GET", "/api/v1/namespaces/db")
    assert status == 200 and implicit["status"]["phase"] == "Active"
    assert request(srv, "GET", "/api/v1/namespaces/nowhere")[0] == 404
    assert request(srv, "GET", "/api/v1/namespaces")[2]["items"] == []
    status, _, ns = request(srv, "POST", "/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    assert status == 201 and ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "apps"}
    _, _, st = request(srv, "PATCH", "/api/v1/namespaces/apps/status", {"status": {"phase": "Terminating"}},
                       {"Content-Type": "application/merge-patch+json"})
    assert st["status"]["phase"] == "Terminating"
    status, _, db = request(srv, "PATCH", "/api/v1/namespaces/db", {"metadata": {"labels": {"team": "a"}}},
                            {"Content-Type": "application/strategic-merge-patch+json"})
    assert status == 200 and db["metadata"]["labels"]["team"] == "a" and db["metadata"]["uid"]
    names = [i["metadata"]["name"] for i in request(srv, "GET", "/api/v1/namespaces")[2]["items"]]
    assert names == ["apps", "db"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="},
              "stringData": {"b": "hello"}}
    _, _, created = request(srv, "POST", "/api/v1/namespaces/apps/secrets", secret)
    assert created["data"] == {"a": "eA==", "b": "aGVsbG8="} and "stringData" not in created


def test_keep_alive_pagination_and_expired_continue(srv):
    """Several requests on one connection; limit/continue pages; a continue token from before expire() is 410."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    _, _, page1 = request(srv, "GET", f"{PODS}?limit=2", conn=conn)
    local = conn.sock.getsockname()
    assert [i["metadata"]["name"] for i in page1["items"]] == ["pg-main-1", "pg-main-2"]
    assert page1["metadata"]["remainingItemCount"] == 1
    token = quote(page1["metadata"]["continue"])
    _, _, page2 = request(srv, "GET", f"{PODS}?limit=2&continue={token}", conn=conn)
    assert [i["metadata"]["name"] for i in page2["items"]] == ["pg-main-3"] and "continue" not in page2["metadata"]
    assert page2["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
    assert conn.sock.getsockname() == local  # still the same TCP connection
    srv.patch("pods", "pg-main-3", {"metadata": {"labels": {"x": "1"}}}, "db")
    srv.expire()
    status, _, body = request(srv, "GET", f"{PODS}?limit=2&continue={token}", conn=conn)
    assert status == 410 and body["reason"] == "Expired" and "continue parameter is too old" in body["message"]


def test_writes_and_their_errors(srv):
    """POST/PUT/DELETE with the real status codes: 201, 409 AlreadyExists, 409 Conflict on a stale RV, 404
    NotFound with details, 400 on a namespace mismatch; a no-op patch keeps the RV; PUT keeps a Pod's status."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "db"}, "data": {"a": "1"}}
    status, _, created = request(srv, "POST", "/api/v1/namespaces/db/configmaps", cm)
    assert status == 201 and created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    status, _, body = request(srv, "POST", "/api/v1/namespaces/db/configmaps", cm)
    assert (status, body["reason"], body["message"]) == (409, "AlreadyExists", 'configmaps "c1" already exists')
    status, _, body = request(srv, "POST", "/api/v1/namespaces/other/configmaps", cm)
    assert status == 400
    stale = dict(created, data={"a": "2"})
    assert request(srv, "PUT", "/api/v1/namespaces/db/configmaps/c1", stale)[0] == 200
    status, _, body = request(srv, "PUT", "/api/v1/namespaces/db/configmaps/c1", dict(stale, data={"a": "3"}))
    assert status == 409 and body["reason"] == "Conflict"
    rv = srv.get("configmaps", "c1", "db")["metadata"]["resourceVersion"]
    merge = {"Content-Type": "application/merge-patch+json"}
    _, _, same = request(srv, "PATCH", "/api/v1/namespaces/db/configmaps/c1", {"data": {"a": "2"}}, merge)
    assert same["metadata"]["resourceVersion"] == rv
    pod = srv.get("pods", "pg-main-1", "db")
    pod["status"]["phase"] = "Failed"
    _, _, put = request(srv, "PUT", f"{PODS}/pg-main-1", pod)
    assert put["status"]["phase"] == "Running"
    assert request(srv, "DELETE", "/api/v1/namespaces/db/configmaps/c1")[0] == 200
    status, _, body = request(srv, "GET", "/api/v1/namespaces/db/configmaps/c1")
    assert status == 404 and body["reason"] == "NotFound" and body["details"]["name"] == "c1"
    assert body["message"] == 'configmaps "c1" not found'


def test_patch_types(srv):
    """JSON patch, merge patch and strategic merge patch (directives dropped, lists replaced) on a Pod; a strategic
    merge patch on a CR is 415; a status patch changes only status."""
    path = f"{PODS}/pg-main-2"
    ops = [{"op": "add", "path": "/metadata/labels/extra", "value": "1"},
           {"op": "replace", "path": "/metadata/labels/cnpg.io~1instanceRole", "value": "primary"},
           {"op": "test", "path": "/metadata/name", "value": "pg-main-2"}]
    status, _, body = request(srv, "PATCH", path, ops, {"Content-Type": "application/json-patch+json"})
    assert status == 200 and body["metadata"]["labels"]["extra"] == "1"
    assert body["metadata"]["labels"]["cnpg.io/instanceRole"] == "primary"
    bad_test = [{"op": "test", "path": "/metadata/name", "value": "nope"}]
    assert request(srv, "PATCH", path, bad_test, {"Content-Type": "application/json-patch+json"})[0] == 422
    smp = {"metadata": {"labels": {"extra": None}}, "spec": {"$setElementOrder/containers": [{"name": "postgres"}],
                                                              "nodeName": "node-9"}}
    _, _, body = request(srv, "PATCH", path, smp, {"Content-Type": "application/strategic-merge-patch+json"})
    assert "extra" not in body["metadata"]["labels"] and body["spec"]["nodeName"] == "node-9"
    assert not any(k.startswith("$") for k in body["spec"])
    status_patch = {"status": {"podIP": "10.0.0.9"}, "metadata": {"labels": {"ignored": "yes"}}}
    _, _, body = request(srv, "PATCH", f"{path}/status", status_patch,
                         {"Content-Type": "application/merge-patch+json"})
    assert body["status"]["podIP"] == "10.0.0.9" and "ignored" not in body["metadata"]["labels"]
    assert body["status"]["phase"] == "Running"  # merged, not replaced
    status, _, body = request(srv, "PATCH", f"{CLUSTERS}/pg-main", {"spec": {}},
                              {"Content-Type": "application/strategic-merge-patch+json"})
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


def test_selectors():
    """Label selector forms (=, ==, !=, in, notin, exists, !exists) and pod field selectors, as the API defines them."""
    pod = {"metadata": {"name": "p", "namespace": "db", "labels": {"role": "primary", "cluster": "a"}},
           "spec": {"nodeName": "n1", "hostNetwork": False}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}
    rt = find_resource("pods")
    cases = {"role=primary": True, "role==primary": True, "role!=primary": False, "missing!=x": True,
             "role in (replica, primary)": True, "role notin (primary)": False, "missing notin (x)": True,
             "cluster": True, "!cluster": False, "!missing": True, "role=primary,cluster=b": False, "": True}
    for selector, expected in cases.items():
        assert make_matcher(rt, label_selector=selector)(pod) is expected, selector
    fields = {"metadata.name=p": True, "metadata.namespace!=db": False, "status.podIP=10.0.0.1": True,
              "status.phase==Pending": False, "spec.nodeName=n1,status.phase=Running": True,
              "spec.hostNetwork=false": True}
    for selector, expected in fields.items():
        assert make_matcher(rt, field_selector=selector)(pod) is expected, selector
    with pytest.raises(ValueError, match="field label not supported"):
        make_matcher(find_resource("clusters"), field_selector="status.phase=x")
    with pytest.raises(ValueError):
        parse_label_selector("role in primary")


def test_bad_selectors_are_400(srv):
    """A malformed label selector or an unsupported field is a 400 Status, for a list and for a watch."""
    status, _, body = request(srv, "GET", f"{PODS}?labelSelector={quote('a in b')}")
    assert status == 400 and body["kind"] == "Status"
    status, _, body = request(srv, "GET", f"{CLUSTERS}?watch=1&fieldSelector=status.phase%3Dx")
    assert status == 400 and body["message"] == "field label not supported: status.phase"


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP: watch


def test_watch_selector_changes_become_added_and_deleted(srv):
    """With a label selector, a pod that stops matching arrives as DELETED (its previous content with the new RV)
    and one that starts matching as ADDED; changes to a matching pod are MODIFIED; others are not seen."""
    rv = pod_list_rv(srv)
    w = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
                         f"&labelSelector={quote('cnpg.io/instanceRole=primary')}")
    assert w.resp.status == 200 and w.resp.getheader("Transfer-Encoding") == "chunked"
    assert w.resp.getheader("Content-Type") == "application/json"
    demoted = srv.patch("pods", "pg-main-1", {"metadata": {"labels": {"cnpg.io/instanceRole": "replica"}}}, "db")
    srv.patch("pods", "pg-main-2", {"metadata": {"labels": {"cnpg.io/instanceRole": "primary"}}}, "db")
    srv.patch_status("pods", "pg-main-2", {"phase": "Running", "podIP": "10.0.0.2"}, "db")
    srv.patch("pods", "pg-main-3", {"metadata": {"annotations": {"x": "y"}}}, "db")
    events = w.read_all()
    assert brief(events) == [("DELETED", "pg-main-1"), ("ADDED", "pg-main-2"), ("MODIFIED", "pg-main-2")]
    gone = events[0]["object"]
    assert gone["metadata"]["resourceVersion"] == demoted["metadata"]["resourceVersion"]
    assert gone["metadata"]["labels"]["cnpg.io/instanceRole"] == "primary"  # the content before the change
    assert all(e["object"]["kind"] == "Pod" and e["object"]["apiVersion"] == "v1" for e in events)
    assert events[2]["object"]["status"]["podIP"] == "10.0.0.2"


def test_watch_replays_history_after_rv(srv):
    """A watch from an RV first replays the retained changes after it, in order; without an RV (or with "0") it
    starts with a synthetic ADDED for every existing object."""
    rv = pod_list_rv(srv)
    m = srv.patch("pods", "pg-main-1", {"metadata": {"labels": {"a": "1"}}}, "db")
    srv.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pg-main-4", "namespace": "db"}})
    d = srv.delete("pods", "pg-main-3", "db")
    events = WatchStream(srv, f"{PODS}?watch=true&resourceVersion={rv}&timeoutSeconds=0.3").read_all()
    assert brief(events) == [("MODIFIED", "pg-main-1"), ("ADDED", "pg-main-4"), ("DELETED", "pg-main-3")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and str(rvs[-1]) == d["metadata"]["resourceVersion"]
    later = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={m['metadata']['resourceVersion']}"
                             "&timeoutSeconds=0.3").read_all()
    assert brief(later) == [("ADDED", "pg-main-4"), ("DELETED", "pg-main-3")]
    for query in ("", "&resourceVersion=0"):
        initial = WatchStream(srv, f"{PODS}?watch=1&timeoutSeconds=0.3{query}").read_all()
        assert brief(initial) == [("ADDED", "pg-main-1"), ("ADDED", "pg-main-2"), ("ADDED", "pg-main-4")]
    selected = WatchStream(srv, f"{PODS}?watch=1&timeoutSeconds=0.3&labelSelector=role%3Dreplica").read_all()
    assert brief(selected) == [("ADDED", "pg-main-2")]


def test_watch_bookmarks(srv):
    """With allowWatchBookmarks, BOOKMARKs come every bookmark_interval with only the current RV (a Pod's shows its
    zero values, a CR's only metadata.resourceVersion); without it, none come."""
    events = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={pod_list_rv(srv)}&allowWatchBookmarks=true"
                              "&timeoutSeconds=1").read_all()
    assert len(events) >= 2 and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": srv.resource_version, "creationTimestamp": None},
                                   "spec": {"containers": None}, "status": {}}
    cr = WatchStream(srv, f"{CLUSTERS}?watch=1&resourceVersion={srv.resource_version}&allowWatchBookmarks=1"
                          "&timeoutSeconds=0.5").read_all()
    assert cr and cr[0]["object"] == {"kind": "Cluster", "apiVersion": "postgresql.cnpg.io/v1",
                                      "metadata": {"resourceVersion": srv.resource_version}}
    none = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={srv.resource_version}&timeoutSeconds=0.7").read_all()
    assert none == []
    streaming = WatchStream(srv, f"{PODS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                                 "&resourceVersionMatch=NotOlderThan&timeoutSeconds=0.2").read_all()
    assert [e["type"] for e in streaming] == ["ADDED"] * 3 + ["BOOKMARK"]
    assert streaming[3]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_from_expired_rv_is_one_error_event(srv):
    """After expire(), a watch from an older RV gets HTTP 200, one ERROR event (Status 410 Expired, "too old
    resource version: X (Y)") and the end of the stream; a watch from the current RV works."""
    old = pod_list_rv(srv)
    srv.patch("pods", "pg-main-1", {"metadata": {"labels": {"a": "1"}}}, "db")
    current = srv.expire()
    w = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={old}")  # no timeoutSeconds: EOF must come anyway
    events = w.read_all()
    assert w.resp.status == 200 and len(events) == 1
    assert events[0] == {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({current})", "reason": "Expired", "code": 410}}
    assert WatchStream(srv, f"{PODS}?watch=1&resourceVersion={current}&timeoutSeconds=0.3").read_all() == []


def test_expire_can_end_open_watches_with_410(srv):
    """POST /_test/expire?close=1 ends open watches with an ERROR 410 event (the etcd compaction wording)."""
    w = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={pod_list_rv(srv)}&timeoutSeconds=10")
    assert srv.wait_for_watches(1)
    assert request(srv, "POST", "/_test/expire?close=1")[0] == 200
    events = w.read_all()
    assert [e["type"] for e in events] == ["ERROR"] and events[0]["object"]["code"] == 410
    assert events[0]["object"]["message"] == "The resourceVersion for the provided watch is too old."


def test_watch_timeout_ends_cleanly_and_connection_is_reused(srv):
    """timeoutSeconds ends the stream cleanly (the last chunk arrives) on time, and the connection then serves
    the next request."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    started = time.monotonic()
    w = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={pod_list_rv(srv)}&timeoutSeconds=1", conn=conn)
    local = conn.sock.getsockname()
    assert w.read_all() == []
    assert 0.9 <= time.monotonic() - started < 5
    assert request(srv, "GET", f"{PODS}/pg-main-1", conn=conn)[0] == 200
    assert conn.sock.getsockname() == local
    assert srv.watch_count == 0


def test_close_watches_ends_every_stream(srv):
    """close_watches() (and POST /_test/close-watches) end open watches cleanly, so clients re-watch."""
    streams = [WatchStream(srv, f"{PODS}?watch=1&resourceVersion={pod_list_rv(srv)}") for _ in range(2)]
    assert srv.wait_for_watches(2)
    assert srv.close_watches() == 2
    assert [s.read_all() for s in streams] == [[], []]
    again = WatchStream(srv, f"{CLUSTERS}?watch=1")
    assert again.next()["type"] == "ADDED"
    deadline = time.monotonic() + 5
    while srv.watch_count != 1 and time.monotonic() < deadline:  # the ended streams' threads are finishing
        time.sleep(0.02)
    assert request(srv, "POST", "/_test/close-watches")[2] == {"closed": 1}
    assert again.read_all() == []


def test_stop_drops_every_connection(srv):
    """stop() cuts open watch streams without their last chunk, as a crashed API server would, and closes idle
    keep-alive connections, promptly."""
    idle = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    assert request(srv, "GET", PODS, conn=idle)[0] == 200
    w = WatchStream(srv, f"{PODS}?watch=1&resourceVersion={pod_list_rv(srv)}")
    assert srv.wait_for_watches(1)
    started = time.monotonic()
    srv.stop()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        w.read_all()
    idle.sock.settimeout(3)
    assert idle.sock.recv(1) == b""
    assert time.monotonic() - started < 5


def test_injected_failures(srv):
    """fail_next() makes the next matching requests fail with a Status (429 with Retry-After, 500), then they work;
    POST /_test/fail does the same; requests are logged."""
    srv.fail_next(2, 429, retry_after=3)
    for _ in range(2):
        status, resp, body = request(srv, "GET", PODS)
        assert (status, resp.getheader("Retry-After"), body["reason"]) == (429, "3", "TooManyRequests")
        assert body["details"]["retryAfterSeconds"] == 3
    assert request(srv, "GET", PODS)[0] == 200
    request(srv, "POST", "/_test/fail", {"count": 1, "code": 500, "match": "watch=1"})
    assert request(srv, "GET", PODS)[0] == 200  # does not match
    status, _, body = request(srv, "GET", f"{PODS}?watch=1")
    assert status == 500 and body["reason"] == "InternalError"
    assert WatchStream(srv, f"{PODS}?watch=1&timeoutSeconds=0.2").resp.status == 200
    paths = [r["path"] for r in request(srv, "GET", "/_test/requests")[2]["requests"]]
    assert paths.count(PODS) == 4 and paths[-1].endswith("timeoutSeconds=0.2")


def test_command_line(tmp_path):
    """The command line: --port 0 --port-file, --load, --token-file, --kubeconfig; SIGTERM stops it with status 0."""
    token = tmp_path / "token"
    token.write_text("t0k3n")
    port_file, kubeconfig = tmp_path / "port", tmp_path / "kubeconfig"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "k8s_apiserver.py"), "--port", "0",
                             "--port-file", str(port_file), "--token-file", str(token), "--kubeconfig",
                             str(kubeconfig), "--namespace", "db", "--load", str(FIXTURES / "cnpg-pods-list.json")],
                            stdout=subprocess.PIPE, text=True)
    try:
        announced = json.loads(proc.stdout.readline())
        port = int(port_file.read_text())
        assert announced == {"port": port, "url": f"http://127.0.0.1:{port}"}
        assert f'server: "http://127.0.0.1:{port}"' in kubeconfig.read_text()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", PODS, headers={"Authorization": "Bearer t0k3n"})
        assert len(json.loads(conn.getresponse().read())["items"]) == 3
        conn.request("GET", PODS)
        assert conn.getresponse().status == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
