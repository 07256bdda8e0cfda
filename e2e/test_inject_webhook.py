"""`pgkeel inject-webhook` as the API server meets it: real TLS (certificates made with the openssl CLI),
real AdmissionReview requests, the returned JSONPatch applied with jsonpatch, certificate renewal on disk."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import jsonpatch
import pytest

from pgcluster import REPO_ROOT, free_port, wait_until

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VALIDATOR = REPO_ROOT / "e2e" / "k8s" / "validate.mjs"
UID = "b2c1e0a4-55d3-4f7e-9a57-0c1f3e2d4a10"

GOOD_CONFIG = """\
image: ghcr.io/pgkeel/pgkeel:0.1.0
imagePullPolicy: IfNotPresent
failurePolicy: {policy}
listenAddress: 127.0.0.1
ports: {{primary: 6432, replica: 6433, admin: 9432}}
drainTimeout: 25s
resources: {{requests: {{cpu: 50m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
securityContext: {{}}
config: {{probe_interval: 1s, log_format: json}}
"""


# ---------------------------------------------------------------------------------------------------------
# Certificates, the webhook process, requests


def openssl(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(directory: Path, ca_name: str) -> Path:
    """A CA and a server certificate for IP 127.0.0.1 it signs: ca.pem, tls.crt, tls.key in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", f"/CN={ca_name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=pgkeel-webhook", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tls.crt", "-days", "1", "-extfile", "ext.cnf", cwd=directory)
    return directory


class Webhook:
    """One `pgkeel inject-webhook` on a free loopback port, its stderr in log_path."""

    def __init__(self, binary: str, workdir: Path, pki: Path, policy: str = "Ignore"):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = workdir / "tls.crt", workdir / "tls.key"
        self.cert.write_bytes((pki / "tls.crt").read_bytes())
        self.key.write_bytes((pki / "tls.key").read_bytes())
        self.config = workdir / "sidecar.yaml"
        self.config.write_text(GOOD_CONFIG.format(policy=policy))
        self.port = free_port()
        self.log_path = workdir / "webhook.log"
        self.cmd = [binary, "inject-webhook", "--listen", f"127.0.0.1:{self.port}", "--tls-cert", str(self.cert),
                    "--tls-key", str(self.key), "--sidecar-config", str(self.config), "--log-level", "debug",
                    "--drain-delay", "0s"]
        self.proc: subprocess.Popen | None = None

    def start(self, ca: Path) -> "Webhook":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self._healthy(ca), timeout=15, what=f"webhook on port {self.port}")
        return self

    def _healthy(self, ca: Path) -> bool:
        assert self.proc.poll() is None, f"webhook exited with {self.proc.returncode}:\n{self.log()}"
        return request(self.port, ca, "GET", "/healthz")[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM; the exit code (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def tls_context(ca: Path) -> ssl.SSLContext:
    """Trusts only ca and checks that the certificate is for 127.0.0.1 (the IP address SAN)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def request(port: int, ca: Path, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of one request on a new TLS connection."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(ca), timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def mutate(hook: Webhook, ca: Path, review: dict | bytes) -> tuple[int, dict]:
    body = review if isinstance(review, bytes) else json.dumps(review).encode()
    status, answer = request(hook.port, ca, "POST", "/mutate", body)
    return status, json.loads(answer)


# ---------------------------------------------------------------------------------------------------------
# Pods and reviews


def app_pod(annotations: dict | None) -> dict:
    """A Deployment's pod as mutating admission sees it: the ServiceAccount admission already added the
    kube-api-access projected volume and its mount to the app container."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shop-7d9f8b6c5d-x2x9z", "generateName": "shop-7d9f8b6c5d-", "namespace": "shop",
                     "labels": {"app": "shop", "pod-template-hash": "7d9f8b6c5d"}},
        "spec": {
            "serviceAccountName": "shop",
            "containers": [{
                "name": "app", "image": "registry.example/shop:1.4.2",
                "env": [{"name": "DATABASE_URL", "value": "postgres://app@127.0.0.1:6432/shop"}],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/shop"},
                                 {"name": "kube-api-access-x7k2p", "readOnly": True, "mountPath": TOKEN_PATH}],
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "shop"}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "restartPolicy": "Always",
        },
    }
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    return pod


def review_for(obj: dict, kind: str = "Pod", operation: str = "CREATE") -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": UID, "kind": {"group": "", "version": "v1", "kind": kind},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "shop", "operation": operation, "object": obj,
                        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                        "dryRun": False}}


CNPG = {"pgkeel.io/inject": "true", "pgkeel.io/cnpg-cluster": "pg-main"}


def applied(pod: dict, answer: dict) -> dict:
    """The pod after the answer's patch (a copy of it when there is none)."""
    response = answer["response"]
    if "patch" not in response:
        return copy.deepcopy(pod)
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    return jsonpatch.apply_patch(pod, patch)


def sidecars(pod: dict) -> list[dict]:
    spec = pod["spec"]
    return [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "pgkeel"]


def validate_with_schemas(obj: dict, tmp_path: Path):
    """The object passes e2e/k8s/validate.mjs (kubernetes-models schemas plus API-server rules)."""
    path = tmp_path / "patched-pod.json"
    path.write_text(json.dumps(obj, indent=2))
    res = subprocess.run(["node", str(VALIDATOR), str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"validate.mjs rejects the patched pod:\n{res.stdout}\n{res.stderr}"


# ---------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def pki(tmp_path) -> Path:
    return make_pki(tmp_path / "pki", "pgkeel test CA")


@pytest.fixture
def webhook_factory(pgkeel_bin, tmp_path, pki):
    """webhook_factory(policy="Ignore") starts a webhook; each is stopped with SIGTERM at teardown and must
    exit 0 (a clean stop). A failing test's report includes their logs (captured teardown output)."""
    made: list[Webhook] = []

    def make(policy: str = "Ignore") -> Webhook:
        hook = Webhook(pgkeel_bin, tmp_path / f"webhook-{len(made)}", pki, policy)
        made.append(hook)
        return hook.start(pki / "ca.pem")

    yield make
    codes = [hook.stop() for hook in made]
    for i, hook in enumerate(made):  # pytest shows this only for a failing test
        print(f"--- webhook #{i} log ({hook.log_path}):\n{hook.log()}")
    assert codes == [0] * len(made), f"webhook exit codes after SIGTERM: {codes}"


@pytest.fixture
def webhook(webhook_factory) -> Webhook:
    return webhook_factory()


# ---------------------------------------------------------------------------------------------------------
# Tests


def test_annotated_pod_gets_exactly_one_sidecar(webhook, pki, tmp_path):
    """An annotated pod comes back allowed with a JSONPatch that, applied with jsonpatch, gives exactly one
    `pgkeel` native sidecar at initContainers[0] with the spec's fields and the copied token mount, and the
    status annotation; the patched pod passes the Kubernetes schemas; admitting it again adds nothing."""
    ca = pki / "ca.pem"
    pod = app_pod(CNPG)
    status, answer = mutate(webhook, ca, review_for(pod))
    assert status == 200, answer
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == UID and answer["response"]["allowed"] is True
    patched = applied(pod, answer)

    assert len(sidecars(patched)) == 1, patched["spec"]
    sidecar = patched["spec"]["initContainers"][0]
    assert sidecar["name"] == "pgkeel"
    assert sidecar["image"] == "ghcr.io/pgkeel/pgkeel:0.1.0"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9432}
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 9432}
    assert sidecar["lifecycle"]["preStop"]["exec"]["command"] == [
        "/usr/local/bin/pgkeel", "drain", "--admin", "127.0.0.1:9432", "--timeout", "25s"]
    args = sidecar["args"]
    assert args[:6] == ["--listen-primary", "127.0.0.1:6432", "--listen-replica", "127.0.0.1:6433",
                        "--admin-listen", "0.0.0.0:9432"]
    joined = " ".join(args)
    assert "--probe-interval 1s --log-format json" in joined
    assert "--source cnpg --kubernetes-cluster pg-main --kubernetes-namespace shop" in joined
    assert sidecar["volumeMounts"] == [{"name": "kube-api-access-x7k2p", "readOnly": True, "mountPath": TOKEN_PATH}]
    assert sidecar["securityContext"]["runAsUser"] == 65532
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert patched["metadata"]["annotations"]["pgkeel.io/status"] == "injected"
    assert patched["spec"]["containers"] == pod["spec"]["containers"]
    validate_with_schemas(patched, tmp_path)

    status, again = mutate(webhook, ca, review_for(patched))
    assert status == 200 and again["response"]["allowed"] is True
    assert "patch" not in again["response"], again
    assert "pod shop/shop-7d9f8b6c5d-x2x9z: pgkeel sidecar injected" in webhook.log()


def test_pods_that_need_nothing_pass_untouched(webhook, pki):
    """A plain pod, one annotated with another value than "true", one that already has the sidecar (as an
    init container, or the status annotation), an UPDATE and a non-Pod kind: allowed, no patch, no warning."""
    ca = pki / "ca.pem"
    with_sidecar = app_pod(CNPG)
    with_sidecar["spec"]["initContainers"] = [{"name": "pgkeel", "image": "ghcr.io/pgkeel/pgkeel:0.0.9"}]
    reviews = [review_for(app_pod(None)), review_for(app_pod({**CNPG, "pgkeel.io/inject": "yes"})),
               review_for(with_sidecar), review_for(app_pod({**CNPG, "pgkeel.io/status": "injected"})),
               review_for(app_pod(CNPG), operation="UPDATE"),
               review_for({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
                          kind="Deployment")]
    for review in reviews:
        status, answer = mutate(webhook, ca, review)
        assert status == 200, answer
        response = answer["response"]
        assert response["uid"] == UID and response["allowed"] is True, answer
        assert "patch" not in response and "warnings" not in response, (review["request"]["object"], answer)


def test_malformed_requests_get_400_and_the_server_carries_on(webhook, pki):
    """A body that is not JSON, JSON that is no AdmissionReview, a review without a uid, and one whose uid can
    be read but whose object is missing: HTTP 400 with a JSON explanation (an AdmissionReview with
    allowed=false for the last). A body over 4 MiB gets 413, a client that connects and says nothing holds
    nothing up, and a good request afterwards is answered."""
    ca = pki / "ca.pem"
    no_uid = review_for(app_pod(CNPG))
    del no_uid["request"]["uid"]
    no_object = review_for(app_pod(CNPG))
    del no_object["request"]["object"]
    for body, expected in [(b"this is not json", "not JSON"),
                           (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "no request"),
                           (json.dumps(no_uid).encode(), "request.uid")]:
        status, answer = mutate(webhook, ca, body)
        assert status == 400, answer
        assert answer["code"] == 400 and expected in answer["message"], answer
    status, answer = mutate(webhook, ca, no_object)
    assert status == 400
    assert answer["response"]["uid"] == UID and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400

    status, _ = request(webhook.port, ca, "POST", "/mutate", b" " * (5 * 1024 * 1024))
    assert status == 413
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5):  # silent client, no handshake
        status, answer = mutate(webhook, ca, review_for(app_pod(CNPG)))
        assert status == 200 and "patch" in answer["response"]
    assert webhook.proc.poll() is None


def test_bad_annotations_fail_closed_or_open(webhook_factory, pki):
    """Two source annotations: the Fail webhook refuses the pod (allowed=false, code 400, message naming the
    annotations); the Ignore webhook admits it unchanged with that message as a warning. Both log it. An
    unknown pgkeel.io/config.* key is treated the same way."""
    ca = pki / "ca.pem"
    fail, ignore = webhook_factory("Fail"), webhook_factory("Ignore")
    two = {**CNPG, "pgkeel.io/candidates": "10.0.0.5:5432"}
    bad_key = {**CNPG, "pgkeel.io/config.probe_intervall": "1s"}
    for annotations, expected in [(two, "pgkeel.io/candidates and pgkeel.io/cnpg-cluster each name a source"),
                                  (bad_key, "pgkeel.io/config.probe_intervall: unknown pgkeel key")]:
        status, refused = mutate(fail, ca, review_for(app_pod(annotations)))
        assert status == 200
        response = refused["response"]
        assert response["allowed"] is False and response["status"]["code"] == 400, refused
        assert expected in response["status"]["message"], refused
        assert "patch" not in response

        status, admitted = mutate(ignore, ca, review_for(app_pod(annotations)))
        response = admitted["response"]
        assert status == 200 and response["allowed"] is True and "patch" not in response, admitted
        assert len(response["warnings"]) == 1 and expected in response["warnings"][0], admitted
        assert expected in fail.log() and expected in ignore.log()


def test_certificate_renewal_without_restart(webhook, pki, tmp_path):
    """The certificate and key files are replaced by a pair from a different CA (as cert-manager renews them):
    a new connection verifying with the new CA succeeds, the old CA no longer verifies, and the process is the
    same one that started."""
    pid = webhook.proc.pid
    renewed = make_pki(tmp_path / "pki-renewed", "pgkeel renewed CA")
    for name, target in [("tls.key", webhook.key), ("tls.crt", webhook.cert)]:
        staged = target.with_suffix(".new")
        staged.write_bytes((renewed / name).read_bytes())
        os.replace(staged, target)  # atomic, like the kubelet's symlink swap

    def served_by_new_ca():
        return request(webhook.port, renewed / "ca.pem", "GET", "/healthz")[0] == 200

    wait_until(served_by_new_ca, timeout=10, what="the renewed certificate")
    status, answer = mutate(webhook, renewed / "ca.pem", review_for(app_pod(CNPG)))
    assert status == 200 and "patch" in answer["response"]
    with pytest.raises(ssl.SSLCertVerificationError):
        request(webhook.port, pki / "ca.pem", "GET", "/healthz")
    assert webhook.proc.pid == pid and webhook.proc.poll() is None
    assert "TLS certificate reloaded" in webhook.log()


def test_check_flag_and_bad_config(pgkeel_bin, tmp_path):
    """--check prints "sidecar config OK" for a good file (exit 0) and every problem with key and line for a
    bad one (exit 1); serving with a bad file refuses to start."""
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_CONFIG.format(policy="Fail"))
    res = subprocess.run([pgkeel_bin, "inject-webhook", "--check", "--sidecar-config", str(good)],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 0 and res.stdout == "sidecar config OK\n", res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("image: pgkeel:1\nimagePullPolicy: Sometimes\nconfig:\n  probe_interval: 5\n")
    res = subprocess.run([pgkeel_bin, "inject-webhook", "--check", "--sidecar-config", str(bad)],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert f"{bad}:2: key 'imagePullPolicy'" in res.stderr, res.stderr
    assert f"{bad}:4: key 'config.probe_interval': needs a unit" in res.stderr, res.stderr
    pki = make_pki(tmp_path / "pki", "ca")
    res = subprocess.run([pgkeel_bin, "inject-webhook", "--listen", f"127.0.0.1:{free_port()}", "--tls-cert",
                          str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key"), "--sidecar-config", str(bad)],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 1 and "imagePullPolicy" in res.stderr, res.stderr


def test_sigterm_drains_before_stopping(pgkeel_bin, pki, tmp_path):
    """With --drain-delay, SIGTERM makes /readyz answer 503 while /mutate still injects (the Service has not
    dropped the endpoint yet); a second SIGTERM stops it at once, exit 0."""
    hook = Webhook(pgkeel_bin, tmp_path / "draining", pki)
    hook.cmd[hook.cmd.index("--drain-delay") + 1] = "60s"
    ca = pki / "ca.pem"
    hook.start(ca)
    assert request(hook.port, ca, "GET", "/readyz") == (200, b"ready\n")
    hook.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: request(hook.port, ca, "GET", "/readyz")[0] == 503, timeout=5, what="/readyz 503")
    pod = app_pod(CNPG)
    status, answer = mutate(hook, ca, review_for(pod))
    assert status == 200 and len(sidecars(applied(pod, answer))) == 1
    assert hook.proc.poll() is None
    hook.proc.send_signal(signal.SIGTERM)
    assert hook.proc.wait(timeout=10) == 0, hook.log()
