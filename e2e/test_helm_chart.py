"""The Helm chart charts/pgkeel and the plain manifests/: lint, render, and check what they render.

Run: /usr/bin/python3 -m pytest -q e2e/test_helm_chart.py
Needs helm (e2e/k8s/bin/helm, installed by `bash scripts/k8s-tools.sh`) and the pgkeel binary ($PGKEEL_BIN,
else build/pgkeel): the rendered pgkeel.yaml must pass `pgkeel --check-config`, the rendered sidecar.yaml
`pgkeel inject-webhook --check`. Schema validation and `kubectl apply` of every rendered manifest are in
the packaging tests of e2e/k8s/validate.mjs; this file checks behaviour: what each value makes the chart do.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
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


# ---------------------------------------------------------------------------------------------------------
# Lint and render every example values file


def test_ci_values_files_exist():
    names = {f.name for f in CI_VALUES}
    for expected in ("standalone-cnpg-values.yaml", "standalone-zalando-values.yaml", "standalone-patroni-values.yaml",
                     "standalone-static-values.yaml", "sidecar-injector-values.yaml",
                     "sidecar-injector-certmanager-values.yaml", "standalone-hpa-monitoring-values.yaml"):
        assert expected in names


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict(helm, values_file):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS, "-f", str(values_file), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_template_renders_well_formed_objects(helm, values_file):
    docs = render(helm, [values_file])
    seen = set()
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), d
        key = (d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
        assert key not in seen, f"rendered twice: {key}"
        seen.add(key)
    mode = yaml.safe_load(values_file.read_text()).get("mode", "standalone")
    kinds = {d["kind"] for d in docs}
    if mode == "standalone":
        assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceAccount"} <= kinds
        assert "MutatingWebhookConfiguration" not in kinds
    else:
        assert {"Deployment", "Service", "ConfigMap", "MutatingWebhookConfiguration", "ServiceAccount"} <= kinds
    # every pod template of the chart runs as the image's non-root user with nothing writable
    for dep in find(docs, "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 65532
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert c["image"] == "ghcr.io/pgkeel/pgkeel:0.1.0"


def test_default_values_need_a_cluster_name(helm, tmp_path):
    """The default source is cnpg: without a Cluster name the chart refuses, naming the key to set."""
    err = render_fails(helm, {}, tmp_path)
    assert "config.kubernetes_cluster is required" in err


# ---------------------------------------------------------------------------------------------------------
# Standalone mode


def rendered_config(docs) -> dict:
    cm = one(docs, "ConfigMap", f"{FULL}-config")
    return yaml.safe_load(cm["data"]["pgkeel.yaml"])


def test_standalone_deployment(helm):
    docs = render(helm, values=CNPG)
    dep = one(docs, "Deployment", FULL)
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["/usr/local/bin/pgkeel"] and c["args"] == ["--config", "/etc/pgkeel/pgkeel.yaml"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"primary": 6432, "replica": 6433, "admin": 9432}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/pgkeel")
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert vol["configMap"]["name"] == f"{FULL}-config"
    assert spec["serviceAccountName"] == FULL and spec["automountServiceAccountToken"] is True
    # the chart's listeners and drain settings; drain_delay 5s + shutdown_timeout 30s + 10s
    cfg = rendered_config(docs)
    assert cfg["listen_primary"] == "0.0.0.0:6432" and cfg["listen_replica"] == "0.0.0.0:6433"
    assert cfg["admin_listen"] == "0.0.0.0:9432"
    assert cfg["drain_delay"] == "5s" and cfg["shutdown_timeout"] == "30s"
    assert cfg["source"] == "cnpg" and cfg["kubernetes_cluster"] == "pg-main" and cfg["probe_from_secret"] is True
    assert spec["terminationGracePeriodSeconds"] == 45
    # the default topology spread gets the pods' own selector
    (tsc,) = spec["topologySpreadConstraints"]
    assert tsc["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod["metadata"]["labels"].items())
    assert dep["spec"]["replicas"] == 2


def test_standalone_config_checksum_follows_the_config(helm):
    a = one(render(helm, values=CNPG), "Deployment", FULL)
    b = one(render(helm, values={"config": {**CNPG["config"], "probe_interval": "2s"}}), "Deployment", FULL)
    c = one(render(helm, values={**CNPG, "standalone": {"replicaCount": 3}}), "Deployment", FULL)
    key = "checksum/config"
    checksum = [d["spec"]["template"]["metadata"]["annotations"][key] for d in (a, b, c)]
    assert checksum[0] != checksum[1], "a config change must roll the pods"
    assert checksum[0] == checksum[2], "a change outside the config must not change the checksum"


def test_standalone_services_and_pdb(helm):
    docs = render(helm, values=CNPG)
    dep = one(docs, "Deployment", FULL)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    rw, ro = one(docs, "Service", f"{FULL}-rw"), one(docs, "Service", f"{FULL}-ro")
    assert [(p["port"], p["targetPort"]) for p in rw["spec"]["ports"]] == [(6432, "primary")]
    assert [(p["port"], p["targetPort"]) for p in ro["spec"]["ports"]] == [(6433, "replica")]
    for svc in (rw, ro):
        assert set(svc["spec"]["selector"].items()) <= set(labels.items())
        assert svc["spec"]["ports"][0]["targetPort"] in ports
    pdb = one(docs, "PodDisruptionBudget", FULL)
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert not find(docs, "HorizontalPodAutoscaler")
    # minAvailable replaces maxUnavailable
    pdb = one(render(helm, values={**CNPG, "standalone": {"pdb": {"minAvailable": 1}}}), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": pdb["spec"]["selector"]}


def test_standalone_hpa(helm):
    docs = render(helm, values={**CNPG, "standalone": {"autoscaling": {"enabled": True, "minReplicas": 3,
                                                                       "maxReplicas": 7}}})
    hpa = one(docs, "HorizontalPodAutoscaler", FULL)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULL}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in one(docs, "Deployment", FULL)["spec"], "the HPA owns the replica count"


def test_standalone_hpa_needs_a_target(helm, tmp_path):
    err = render_fails(helm, {**CNPG, "standalone": {"autoscaling": {"enabled": True,
                                                                    "targetCPUUtilizationPercentage": None}}}, tmp_path)
    assert "needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" in err


def test_termination_grace_follows_drain_settings(helm, tmp_path):
    docs = render(helm, values={"config": {**CNPG["config"], "drain_delay": "1m30s", "shutdown_timeout": "1500ms"}})
    assert one(docs, "Deployment", FULL)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 102
    docs = render(helm, values={**CNPG, "standalone": {"terminationGracePeriodSeconds": 60}})
    assert one(docs, "Deployment", FULL)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    err = render_fails(helm, {**CNPG, "standalone": {"terminationGracePeriodSeconds": 35}}, tmp_path)
    assert "must be above drain_delay + shutdown_timeout" in err


def test_passthroughs(helm):
    values = {**CNPG, "podAnnotations": {"a.example/x": "1"}, "podLabels": {"team": "data"},
              "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k", "operator": "Exists"}],
              "affinity": {"nodeAffinity": {}}, "priorityClassName": "high",
              "extraEnv": [{"name": "TZ", "value": "UTC"}],
              "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule",
                                             "labelSelector": {"matchLabels": {"app": "other"}}}],
              "probeCredentials": {"existingSecret": "probe-user"}}
    docs = render(helm, values=values)
    pod = one(docs, "Deployment", FULL)["spec"]["template"]
    spec = pod["spec"]
    assert pod["metadata"]["annotations"]["a.example/x"] == "1" and pod["metadata"]["labels"]["team"] == "data"
    assert spec["nodeSelector"] == {"disk": "ssd"} and spec["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert spec["affinity"] == {"nodeAffinity": {}} and spec["priorityClassName"] == "high"
    assert spec["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["TZ"]["value"] == "UTC"
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "probe-user", "key": "username"}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "probe-user", "key": "password"}
    # with the probe's own Secret, the operator's is not read: no probe_from_secret, no Secret grant
    assert "probe_from_secret" not in rendered_config(docs)
    role = one(docs, "Role")
    assert not [r for r in role["rules"] if "secrets" in r["resources"]]


def test_explicit_false_is_kept(helm):
    """probe_from_secret: false in values must survive the chart's defaults (no map merge that drops falsy values)."""
    docs = render(helm, values={"config": {**CNPG["config"], "probe_from_secret": False, "replica_fallback": False,
                                           "workers": 0}})
    cfg = rendered_config(docs)
    assert cfg["probe_from_secret"] is False and cfg["replica_fallback"] is False and cfg["workers"] == 0
    assert not [r for r in one(docs, "Role")["rules"] if "secrets" in r["resources"]]


