"""Tests of e2e/k8s/validate.mjs itself: good objects pass; unknown fields, wrong types, unknown kinds and the
API server's own rules fail, each naming the file, document, object and path."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from test_k8s_manifests import VALIDATE, run, validate, validate_text  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# validate.mjs itself


GOOD = """\
# a comment-only document first, as helm template writes them
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app.kubernetes.io/name: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {pgkeel.io/inject: "true"}}
    spec:
      restartPolicy: Always
      volumes: [{name: cfg, configMap: {name: web}}]
      initContainers:
      - name: pgkeel
        image: ghcr.io/pgkeel/pgkeel:0.1.0
        restartPolicy: Always
        readinessProbe: {httpGet: {path: /readyz, port: 9432}}
      containers:
      - name: app
        image: nginx
        ports: [{name: http, containerPort: 80}]
        volumeMounts: [{name: cfg, mountPath: /etc/web}]
        resources: {limits: {cpu: 500m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: alt, port: 81, targetPort: 8081}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: web}
spec: {selector: {matchLabels: {app: web}}, endpoints: [{port: http, path: /metrics}]}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web}
spec: {secretName: web-tls, dnsNames: [web.default.svc], issuerRef: {name: ca, kind: Issuer}}
"""


def test_validate_accepts_good_objects(tmp_path):
    """Valid built-in and custom (ServiceMonitor, Certificate) objects pass: exit 0, no output, from a file, from
    stdin, and as JSON; --json lists the objects."""
    assert validate_text(GOOD) == (0, [])
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    status, data, stderr = validate(path)
    assert status == 0 and data["problems"] == [] and "4 object(s)" in stderr
    assert [(o["doc"], o["object"]["kind"]) for o in data["objects"]] == [
        (1, "Deployment"), (2, "Service"), (3, "ServiceMonitor"), (4, "Certificate")]
    json_file = tmp_path / "list.json"
    json_file.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                     "items": [o["object"] for o in data["objects"]]}))
    status, data, _ = validate(json_file)
    assert status == 0 and [o["item"] for o in data["objects"]] == [0, 1, 2, 3]


BAD = {
    "unknown container field": (
        "image: nginx", "imagee: nginx",
        'doc 1: Deployment/web: spec.template.spec.containers[0].imagee: unknown field "imagee"'),
    "unknown pod spec field": ("restartPolicy: Always\n      volumes", "restartPolicyy: Always\n      volumes",
                               'Deployment/web: spec.template.spec.restartPolicyy: unknown field "restartPolicyy"'),
    "unknown custom resource field": ("path: /metrics}", "path: /metrics, scheme: http, bogus: 1}",
                                      'doc 3: ServiceMonitor/web: spec.endpoints[0].bogus: unknown field "bogus"'),
    "wrong type": ("replicas: 2", 'replicas: "2"', "Deployment/web: spec.replicas: must be integer (got string)"),
    "wrong custom resource type": ("dnsNames: [web.default.svc]", "dnsNames: web.default.svc",
                                   "doc 4: Certificate/web: spec.dnsNames: must be array (got string)"),
    "bad quantity": ("memory: 64Mi", "memory: 64Mb",
                     'resources.limits.memory: must be number or match format "quantity" (got "64Mb")'),
    "YAML 1.1 boolean": ('pgkeel.io/inject: "true"', "pgkeel.io/inject: yes",
                         'annotations["pgkeel.io/inject"]: must be string (got boolean)'),
    "unknown kind": ("kind: Service\n", "kind: Servicee\n",
                     'doc 2: Servicee/web: kind: unknown kind "Servicee" in apiVersion "v1"'),
    "unknown apiVersion": ("apiVersion: cert-manager.io/v1", "apiVersion: cert-manager.io/v2",
                           'Certificate/web: kind: unknown kind "Certificate" in apiVersion "cert-manager.io/v2"'),
    "selector does not match template": ("labels: {app: web}, annotations",
                                         "labels: {app: webb}, annotations",
                                         "spec.template.metadata.labels: selector does not match template labels"),
    "missing volume": ("mountPath: /etc/web", "mountPath: /etc/web}, {name: data, mountPath: /data",
                       'volumeMounts[1].name: volume "data" not found'),
    "long port name": ("name: http, containerPort", "name: http-metrics-port, containerPort",
                       'ports[0].name: "http-metrics-port": a port name must be at most 15 characters'),
    "YAML syntax": ("ports: [{name: http, port: 80", "ports: [{name: http port: 80",
                    "doc 2: ?/?: line "),
}


@pytest.fixture(scope="module")
def bad_reports(tmp_path_factory) -> tuple[int, dict[str, list[str]]]:
    """validate.mjs run once on every BAD variant of GOOD (file <case>.yaml): its exit status and lines by case."""
    d = tmp_path_factory.mktemp("bad")
    files = {}
    for case, (old, new, _) in BAD.items():
        assert GOOD.count(old) == 1, old
        files[case] = d / f"{case.replace(' ', '-')}.yaml"
        files[case].write_text(GOOD.replace(old, new))
    res = run(["node", VALIDATE, *files.values()])
    return res.returncode, {case: [line for line in res.stdout.splitlines() if line.startswith(f"{path}: ")]
                            for case, path in files.items()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_reports_problems_with_their_path(bad_reports, case):
    """A broken object makes validate.mjs exit 1 with `FILE: doc N: Kind/name: path: message` naming it."""
    status, lines = bad_reports
    expected = BAD[case][2]
    assert status == 1 and any(expected in line for line in lines[case]), lines[case]


def test_validate_list_items_and_usage(tmp_path):
    """A List's items are checked one by one (`doc N item I`); a document that is no object is an error; no files
    or an unreadable one is exit 2."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}},
             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": 1}}]
    status, lines = validate_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    assert status == 1 and lines == ["-: doc 1 item 1: ConfigMap/b: data.k: must be string (got integer)"]
    status, lines = validate_text("- just\n- a list\n")
    assert status == 1 and "a Kubernetes object must be a mapping" in lines[0]
    assert run(["node", VALIDATE]).returncode == 2
    assert run(["node", VALIDATE, tmp_path / "missing.yaml"]).returncode == 2
