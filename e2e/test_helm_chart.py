"""The Helm chart charts/pgkeel: lint, render, and check what each value makes it render (standalone mode,
RBAC per source, the helm test pod, NOTES, monitors, dashboard; the values themselves: test_helm_values.py).

Run: /usr/bin/python3 -m pytest -q e2e/test_helm_chart.py (helm from scripts/k8s-tools.sh; the pgkeel binary
from $PGKEEL_BIN, else build/pgkeel, for `--check-config`). Schema validation and `kubectl apply` of every
rendering are in test_k8s_manifests.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import yaml

from helm_util import (  # helm is a fixture
    CHART, CI_VALUES, CNPG, FULL, NO_TEST, NS, RELEASE, REPO, SIDECAR_CNPG, SPEC_SIDECAR, find, helm, helm_test_pod,
    one, render, render_fails, rendered_config, rules_by_resource, run_helm, selector_matches, webhook_of)


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


READ = ["get", "list", "watch"]


def test_rbac_cnpg(helm):
    docs = render(helm, values={"config": {**CNPG["config"], "kubernetes_namespace": "db"}, **NO_TEST})
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
                                                                 {"name": "worker"}]}, **NO_TEST})
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
# The helm test pod


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
    docs = render(helm, values={**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"], "kubernetes_namespace": "db"},
                                "test": {"credentialsSecret": {"name": "pg-main-app-copy"}}})
    pod = helm_test_pod(docs)
    # the cluster is in namespace db: psql logs in with the copy of its Secret in the release namespace
    script = assert_test_pod_basics(pod, "pg-main-app-copy")
    assert pod["metadata"]["namespace"] == NS
    assert "-h 127.0.0.1 -p 6432" in script
    ann = pod["metadata"]["annotations"]
    assert ann["pgkeel.io/inject"] == "true" and ann["pgkeel.io/cnpg-cluster"] == "pg-main"
    assert ann["pgkeel.io/cluster-namespace"] == "db"
    # the injected sidecar reads the cluster with the pod's token: a ServiceAccount the Role is bound to
    assert pod["spec"]["automountServiceAccountToken"] is True
    sa = pod["spec"]["serviceAccountName"]
    binding = one(docs, "RoleBinding", f"{FULL}-discovery")
    assert binding["metadata"]["namespace"] == "db"
    assert {"kind": "ServiceAccount", "name": sa, "namespace": NS} in binding["subjects"]
    # the webhook configuration sends this pod to the webhook
    _, hook = webhook_of(docs)
    assert selector_matches(hook["objectSelector"], pod["metadata"]["labels"])
    assert selector_matches(hook["namespaceSelector"], {"kubernetes.io/metadata.name": NS})


@pytest.mark.parametrize("mode", ["standalone", "sidecar-injector"])
@pytest.mark.parametrize("source, cluster, secret", [
    ("cnpg", "pg-main", "pg-main-app"),
    ("zalando", "acid-main", "postgres.acid-main.credentials.postgresql.acid.zalan.do")])
def test_helm_test_pod_cluster_in_another_namespace(helm, tmp_path, mode, source, cluster, secret):
    """A pod's secretKeyRef reads its own namespace only: with the cluster in another namespace than the release,
    the operator's Secret cannot log the helm test pod in, and the chart says what to do instead of rendering a
    pod that never starts."""
    config = {"source": source, "kubernetes_cluster": cluster, "kubernetes_namespace": "db"}
    err = render_fails(helm, {"mode": mode, "config": config}, tmp_path)
    assert f"Secret {secret}" in err and "namespace db" in err
    assert f"Copy the Secret into namespace {NS} and set test.credentialsSecret.name" in err
    assert "test.enabled=false" in err
    # a copy in the release namespace, or no test pod
    pod = helm_test_pod(render(helm, values={"mode": mode, "config": config,
                                             "test": {"credentialsSecret": {"name": "creds-copy"}}}))
    assert_test_pod_basics(pod, "creds-copy")
    assert not find(render(helm, values={"mode": mode, "config": config, **NO_TEST}), "Pod")
    # the cluster in the release namespace, named or not: the operator's Secret
    for namespace in (NS, ""):
        values = {"mode": mode, "config": {**config, "kubernetes_namespace": namespace}}
        pod = helm_test_pod(render(helm, values=values))
        assert_test_pod_basics(pod, secret)


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
    assert f"Secret pg-main-app of namespace {NS}" in text and "copy it again" not in text
    text = render_notes(helm, tmp_path, {**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"],
                                                                     "kubernetes_namespace": "db"},
                                         "test": {"credentialsSecret": {"name": "pg-main-app-copy"}}})
    assert 'pgkeel.io/inject: "true"' in text and "pgkeel.io/cnpg-cluster: pg-main" in text
    assert "pgkeel.io/cluster-namespace: db" in text and "127.0.0.1:6432" in text
    assert f"helm test {RELEASE} -n {NS} --logs" in text
    assert f"Secret pg-main-app-copy of namespace {NS}" in text and "in namespace db" in text
    assert "copy it again after a password rotation" in text
    # the default failure policy, Fail: what it means for annotated pods
    flat = " ".join(text.split())
    assert "failurePolicy Fail" in flat and "refused rather than started without its sidecar" in flat
    flat = " ".join(render_notes(helm, tmp_path, {**SIDECAR_CNPG, "sidecarInjector": {"failurePolicy": "Ignore"}})
                    .split())
    assert "failurePolicy Ignore" in flat and "starts without its sidecar" in flat
    text = render_notes(helm, tmp_path, {**SIDECAR_CNPG, "config": {**SIDECAR_CNPG["config"],
                                                                     "kubernetes_namespace": "db"}, **NO_TEST})
    assert "helm test" not in text


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
