"""The Helm chart's sidecar-injector mode and the plain manifests/: the webhook configuration, its TLS
(generated and kept on upgrade, or cert-manager), the sidecar config it hands `pgkeel inject-webhook`, and
the manifests, which must equal what the chart and the webhook produce."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import yaml

from helm_util import (  # helm is a fixture
    CHART, CI_VALUES, CNPG, FULL, MANIFESTS, NO_TEST, NS, SIDECAR_CNPG, SIDECAR_LISTEN_ARGS, SPEC_SIDECAR, find,
    helm, load_all, one, render, render_fails, rendered_config, rules_by_resource, run_helm, selector_matches,
    template_args, webhook_of)


def test_webhook_configuration(helm):
    docs = render(helm, values=SIDECAR_CNPG)
    mwc, hook = webhook_of(docs)
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    # fail closed by default: only annotated pods are sent (the matchCondition below) and never the webhook's own
    assert hook["reinvocationPolicy"] == "IfNeeded" and hook["failurePolicy"] == "Fail"
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
    assert pdb["spec"] == {"minAvailable": 1, "selector": webhook["spec"]["selector"]}
    assert sidecar_yaml(docs)["failurePolicy"] == "Fail", "the webhook answers with the same failure policy"


def test_webhook_options_from_values(helm):
    docs = render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {
        "failurePolicy": "Ignore", "timeoutSeconds": 12, "onlyAnnotatedPods": False,
        "objectSelector": {"matchLabels": {"inject": "yes"}},
        "matchConditions": [{"name": "no-jobs", "expression": "true"}]}})
    _, hook = webhook_of(docs)
    assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 12
    assert hook["matchConditions"] == [{"name": "no-jobs", "expression": "true"}]
    assert hook["objectSelector"]["matchLabels"] == {"inject": "yes"}
    assert {"key": "pgkeel.io/component", "operator": "NotIn", "values": ["injector"]} in \
        hook["objectSelector"]["matchExpressions"]
    sidecar = yaml.safe_load(one(docs, "ConfigMap", f"{FULL}-sidecar")["data"]["sidecar.yaml"])
    assert sidecar["failurePolicy"] == "Ignore", "fail open stays available, for the webhook's answer too"


def webhook_pod(docs) -> dict:
    return one(docs, "Deployment", f"{FULL}-webhook")["spec"]["template"]


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, args
    return args[args.index(name) + 1]


def test_webhook_drain_delay_and_grace(helm, tmp_path):
    """`--drain-delay` from sidecarInjector.drainDelay (default 10s); the pod's grace period is above it (default
    drainDelay + 10s), and a grace period not above it is refused, as in standalone mode."""
    spec = webhook_pod(render(helm, values=SIDECAR_CNPG))["spec"]
    (c,) = spec["containers"]
    assert flag(c["args"], "--drain-delay") == "10s"
    assert spec["terminationGracePeriodSeconds"] == 20
    spec = webhook_pod(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"drainDelay": "1m2500ms"}}))["spec"]
    assert flag(spec["containers"][0]["args"], "--drain-delay") == "1m2500ms"
    assert spec["terminationGracePeriodSeconds"] == 73  # ceil(62.5) + 10
    spec = webhook_pod(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"drainDelay": "0s"}}))["spec"]
    assert spec["terminationGracePeriodSeconds"] == 10
    spec = webhook_pod(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {
        "terminationGracePeriodSeconds": 11}}))["spec"]
    assert spec["terminationGracePeriodSeconds"] == 11
    err = render_fails(helm, {**SIDECAR_CNPG, "sidecarInjector": {"terminationGracePeriodSeconds": 10}}, tmp_path)
    assert "sidecarInjector.terminationGracePeriodSeconds (10) must be above sidecarInjector.drainDelay (10s)" in err
    err = render_fails(helm, {**SIDECAR_CNPG, "sidecarInjector": {"drainDelay": "10"}}, tmp_path)
    assert "drainDelay" in err
    err = render_fails(helm, {**SIDECAR_CNPG, "sidecarInjector": {"drainDelay": "10m1s"}}, tmp_path)
    assert "sidecarInjector.drainDelay (10m1s) is above pgkeel inject-webhook's --drain-delay limit, 10m" in err
    spec = webhook_pod(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"drainDelay": "10m"}}))["spec"]
    assert spec["terminationGracePeriodSeconds"] == 610


def test_webhook_replicas_spread_over_nodes(helm):
    """The webhook replicas go to different nodes: the default topology spread (with the webhook's selector), or,
    when the user gives no spread and no podAntiAffinity, a preferred podAntiAffinity on the hostname."""
    pod = webhook_pod(render(helm, values=SIDECAR_CNPG))
    spec, labels = pod["spec"], pod["metadata"]["labels"]
    (tsc,) = spec["topologySpreadConstraints"]
    assert tsc["topologyKey"] == "kubernetes.io/hostname" and selector_matches(tsc["labelSelector"], labels)
    assert "affinity" not in spec
    # no spread given: the chart's podAntiAffinity, next to the user's other affinity
    pod = webhook_pod(render(helm, values={**SIDECAR_CNPG, "topologySpreadConstraints": [],
                                           "affinity": {"nodeAffinity": {"x": 1}}}))
    spec = pod["spec"]
    assert "topologySpreadConstraints" not in spec and spec["affinity"]["nodeAffinity"] == {"x": 1}
    (pref,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    term = pref["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname" and selector_matches(term["labelSelector"], labels)
    assert not selector_matches(term["labelSelector"], {**labels, "app.kubernetes.io/instance": "other"})
    # the user's own podAntiAffinity is left as it is
    own = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {}}]}
    spec = webhook_pod(render(helm, values={**SIDECAR_CNPG, "topologySpreadConstraints": [],
                                            "affinity": {"podAntiAffinity": own}}))["spec"]
    assert spec["affinity"] == {"podAntiAffinity": own}
    # standalone mode is untouched by the webhook's fallback
    spec = one(render(helm, values={**CNPG, "topologySpreadConstraints": []}), "Deployment", FULL)
    assert "affinity" not in spec["spec"]["template"]["spec"]


def test_webhook_pdb(helm, tmp_path):
    """minAvailable 1 while there is more than one webhook replica; none for a single replica (it would block every
    node drain); maxUnavailable when minAvailable is null."""
    docs = render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"replicaCount": 3}})
    pdb = one(docs, "PodDisruptionBudget", f"{FULL}-webhook")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert selector_matches(pdb["spec"]["selector"], webhook_pod(docs)["metadata"]["labels"])
    assert not find(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"replicaCount": 1}}),
                    "PodDisruptionBudget")
    pdb = one(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {
        "pdb": {"minAvailable": None, "maxUnavailable": 1}}}), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert not find(render(helm, values={**SIDECAR_CNPG, "sidecarInjector": {"pdb": {"enabled": False}}}),
                    "PodDisruptionBudget")
    err = render_fails(helm, {**SIDECAR_CNPG, "sidecarInjector": {"pdb": {"minAvailable": None}}}, tmp_path)
    assert "sidecarInjector.pdb needs minAvailable or maxUnavailable" in err


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
                                            "image": {"tag": "9.9.9"}}, **NO_TEST})
    sc = sidecar_yaml(docs)
    assert sc["image"] == "ghcr.io/pgkeel/pgkeel:9.9.9" and sc["imagePullPolicy"] == "IfNotPresent"
    assert sc["listenAddress"] == "127.0.0.1" and sc["ports"] == {"primary": 6432, "replica": 6433, "admin": 9432}
    assert sc["drainTimeout"] == "40s" and sc["failurePolicy"] == "Fail"
    assert sc["resources"] == {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    # config's keys, sidecar.config over them, the cnpg default for the probe; never the keys a pod's
    # annotations set (the webhook refuses them there)
    assert sc["config"] == {"probe_interval": "500ms", "log_level": "debug", "log_format": "json",
                            "probe_from_secret": True}
    assert "securityContext" not in sc


@pytest.mark.parametrize("values, expected", [
    ({"config": {"source": "cnpg", "kubernetes_cluster": "pg-main"}}, True),
    ({"config": {"source": "zalando", "kubernetes_cluster": "acid-main"}}, True),
    # the helm test's cluster follows patroni, but the RBAC grants cnpg: the cnpg pods' sidecars need the Secret
    ({"config": {"source": "patroni", "patroni_urls": ["http://p:8008"]}, "rbac": {"sources": ["cnpg"],
                                                                                  "clusterNames": ["pg-main"]}},
     True),
    # probeCredentials reaches no sidecar: it does not turn the default off
    ({"config": {"source": "cnpg", "kubernetes_cluster": "pg-main"}, "probeCredentials": {"existingSecret": "p"}},
     True),
    ({"config": {"source": "cnpg", "kubernetes_cluster": "pg-main", "probe_from_secret": False}}, False),
    ({"config": {"source": "static", "candidates": ["a:5432"]}}, None),
    ({"config": {"source": "patroni", "patroni_urls": ["http://p:8008"]}}, None),
], ids=["cnpg", "zalando", "patroni-with-cnpg-rbac", "probeCredentials", "explicit-false", "static", "patroni"])
def test_sidecar_probe_from_secret_default(helm, values, expected):
    """Sidecars get `probe_from_secret: true` whenever the chart grants a cnpg or zalando cluster (the webhook drops
    it for pods that follow patroni or static); an explicit false stays; no default without those sources."""
    docs = render(helm, values={"mode": "sidecar-injector", **values,
                                "test": {"credentialsSecret": {"name": "creds"}}})
    config = sidecar_yaml(docs)["config"]
    assert config.get("probe_from_secret") is expected, config
    secrets = [r for r in find(docs, "Role") for r in r["rules"] if "secrets" in r["resources"]]
    assert bool(secrets) == bool(expected), "the Secret is granted exactly when the sidecars read it"


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
                                            "kubernetes_namespace": "db"}, **NO_TEST})
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
                                            "primary_wait": "5s"}, **NO_TEST})
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


# ---------------------------------------------------------------------------------------------------------
# The webhook itself, end to end over TLS: the sidecar it injects is the manifests' sidecar

# The sidecar.yaml the manifests' sidecars correspond to.
MANIFESTS_SIDECAR_CONFIG = {
    "image": "ghcr.io/pgkeel/pgkeel:0.1.0", "imagePullPolicy": "IfNotPresent", "failurePolicy": "Ignore",
    "listenAddress": "127.0.0.1", "ports": {"primary": 6432, "replica": 6433, "admin": 9432},
    "drainTimeout": "25s", "resources": SPEC_SIDECAR["resources"],
    "config": {"probe_from_secret": True, "log_format": "json"}}


@pytest.mark.parametrize("name, annotation, cluster", [("sidecar-cnpg.yaml", "pgkeel.io/cnpg-cluster", "pg-main"),
                                                       ("sidecar-zalando.yaml", "pgkeel.io/zalando-cluster",
                                                        "acid-main")])
def test_webhook_injects_the_manifests_sidecar(pgkeel_bin, tmp_path, name, annotation, cluster):
    """A real `pgkeel inject-webhook` with the matching sidecar.yaml injects into the manifest's app pod exactly
    the sidecar the manifest writes out (the same fields; the same flags, in any order after the listeners)."""
    from test_inject_webhook import Webhook, applied, make_pki, mutate, review_for

    template = one(manifest(name), "Deployment")["spec"]["template"]
    pod_spec = dict(template["spec"])
    written = pod_spec.pop("initContainers")[0]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "app-1", "namespace": "db", "labels": template["metadata"]["labels"],
                        "annotations": {"pgkeel.io/inject": "true", annotation: cluster}},
           "spec": pod_spec}
    review = review_for(pod)
    review["request"]["namespace"] = "db"
    pki = make_pki(tmp_path / "pki", "pgkeel test CA")
    hook = Webhook(pgkeel_bin, tmp_path / "webhook", pki)
    hook.config.write_text(yaml.safe_dump(MANIFESTS_SIDECAR_CONFIG))
    hook.start(pki / "ca.pem")
    try:
        status, answer = mutate(hook, pki / "ca.pem", review)
    finally:
        assert hook.stop() == 0, hook.log()
    response = answer["response"]
    assert status == 200 and response["allowed"] is True and response.get("patchType") == "JSONPatch", response
    patched = applied(pod, answer)
    injected = patched["spec"]["initContainers"][0]
    assert [c["name"] for c in patched["spec"]["initContainers"]].count("pgkeel") == 1
    for key in SPEC_SIDECAR:
        assert injected.get(key) == written[key], f"{name}: {key} differs from the webhook's"
    assert injected["args"][:6] == written["args"][:6]
    pairs = lambda a: sorted(zip(a[6::2], a[7::2]))  # noqa: E731
    assert pairs(injected["args"]) == pairs(written["args"])
