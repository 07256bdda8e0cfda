"""Helpers for the Helm chart tests: render charts/pgkeel with helm, load what it renders, find objects;
the `helm` fixture (e2e/k8s/bin/helm, installed by scripts/k8s-tools.sh)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml


REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "pgkeel"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MANIFESTS = REPO / "manifests"
NS = "pgkeel-test"
RELEASE = "rel"
FULL = "rel-pgkeel"

# The container `pgkeel inject-webhook` adds (issue 5's shared packaging interface, "The injected container"),
# for the defaults of sidecar.yaml; the manifests' sidecars must be exactly this, plus image and args.
SPEC_SIDECAR = {
    "name": "pgkeel",
    "imagePullPolicy": "IfNotPresent",
    "restartPolicy": "Always",
    "ports": [{"name": "pgkeel-admin", "containerPort": 9432, "protocol": "TCP"}],
    "startupProbe": {"httpGet": {"path": "/healthz", "port": 9432}, "periodSeconds": 1, "failureThreshold": 60},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9432}, "periodSeconds": 5, "failureThreshold": 2},
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9432}, "periodSeconds": 10, "failureThreshold": 3},
    "lifecycle": {"preStop": {"exec": {"command": ["/usr/local/bin/pgkeel", "drain", "--admin", "127.0.0.1:9432",
                                                   "--timeout", "25s"]}}},
    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"}},
}
SIDECAR_LISTEN_ARGS = ["--listen-primary", "127.0.0.1:6432", "--listen-replica", "127.0.0.1:6433",
                       "--admin-listen", "0.0.0.0:9432"]


# ---------------------------------------------------------------------------------------------------------
# Tools


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (kubectl's strict decoding does too)."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_all(text: str) -> list[dict]:
    return [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary: e2e/k8s/bin/helm, installed by scripts/k8s-tools.sh (which prints its path)."""
    path = REPO / "e2e" / "k8s" / "bin" / "helm"
    if not os.access(path, os.X_OK):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "k8s-tools.sh")], capture_output=True, text=True,
                              timeout=600)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
            pytest.fail(f"no helm: scripts/k8s-tools.sh failed ({proc.returncode}):\n{proc.stderr[-2000:]}",
                        pytrace=False)
        path = Path(lines[-1])
    return str(path)


def run_helm(helm: str, *args: str, check: bool = True,
             kubeconfig: str = "/nonexistent") -> subprocess.CompletedProcess:
    """helm with its own cache and config directories; no cluster unless a kubeconfig is given."""
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": kubeconfig,
                               "HELM_CACHE_HOME": "/tmp/pgkeel-helm/cache",
                               "HELM_CONFIG_HOME": "/tmp/pgkeel-helm/config",
                               "HELM_DATA_HOME": "/tmp/pgkeel-helm/data"})
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
    return proc


def template_args(values_files=(), sets=(), set_json=()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NS]
    for f in values_files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    for s in set_json:
        args += ["--set-json", s]
    return args


def render(helm: str, values_files=(), sets=(), set_json=(), values: dict | None = None, tmp_path=None) -> list[dict]:
    files = list(values_files)
    if values is not None:
        f = Path(tmp_path or "/tmp") / f"values-{os.getpid()}-{time.monotonic_ns()}.yaml"
        f.write_text(yaml.safe_dump(values))
        files.append(f)
    proc = run_helm(helm, *template_args(files, sets, set_json))
    return load_all(proc.stdout)


def render_fails(helm: str, values: dict, tmp_path) -> str:
    """Renders with these values expecting a refusal; returns helm's error output."""
    f = tmp_path / "bad-values.yaml"
    f.write_text(yaml.safe_dump(values))
    proc = run_helm(helm, *template_args([f]), check=False)
    assert proc.returncode != 0, f"helm template accepted {values}:\n{proc.stdout[:2000]}"
    return proc.stderr


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def helm_test_pod(docs) -> dict:
    pods = [d for d in find(docs, "Pod") if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, "expected exactly one helm test pod"
    return pods[0]





CNPG = {"config": {"source": "cnpg", "kubernetes_cluster": "pg-main"}}
SIDECAR_CNPG = {"mode": "sidecar-injector", "config": {"source": "cnpg", "kubernetes_cluster": "pg-main"}}
# No helm test pod: for renderings with the cluster in another namespace than the release, where the test pod
# needs a copy of the cluster's Secret (test_helm_chart.py tests that the chart refuses to render without it).
NO_TEST = {"test": {"enabled": False}}


# ---------------------------------------------------------------------------------------------------------
# Lint and render every example values file


def webhook_of(docs) -> dict:
    mwc = one(docs, "MutatingWebhookConfiguration")
    (hook,) = mwc["webhooks"]
    return mwc, hook


def selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, key, vals = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rules_by_resource(role) -> dict:
    out = {}
    for r in role["rules"]:
        for group in r["apiGroups"]:
            for res in r["resources"]:
                out[(group, res)] = (sorted(r["verbs"]), sorted(r.get("resourceNames", [])))
    return out


def rendered_config(docs) -> dict:
    cm = one(docs, "ConfigMap", f"{FULL}-config")
    return yaml.safe_load(cm["data"]["pgkeel.yaml"])