@pytest.mark.parametrize("values_file", [f for f in CI_VALUES if f.name.startswith("standalone")], ids=lambda p: p.name)
def test_rendered_config_passes_check_config(helm, pgkeel_bin, tmp_path, values_file):
    cm = one(render(helm, [values_file]), "ConfigMap", f"{FULL}-config")
    path = tmp_path / "pgkeel.yaml"
    path.write_text(cm["data"]["pgkeel.yaml"])
    proc = subprocess.run([pgkeel_bin, "--check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "configuration OK" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    # the check is real: the same file with a misspelt key fails it
    path.write_text(cm["data"]["pgkeel.yaml"] + "probe_intervl: 1s\n")
    proc = subprocess.run([pgkeel_bin, "--check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "probe_intervl" in proc.stdout + proc.stderr


def test_large_numbers_stay_integers(helm):
    cfg = rendered_config(render(helm, values={"config": {**CNPG["config"], "max_client_connections": 1000000}}))
    assert cfg["max_client_connections"] == 1000000


# ---------------------------------------------------------------------------------------------------------
# RBAC per discovery source


def rules_by_resource(role) -> dict:
    out = {}
    for r in role["rules"]:
        for group in r["apiGroups"]:
            for res in r["resources"]:
                out[(group, res)] = (sorted(r["verbs"]), sorted(r.get("resourceNames", [])))
    return out


READ = ["get", "list", "watch"]


def test_rbac_cnpg(helm):
    docs = render(helm, values={"config": {**CNPG["config"], "kubernetes_namespace": "db"}})
    role = one(docs, "Role", f"{FULL}-discovery")
    assert role["metadata"]["namespace"] == "db", "the Role lives in the cluster's namespace"
    assert rules_by_resource(role) == {
        ("postgresql.cnpg.io", "clusters"): (READ, ["pg-main"]),
        ("", "pods"): (READ, []),
        ("", "secrets"): (READ, ["pg-main-app"]),
    }
    binding = one(docs, "RoleBinding", f"{FULL}-discovery")
    assert binding["metadata"]["namespace"] == "db"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{FULL}-discovery"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert one(docs, "ServiceAccount", FULL)["automountServiceAccountToken"] is True


def test_rbac_zalando(helm):
    docs = render(helm, values={"config": {"source": "zalando", "kubernetes_cluster": "acid-main",
                                           "secret_user": "probe_user"}})
    assert rules_by_resource(one(docs, "Role", f"{FULL}-discovery")) == {
        ("", "pods"): (READ, []),
        ("", "configmaps"): (READ, ["acid-main-leader"]),
        ("", "endpoints"): (READ, ["acid-main"]),
        ("acid.zalan.do", "postgresqls"): (READ, ["acid-main"]),
        ("", "secrets"): (READ, ["probe-user.acid-main.credentials.postgresql.acid.zalan.do"]),
    }
    docs = render(helm, values={"config": {"source": "zalando", "kubernetes_cluster": "acid-main"},
                                "rbac": {"zalandoPostgresqls": False}})
    assert ("acid.zalan.do", "postgresqls") not in rules_by_resource(one(docs, "Role"))


@pytest.mark.parametrize("values_file", ["standalone-static-values.yaml", "standalone-patroni-values.yaml"])
def test_rbac_none_without_kubernetes_source(helm, values_file):
    docs = render(helm, [CHART / "ci" / values_file])
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not find(docs, kind), f"{kind} rendered for a source that reads no Kubernetes API"
    assert one(docs, "ServiceAccount", FULL)["automountServiceAccountToken"] is False
    assert one(docs, "Deployment", FULL)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_rbac_cluster_wide(helm):
    docs = render(helm, values={**CNPG, "rbac": {"clusterWide": True}})
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    cr = one(docs, "ClusterRole")
    crb = one(docs, "ClusterRoleBinding")
    assert "namespace" not in cr["metadata"] and NS in cr["metadata"]["name"]
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": cr["metadata"]["name"]}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
    assert ("postgresql.cnpg.io", "clusters") in rules_by_resource(cr)


def test_rbac_several_namespaces_and_clusters(helm):
    docs = render(helm, values={**CNPG, "rbac": {"namespaces": ["db1", "db2"], "clusterNames": ["a", "b"]}})
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["db1", "db2"]
    assert sorted(b["metadata"]["namespace"] for b in find(docs, "RoleBinding")) == ["db1", "db2"]
    assert rules_by_resource(roles[0])[("", "secrets")] == (READ, ["a-app", "b-app"])


def test_rbac_refuses_all_secrets(helm, tmp_path):
    """probe_from_secret with no cluster name would need every Secret: the chart refuses instead."""
    err = render_fails(helm, {"mode": "sidecar-injector", "config": {"source": "cnpg"}, "test": {"enabled": False}},
                       tmp_path)
    assert "probe_from_secret needs the cluster names" in err


def test_rbac_sidecar_mode_binds_app_service_accounts(helm):
    docs = render(helm, values={**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"], "kubernetes_namespace": "db"},
                                "rbac": {"bindServiceAccounts": [{"name": "app", "namespace": "shop"},
                                                                 {"name": "worker"}]}})
    binding = one(docs, "RoleBinding", f"{FULL}-discovery")
    assert binding["metadata"]["namespace"] == "db"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{FULL}-sidecar", "namespace": NS},
        {"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
        {"kind": "ServiceAccount", "name": "worker", "namespace": NS},
    ]
    one(docs, "ServiceAccount", f"{FULL}-sidecar")
    # the webhook itself reads nothing from the API
    assert one(docs, "ServiceAccount", FULL)["automountServiceAccountToken"] is False
    webhook = one(docs, "Deployment", f"{FULL}-webhook")
    assert webhook["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# ---------------------------------------------------------------------------------------------------------
# Sidecar-injector mode: the webhook, its TLS, its configuration


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


def test_webhook_configuration(helm):
    docs = render(helm, values=SIDECAR_CNPG)
    mwc, hook = webhook_of(docs)
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "IfNeeded" and hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 5
    svc_ref = hook["clientConfig"]["service"]
    assert svc_ref["path"] == "/mutate" and svc_ref["namespace"] == NS
    svc = one(docs, "Service", svc_ref["name"])
    assert svc_ref["port"] == svc["spec"]["ports"][0]["port"] == 443
    webhook = one(docs, "Deployment", f"{FULL}-webhook")
    pod = webhook["spec"]["template"]
    assert set(svc["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())
    (c,) = pod["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"https": 8443}
    assert svc["spec"]["ports"][0]["targetPort"] == "https"
    assert c["args"][:9] == ["inject-webhook", "--listen", "0.0.0.0:8443", "--tls-cert", "/tls/tls.crt",
                             "--tls-key", "/tls/tls.key", "--sidecar-config", "/etc/pgkeel-injector/sidecar.yaml"]
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"] == {"scheme": "HTTPS", "path": path, "port": "https"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols[mounts["/tls"]]["secret"]["secretName"] == f"{FULL}-webhook-tls"
    assert vols[mounts["/etc/pgkeel-injector"]]["configMap"]["name"] == f"{FULL}-sidecar"
    # the webhook never mutates its own pods; kube-system is left out; only annotated pods are sent
    assert not selector_matches(hook["objectSelector"], pod["metadata"]["labels"])
    assert selector_matches(hook["objectSelector"], {"app": "shop"})
    assert not selector_matches(hook["namespaceSelector"], {"kubernetes.io/metadata.name": "kube-system"})
    assert selector_matches(hook["namespaceSelector"], {"kubernetes.io/metadata.name": "shop"})
    (cond,) = hook["matchConditions"]
    assert "pgkeel.io/inject" in cond["expression"] and "'true'" in cond["expression"]
    # no standalone objects in this mode
    assert not find(docs, "Deployment", FULL) and not find(docs, "Service", f"{FULL}-rw")
    pdb = one(docs, "PodDisruptionBudget", f"{FULL}-webhook")
    assert pdb["spec"]["selector"] == webhook["spec"]["selector"]


def test_webhook_options_from_values(helm):
    docs = render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {
        "failurePolicy": "Fail", "timeoutSeconds": 12, "onlyAnnotatedPods": False,
        "objectSelector": {"matchLabels": {"inject": "yes"}},
        "matchConditions": [{"name": "no-jobs", "expression": "true"}]}})
    _, hook = webhook_of(docs)
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 12
    assert hook["matchConditions"] == [{"name": "no-jobs", "expression": "true"}]
    assert hook["objectSelector"]["matchLabels"] == {"inject": "yes"}
    assert {"key": "pgkeel.io/component", "operator": "NotIn", "values": ["injector"]} in \
        hook["objectSelector"]["matchExpressions"]
    sidecar = yaml.safe_load(one(docs, "ConfigMap", f"{FULL}-sidecar")["data"]["sidecar.yaml"])
    assert sidecar["failurePolicy"] == "Fail", "the webhook answers with the same failure policy"


def run_ok(*cmd, input=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, input=input)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def test_generated_tls(helm, tmp_path):
    docs = render(helm, values=SIDECAR_CNPG)
    mwc, hook = webhook_of(docs)
    assert "cert-manager.io/inject-ca-from" not in mwc["metadata"].get("annotations", {})
    secret = one(docs, "Secret", f"{FULL}-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    # the CA in the caBundle signed the serving certificate, which names the Service
    run_ok("openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt"))
    text = run_ok("openssl", "x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-text")
    assert f"DNS:{FULL}-webhook.{NS}.svc" in text
    # the key belongs to the certificate
    pub_cert = run_ok("openssl", "x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-pubkey")
    pub_key = run_ok("openssl", "pkey", "-in", str(tmp_path / "tls.key"), "-pubout")
    assert pub_cert == pub_key
    assert not find(docs, "Certificate") and not find(docs, "Issuer")


def test_generated_tls_is_reused_on_upgrade(helm, tmp_path):
    """On `helm upgrade` the chart looks the Secret up in the cluster and reuses it, so the caBundle does not
    change: rendered with lookup enabled (`--dry-run=server`) against the API server stand-in holding the
    first render's Secret, the second render carries the same CA, certificate and key."""
    from k8s_apiserver import K8sApiServer

    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(SIDECAR_CNPG))
    first = load_all(run_helm(helm, *template_args([values])).stdout)
    secret = one(first, "Secret", f"{FULL}-webhook-tls")
    with K8sApiServer(port=0) as srv:
        kubeconfig = srv.write_kubeconfig(str(tmp_path / "kubeconfig"), namespace=NS)
        srv.apply(secret, NS)
        proc = run_helm(helm, *template_args([values]), "--dry-run=server", kubeconfig=str(kubeconfig))
        second = load_all(proc.stdout)
    assert one(second, "Secret", f"{FULL}-webhook-tls")["data"] == secret["data"]
    _, hook = webhook_of(second)
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    # the control: without a Secret in the cluster every render makes a new CA
    again = one(load_all(run_helm(helm, *template_args([values])).stdout), "Secret", f"{FULL}-webhook-tls")
    assert again["data"]["ca.crt"] != secret["data"]["ca.crt"]


def test_cert_manager_tls(helm):
    docs = render(helm, [CHART / "ci" / "sidecar-injector-certmanager-values.yaml"])
    mwc, hook = webhook_of(docs)
    assert "caBundle" not in hook["clientConfig"]
    assert not find(docs, "Secret"), "cert-manager writes the Secret"
    ref = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    ns, name = ref.split("/")
    cert = one(docs, "Certificate", name)
    assert ns == NS == cert["metadata"]["namespace"]
    assert cert["spec"]["secretName"] == f"{FULL}-webhook-tls"
    assert f"{FULL}-webhook.{NS}.svc" in cert["spec"]["dnsNames"]
    # the chart's own CA chain: self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate
    issuer = one(docs, "Issuer", cert["spec"]["issuerRef"]["name"])
    ca_cert = one(docs, "Certificate", f"{FULL}-ca")
    assert ca_cert["spec"]["isCA"] is True and issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert one(docs, "Issuer", ca_cert["spec"]["issuerRef"]["name"])["spec"] == {"selfSigned": {}}
    assert hook["failurePolicy"] == "Fail"
    # a given issuer: no Issuer of the chart's
    docs = render(helm, [CHART / "ci" / "sidecar-injector-issuer-values.yaml"])
    (cert,) = find(docs, "Certificate")
    assert cert["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert not find(docs, "Issuer")


def sidecar_yaml(docs) -> dict:
    return yaml.safe_load(one(docs, "ConfigMap", f"{FULL}-sidecar")["data"]["sidecar.yaml"])


def test_sidecar_config_reuses_the_discovery_config(helm):
    docs = render(helm, values={**SIDECAR_CNPG,
                                "config": {**SIDECAR_CNPG["config"], "kubernetes_namespace": "db",
                                           "probe_interval": "2s", "log_level": "debug"},
                                "sidecar": {"config": {"probe_interval": "500ms"}, "drainTimeout": "40s",
                                            "image": {"tag": "9.9.9"}}})
    sc = sidecar_yaml(docs)
    assert sc["image"] == "ghcr.io/pgkeel/pgkeel:9.9.9" and sc["imagePullPolicy"] == "IfNotPresent"
    assert sc["listenAddress"] == "127.0.0.1" and sc["ports"] == {"primary": 6432, "replica": 6433, "admin": 9432}
    assert sc["drainTimeout"] == "40s" and sc["failurePolicy"] == "Ignore"
    assert sc["resources"] == {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    # config's keys, sidecar.config over them, the cnpg default for the probe; never the keys a pod's
    # annotations set (the webhook refuses them there)
    assert sc["config"] == {"probe_interval": "500ms", "log_level": "debug", "log_format": "json",
                            "probe_from_secret": True}
    assert "securityContext" not in sc


@pytest.fixture(scope="session")
def webhook_check(pgkeel_bin):
    """`pgkeel inject-webhook --check`, or a skip while the subcommand is not built yet."""
    proc = subprocess.run([pgkeel_bin, "inject-webhook", "--check", "--sidecar-config", "/nonexistent"],
                          capture_output=True, text=True, timeout=30)
    if "not built yet" in proc.stdout + proc.stderr:
        pytest.skip("pgkeel inject-webhook reports 'not built yet' (helper W is building it)")
    return lambda path: subprocess.run([pgkeel_bin, "inject-webhook", "--sidecar-config", str(path), "--check"],
                                       capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("values_file", [f for f in CI_VALUES if f.name.startswith("sidecar")], ids=lambda p: p.name)
def test_rendered_sidecar_config_passes_webhook_check(helm, webhook_check, tmp_path, values_file):
    cm = one(render(helm, [values_file]), "ConfigMap", f"{FULL}-sidecar")
    path = tmp_path / "sidecar.yaml"
    path.write_text(cm["data"]["sidecar.yaml"])
    proc = webhook_check(path)
    assert proc.returncode == 0 and "sidecar config OK" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    # the check is real: a misspelt pgkeel key in config fails it
    bad = yaml.safe_load(cm["data"]["sidecar.yaml"])
    bad["config"]["probe_intervl"] = "1s"
    path.write_text(yaml.safe_dump(bad))
    proc = webhook_check(path)
    assert proc.returncode == 1 and "probe_intervl" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------
# helm test pod


def assert_test_pod_basics(pod, secret: str):
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert 20 <= spec["activeDeadlineSeconds"] <= 600
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["image"] == "postgres:17"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "username"}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "password"}
    script = " ".join(c["command"])
    assert "SELECT 1" in script and "psql" in script
    return script


def test_helm_test_pod_standalone(helm):
    pod = helm_test_pod(render(helm, values=CNPG))
    script = assert_test_pod_basics(pod, "pg-main-app")
    assert f"-h {FULL}-rw -p 6432" in script
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "pgkeel.io/inject" not in pod["metadata"]["annotations"]
    # the -rw Service's port follows the values
    pod = helm_test_pod(render(helm, values={**CNPG, "standalone": {"service": {"primaryPort": 5432}}}))
    assert f"-h {FULL}-rw -p 5432" in " ".join(pod["spec"]["containers"][0]["command"])


def test_helm_test_pod_sidecar_injector(helm):
    docs = render(helm, values={**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"], "kubernetes_namespace": "db"}})
    pod = helm_test_pod(docs)
    script = assert_test_pod_basics(pod, "pg-main-app")
    assert "-h 127.0.0.1 -p 6432" in script
    ann = pod["metadata"]["annotations"]
    assert ann["pgkeel.io/inject"] == "true" and ann["pgkeel.io/cnpg-cluster"] == "pg-main"
    assert ann["pgkeel.io/cluster-namespace"] == "db"
    # the injected sidecar reads the cluster with the pod's token: a ServiceAccount the Role is bound to
    assert pod["spec"]["automountServiceAccountToken"] is True
    sa = pod["spec"]["serviceAccountName"]
    binding = one(docs, "RoleBinding", f"{FULL}-discovery")
    assert {"kind": "ServiceAccount", "name": sa, "namespace": NS} in binding["subjects"]
    # the webhook configuration sends this pod to the webhook
    _, hook = webhook_of(docs)
    assert selector_matches(hook["objectSelector"], pod["metadata"]["labels"])
    assert selector_matches(hook["namespaceSelector"], {"kubernetes.io/metadata.name": NS})


def test_helm_test_pod_other_sources(helm, tmp_path):
    pod = helm_test_pod(render(helm, values={"mode": "sidecar-injector", "config": {
        "source": "zalando", "kubernetes_cluster": "acid-main"}}))
    assert pod["metadata"]["annotations"]["pgkeel.io/zalando-cluster"] == "acid-main"
    assert_test_pod_basics(pod, "postgres.acid-main.credentials.postgresql.acid.zalan.do")
    pod = helm_test_pod(render(helm, values={"mode": "sidecar-injector", "config": {
        "source": "static", "candidates": ["a:5432", "b:5432"]}, "test": {"credentialsSecret": {"name": "creds"}}}))
    assert pod["metadata"]["annotations"]["pgkeel.io/candidates"] == "a:5432,b:5432"
    assert pod["spec"]["automountServiceAccountToken"] is False
    err = render_fails(helm, {"config": {"source": "static", "candidates": ["a:5432"]}}, tmp_path)
    assert "test.credentialsSecret.name is required" in err
    assert not find(render(helm, values={**CNPG, "test": {"enabled": False}}), "Pod")


# ---------------------------------------------------------------------------------------------------------
# The schema refuses bad values


@pytest.mark.parametrize("values, expected", [
    ({"mdoe": "standalone"}, "mdoe"),
    ({"config": {"kubernetes_cluster": "x", "probe_intervl": "1s"}}, "probe_intervl"),
    ({"config": {"kubernetes_cluster": "x", "listen_primary": "0.0.0.0:5432"}}, "listen_primary"),
    ({"config": {"kubernetes_cluster": "x"}, "standalone": {"replicas": 3}}, "replicas"),
    ({"mode": "sidecar"}, "mode"),
    ({"config": {"source": "consul"}}, "source"),
    ({"config": {"kubernetes_cluster": "x", "log_level": "verbose"}}, "log_level"),
    ({"config": {"kubernetes_cluster": "x", "probe_interval": "5"}}, "probe_interval"),
    ({"config": {"kubernetes_cluster": "x", "unhealthy_after": 0}}, "unhealthy_after"),
    ({"mode": "sidecar-injector", "sidecarInjector": {"failurePolicy": "Ignored"}}, "failurePolicy"),
    ({"config": {"kubernetes_cluster": "x"}, "standalone": {"replicaCount": "two"}}, "replicaCount"),
    ({"config": {"kubernetes_cluster": "x"}, "rbac": {"sources": ["static"]}}, "sources"),
    ({"config": {"kubernetes_cluster": "x"}, "sidecar": {"config": {"source": "cnpg"}}}, "source"),
    ({"config": {"kubernetes_cluster": "x"}, "metrics": {"serviceMonitor": {"enabeld": True}}}, "enabeld"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_schema_refuses(helm, tmp_path, values, expected):
    err = render_fails(helm, values, tmp_path)
    assert "values don't meet the specifications of the schema" in err and expected in err, err


def test_lint_strict_refuses_a_typo(helm, tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("config:\n  kubernetes_cluster: pg-main\nservicAccount:\n  create: true\n")
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(f), check=False)
    assert proc.returncode != 0 and "servicAccount" in proc.stdout + proc.stderr


def undescribed(values, schema: dict, path: str = "") -> list[str]:
    """Keys of values the schema does not name (a map whose schema gives additionalProperties a schema, such
    as labels or resource quantities, describes every key)."""
    out = []
    if not isinstance(values, dict):
        return out
    props = schema.get("properties")
    for key, sub in values.items():
        where = f"{path}{key}"
        if props is not None and key in props:
            out += undescribed(sub, props[key], where + ".")
        elif isinstance(schema.get("additionalProperties"), dict):
            out += undescribed(sub, schema["additionalProperties"], where + ".")
        elif props is not None or schema.get("additionalProperties") is False:
            out.append(where)
    return out


def values_paths(node, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(node, dict):
        for key, sub in node.items():
            path = f"{prefix}{key}"
            out.add(path)
            out |= values_paths(sub, path + ".")
    return out


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = undescribed(values, schema)
    assert not missing, f"values.yaml keys the schema does not describe: {missing}"

    def closed(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or 'top level'} accepts unknown keys"
            for key, sub in node["properties"].items():
                closed(sub, f"{path}.{key}" if path else key)
    closed(schema, "")


def catalogue_keys() -> list[str]:
    text = (REPO / "src" / "config" / "keys.cpp").read_text()
    body = text[text.index("std::vector<Key> buildKeys()"):]
    return re.findall(r'(?:listenKey|intKey|durationKey|boolKey|stringKey|Key\{)\(?\s*"([a-z_]+)"', body)


def test_schema_config_keys_are_pgkeels_keys():
    keys = set(catalogue_keys())
    assert {"source", "probe_interval", "log_format", "listen_primary", "drain_delay"} <= keys and len(keys) > 30
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = set(schema["properties"]["config"]["properties"])
    assert config == keys - {"listen_primary", "listen_replica", "admin_listen"}
    sidecar = set(schema["properties"]["sidecar"]["properties"]["config"]["properties"])
    assert sidecar == config - {"source", "kubernetes_cluster", "kubernetes_namespace", "candidates", "patroni_urls"}


KEY_LINE = re.compile(r'^(\s*)(- )?([A-Za-z_][A-Za-z0-9_.-]*):(\s|$)')


def test_every_value_has_a_comment():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if not m:
            continue
        above = lines[i - 1].strip() if i else ""
        documented = above.startswith("#") or above.startswith("- #") or " # " in line
        if not documented:
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "keys without a comment above them:\n" + "\n".join(undocumented)


def test_chart_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    missing = values_paths(values) - listed
    assert not missing, f"charts/pgkeel/README.md values table lacks {sorted(missing)}"
    assert f"{'<fullname>'}-rw" in readme and "<fullname>-ro" in readme


# ---------------------------------------------------------------------------------------------------------
# NOTES.txt, monitoring, the dashboard


def render_notes(helm, tmp_path, values: dict) -> str:
    """NOTES.txt as `helm install` prints it (helm template leaves it out: it is rendered here as a template)."""
    chart = tmp_path / f"chart-{time.monotonic_ns()}"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "pgkeel.notesForTest" -}}\n' + notes + '\n{{- end }}\nkind: Notes\n'
        'text: {{ include "pgkeel.notesForTest" . | toJson }}\n')
    f = tmp_path / "notes-values.yaml"
    f.write_text(yaml.safe_dump(values))
    proc = run_helm(helm, "template", RELEASE, str(chart), "-n", NS, "-f", str(f), "-s", "templates/zz-notes.yaml")
    return yaml.safe_load(proc.stdout)["text"]


def test_notes(helm, tmp_path):
    text = render_notes(helm, tmp_path, CNPG)
    assert f"kubectl -n {NS} port-forward service/{FULL}-rw 6432:6432" in text
    assert 'psql "host=127.0.0.1 port=6432' in text
    assert f"helm test {RELEASE} -n {NS} --logs" in text
    assert f"{FULL}-ro.{NS}.svc:6433" in text
    text = render_notes(helm, tmp_path, {**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"],
                                                                     "kubernetes_namespace": "db"}})
    assert 'pgkeel.io/inject: "true"' in text and "pgkeel.io/cnpg-cluster: pg-main" in text
    assert "pgkeel.io/cluster-namespace: db" in text and "127.0.0.1:6432" in text
    assert f"helm test {RELEASE} -n {NS} --logs" in text


def test_monitoring(helm, tmp_path):
    docs = render(helm, [CHART / "ci" / "standalone-hpa-monitoring-values.yaml"])
    sm = one(docs, "ServiceMonitor", FULL)
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "admin" and ep["path"] == "/metrics" and sm["metadata"]["labels"]["release"] == "prometheus"
    metrics_svc = one(docs, "Service", f"{FULL}-metrics")
    assert selector_matches(sm["spec"]["selector"], metrics_svc["metadata"]["labels"])
    assert [(p["name"], p["port"]) for p in metrics_svc["spec"]["ports"]] == [("admin", 9432)]
    for name in (f"{FULL}-rw", f"{FULL}-ro"):   # scraped once, through the metrics Service only
        assert not selector_matches(sm["spec"]["selector"], one(docs, "Service", name)["metadata"]["labels"])
    pm = one(docs, "PodMonitor", FULL)
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "admin"
    labels = one(docs, "Deployment", FULL)["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(pm["spec"]["selector"], labels)
    # sidecar mode: a PodMonitor for every injected sidecar's port; a ServiceMonitor is refused
    docs = render(helm, [CHART / "ci" / "sidecar-injector-values.yaml"])
    pm = one(docs, "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == SPEC_SIDECAR["ports"][0]["name"]
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}
    err = render_fails(helm, {**SIDECAR_CNPG, "metrics": {"serviceMonitor": {"enabled": True}}}, tmp_path)
    assert "metrics.podMonitor" in err


def exported_metrics() -> dict[str, str]:
    text = (REPO / "src" / "metrics" / "metric_list.cpp").read_text()
    found = dict(re.findall(r'\{"(pgkeel_[a-z0-9_]+)",\s*(Gauge|Counter|Histogram)\b', text))
    assert len(found) >= 20 and "pgkeel_up" in found
    return found


def dashboard_metric_names(dashboard: dict) -> set[str]:
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dashboard)
    return {m for e in exprs for m in re.findall(r"\bpgkeel_[a-z0-9_]+", e)}


def test_dashboard_uses_only_exported_metrics():
    dashboard = json.loads((CHART / "dashboards" / "pgkeel.json").read_text())
    assert dashboard["uid"] == "pgkeel" and dashboard["panels"]
    exported = exported_metrics()
    used = dashboard_metric_names(dashboard)
    assert len(used) >= 20
    unknown = []
    for name in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in exported:
            continue
        if base != name and exported.get(base) == "Histogram":
            continue
        unknown.append(name)
    assert not unknown, f"dashboard metrics pgkeel does not export (src/metrics/metric_list.cpp): {unknown}"
    # and the README metrics table names the same metrics as the list
    readme = (REPO / "README.md").read_text()
    for name in used:
        assert f"`{re.sub(r'_(bucket|sum|count)$', '', name)}`" in readme
    # every panel that is not a row queries something
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_dashboard_configmap(helm):
    assert not find(render(helm, values=CNPG), "ConfigMap", f"{FULL}-dashboard")
    docs = render(helm, values={**CNPG, "dashboard": {"enabled": True, "namespace": "monitoring"}})
    cm = one(docs, "ConfigMap", f"{FULL}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["pgkeel.json"]) == json.loads((CHART / "dashboards" / "pgkeel.json").read_text())


# ---------------------------------------------------------------------------------------------------------
# manifests/


def manifest(name: str) -> list[dict]:
    return load_all((MANIFESTS / name).read_text())


def args_to_config(args: list[str]) -> str:
    assert len(args) % 2 == 0, args
    lines = []
    for flag, value in zip(args[::2], args[1::2]):
        assert flag.startswith("--"), flag
        lines.append(f"{flag[2:].replace('-', '_')}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, source, cluster", [("sidecar-cnpg.yaml", "cnpg", "pg-main"),
                                                   ("sidecar-zalando.yaml", "zalando", "acid-main")])
def test_manifest_sidecar_matches_the_injected_container(pgkeel_bin, tmp_path, name, source, cluster):
    docs = manifest(name)
    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    sidecar = spec["initContainers"][0]
    for key, expected in SPEC_SIDECAR.items():
        assert sidecar[key] == expected, f"{name}: {key}"
    assert set(sidecar) == set(SPEC_SIDECAR) | {"image", "args"}
    assert sidecar["image"] == "ghcr.io/pgkeel/pgkeel:0.1.0"
    args = sidecar["args"]
    assert args[:6] == SIDECAR_LISTEN_ARGS
    assert args[-6:] == ["--source", source, "--kubernetes-cluster", cluster, "--kubernetes-namespace", "db"]
    # the whole argument list is a valid pgkeel configuration
    path = tmp_path / "args.yaml"
    path.write_text(args_to_config(args))
    proc = subprocess.run([pgkeel_bin, "--check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # longer than the drain, and the pod's ServiceAccount is bound to the discovery Role
    assert spec["terminationGracePeriodSeconds"] > 25
    binding = one(docs, "RoleBinding")
    assert {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": "db"} in binding["subjects"]
    role_file = f"rbac-{source}.yaml"
    role = one(manifest(role_file), "Role")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    app = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert (env["PGHOST"], env["PGPORT"]) == ("127.0.0.1", "6432")


@pytest.mark.parametrize("source, cluster", [("cnpg", "pg-main"), ("zalando", "acid-main")])
def test_manifest_rbac_equals_the_charts(helm, source, cluster):
    """manifests/rbac-<source>.yaml grants exactly what the chart grants for the same cluster."""
    docs = manifest(f"rbac-{source}.yaml")
    chart = render(helm, values={"config": {"source": source, "kubernetes_cluster": cluster,
                                            "kubernetes_namespace": "db"}})
    assert rules_by_resource(one(docs, "Role")) == rules_by_resource(one(chart, "Role"))
    sa = one(docs, "ServiceAccount")
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "db"}]
    assert binding["roleRef"]["name"] == one(docs, "Role")["metadata"]["name"]


def test_manifest_standalone(helm, pgkeel_bin, tmp_path):
    docs = manifest("standalone.yaml")
    cm = one(docs, "ConfigMap")
    path = tmp_path / "pgkeel.yaml"
    path.write_text(cm["data"]["pgkeel.yaml"])
    proc = subprocess.run([pgkeel_bin, "--check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = yaml.safe_load(cm["data"]["pgkeel.yaml"])
    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > int(cfg["drain_delay"].rstrip("s")) + int(cfg["shutdown_timeout"].rstrip("s"))
    # the same pod spec as the chart renders for the same cluster, names aside
    chart = render(helm, values={"config": {"source": "cnpg", "kubernetes_cluster": "pg-main",
                                            "kubernetes_namespace": "db", "probe_interval": "1s",
                                            "primary_wait": "5s"}})
    chart_c = one(chart, "Deployment", FULL)["spec"]["template"]["spec"]["containers"][0]
    (c,) = spec["containers"]
    for key in ("command", "args", "ports", "startupProbe", "readinessProbe", "livenessProbe", "resources"):
        assert c[key] == chart_c[key], key
    assert c["securityContext"] == chart_c["securityContext"]
    chart_cfg = rendered_config(chart)
    assert cfg == chart_cfg
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for svc, port, target in (("pgkeel-rw", 6432, "primary"), ("pgkeel-ro", 6433, "replica")):
        s = one(docs, "Service", svc)
        assert [(p["port"], p["targetPort"]) for p in s["spec"]["ports"]] == [(port, target)]
        assert set(s["spec"]["selector"].items()) <= set(labels.items())
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"] == dep["spec"]["selector"]
    assert spec["serviceAccountName"] == one(manifest("rbac-cnpg.yaml"), "ServiceAccount")["metadata"]["name"]


def test_manifest_files_present_and_documented():
    readme = (MANIFESTS / "README.md").read_text()
    for name in ("rbac-cnpg.yaml", "rbac-zalando.yaml", "sidecar-cnpg.yaml", "sidecar-zalando.yaml",
                 "standalone.yaml"):
        assert (MANIFESTS / name).is_file()
        assert f"`{name}`" in readme
        for d in manifest(name):
            assert d["metadata"].get("namespace") == "db", f"{name}: {d['kind']} {d['metadata']['name']}"


# ---------------------------------------------------------------------------------------------------------
# The webhook itself, end to end over TLS: the sidecar it injects is the manifests' sidecar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_webhook(pgkeel_bin, webhook_check, tmp_path):
    """A real `pgkeel inject-webhook` on loopback with a certificate for 127.0.0.1, serving the sidecar.yaml
    the manifests' sidecars correspond to."""
    run_ok("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "tls.key"),
           "-out", str(tmp_path / "tls.crt"))
    (tmp_path / "sidecar.yaml").write_text(yaml.safe_dump({
        "image": "ghcr.io/pgkeel/pgkeel:0.1.0", "imagePullPolicy": "IfNotPresent", "failurePolicy": "Ignore",
        "listenAddress": "127.0.0.1", "ports": {"primary": 6432, "replica": 6433, "admin": 9432},
        "drainTimeout": "25s", "resources": SPEC_SIDECAR["resources"],
        "config": {"probe_from_secret": True, "log_format": "json"}}))
    port = free_port()
    log = open(tmp_path / "webhook.log", "w")
    proc = subprocess.Popen([pgkeel_bin, "inject-webhook", "--listen", f"127.0.0.1:{port}",
                             "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"),
                             "--sidecar-config", str(tmp_path / "sidecar.yaml")], stdout=log, stderr=log)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.fail(f"inject-webhook exited {proc.returncode}: {(tmp_path / 'webhook.log').read_text()}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            pytest.fail(f"inject-webhook not ready: {(tmp_path / 'webhook.log').read_text()}")
        time.sleep(0.1)
    yield f"https://127.0.0.1:{port}/mutate", ctx
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.mark.parametrize("name, annotation, cluster", [("sidecar-cnpg.yaml", "pgkeel.io/cnpg-cluster", "pg-main"),
                                                       ("sidecar-zalando.yaml", "pgkeel.io/zalando-cluster",
                                                        "acid-main")])
def test_webhook_injects_the_manifests_sidecar(running_webhook, name, annotation, cluster):
    import jsonpatch
    url, ctx = running_webhook
    template = one(manifest(name), "Deployment")["spec"]["template"]
    pod_spec = dict(template["spec"])
    written = pod_spec.pop("initContainers")[0]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "app-1", "namespace": "db", "labels": template["metadata"]["labels"],
                        "annotations": {"pgkeel.io/inject": "true", annotation: cluster}},
           "spec": pod_spec}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "3f7c6a52-0000-4000-8000-000000000001",
                          "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "db",
                          "operation": "CREATE", "object": pod}}
    req = urllib.request.Request(url, data=json.dumps(review).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        answer = json.loads(r.read())
    response = answer["response"]
    assert response["allowed"] is True and response.get("patchType") == "JSONPatch", response
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    injected = patched["spec"]["initContainers"][0]
    assert [c["name"] for c in patched["spec"]["initContainers"]].count("pgkeel") == 1
    for key in SPEC_SIDECAR:
        assert injected.get(key) == written[key], f"{name}: {key} differs from the webhook's"
    # the same flags (the webhook may order the configuration entries differently)
    assert injected["args"][:6] == written["args"][:6]
    pairs = lambda a: sorted(zip(a[6::2], a[7::2]))  # noqa: E731
    assert pairs(injected["args"]) == pairs(written["args"])
