#!/usr/bin/env python3
"""A Kubernetes API server stand-in for tests (standard library only): discovery, CRUD with status subresources,
list and watch with selectors and bookmarks, 410s and failures on demand, bearer tokens, TLS.

It serves the kinds pgkeel's discovery reads (pods, configmaps, endpoints, secrets, coordination.k8s.io leases,
CloudNativePG `clusters` and Zalando `postgresqls`) and the kinds pgkeel's Helm chart and manifests create
(`RESOURCES`: serviceaccounts, services, deployments, PDBs, HPAs, RBAC, webhook configurations, Prometheus
monitors, cert-manager certificates and issuers, namespaces; cluster-scoped ones at /apis/<g>/<v>/<plural>/<name>,
namespaced ones with all-namespaces collections too), well enough for the real kubectl (v1.32: get, apply,
apply --server-side, delete...) and for pgkeel's own list/watch client. In-process, from pytest fixtures:

    srv = K8sApiServer(port=0, token_file=None, tls_cert=None, tls_key=None, bookmark_interval=1.0).start()
    srv.url; srv.port; srv.write_kubeconfig(path, namespace="db", use_token_file=False)
    srv.load_file(".../cnpg-pods-list.json"); srv.apply(obj); srv.get("pods", "pg-main-1", "db")
    srv.list("pods", "db", label_selector="role=primary"); srv.resource_version
    srv.patch("pods", "pg-main-1", {"metadata": {"labels": {"role": "replica"}}}, "db")
    srv.patch_status("clusters", "pg-main", {"currentPrimary": "pg-main-2"}, "db"); srv.delete("pods", n, "db")
    srv.expire(close_watches=False); srv.close_watches(); srv.fail_next(2, 429, retry_after=1, match="watch=")
    srv.requests; srv.clear_requests(); srv.watch_count; srv.wait_for_watches(1); srv.stop()

Command line (prints {"port": P, "url": U} as one JSON line, then serves until SIGTERM or SIGINT):

    python3 e2e/k8s_apiserver.py [--host 127.0.0.1] [--port 0] [--port-file F] [--kubeconfig F] [--namespace NS]
        [--token-file F] [--tls-cert C --tls-key K] [--bookmark-interval S] [--watch-timeout S] [--load FILE]...
        [--verbose]

Test controls over HTTP, for programs that run the command line (no token needed, never failed on purpose):

    POST /_test/expire[?close=1]   every RV older than the current one is "too old" (close=1 also ends open
                                   watches with an ERROR 410 event); answers {"resourceVersion": RV}
    POST /_test/close-watches      ends every open watch stream cleanly
    POST /_test/fail               {"count": N, "code": 500, "retryAfter": S, "match": "substring"}: the next
                                   N API requests whose "METHOD /path?query" contains match get that status
    POST /_test/load               an object or a List, stored as by apply()
    GET  /_test/requests           the API requests seen so far (DELETE clears them); GET /_test/state

Watches behave as the apiserver's watch cache does: HTTP 200, chunked, one JSON event per line; without an RV
(or "0") synthetic ADDED events first; from an RV, the changes after it (the whole history is kept until
expire()); label changes across the selector become ADDED / DELETED; BOOKMARKs every bookmark_interval when
allowed; a clean end after timeoutSeconds; from an expired RV one ERROR 410 event and the end.

Simpler than the real server, on purpose:
* every write is admitted: no RBAC, schema validation, defaulting or admission (a Service gets no clusterIP; the
  only changes made are a Secret's stringData moving into data, and a new Pod's or Namespace's status);
* an object may be written in any namespace; a namespace that holds objects reads as existing (GET) even if no
  Namespace was created for it (a write to it then stores it); deleting a Namespace deletes nothing else;
* a LIST (every page of it, too) reads the current state; `resourceVersion` on a LIST is ignored;
* a strategic merge patch is applied as a JSON merge patch: **lists are replaced, never merged by key**,
  and the `$setElementOrder`/`$retainKeys`/`$deleteFromPrimitiveList` directives are dropped
  (`$patch: replace|delete` on a map is honoured). Custom resources refuse it with 415, as for real;
* server-side apply merges the applied object into the stored one: no field ownership, so no conflicts,
  and a field left out of the applied object is not removed;
* a DELETE removes the object at once (no graceful deletion, finalizers or garbage collection);
* an HTTP create drops `status` of kinds with a status subresource, as the real server does (a Pod gets
  `{"phase": "Pending"}`); the in-process apply()/load_file() keep it, standing in for the operator or the
  kubelet that writes it. A status write changes nothing but status (a real pods/status write may also
  change labels and annotations);
* no Table answers: human-readable `kubectl get` (and `get -w`) falls back to NAME and AGE columns;
* OpenAPI: a v3 document that only says each kind's PATCH takes `fieldValidation` (so `kubectl apply` and
  `create -f` leave validation to the server, which accepts everything) and an empty v2 document (so the
  client-side validation kubectl still does for a `kind: List` file finds no schema to check). kubectl then
  takes patch strategies from its compiled-in types: strategic for built-in kinds, merge for the others;
* JSON bodies only: kubectl's typed commands (`create configmap`, `create secret`...) send protobuf and get a
  415 (use `kubectl apply -f` or `create -f`).

The stand-in is four modules, run by path with any python3 (the others are imported from this file's directory):
`k8s_resources.py` (the kinds served, discovery and OpenAPI documents, Status errors), `k8s_store.py` (the object
store, its event history, selectors, patches), `k8s_http.py` (the request handler, watch streams, the HTTP server)
and this file (the K8sApiServer object, its test controls, the command line). The names tests use are importable
from here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass

from k8s_http import ApiHTTPServer, Watch, bookmark_object, decode_body
from k8s_resources import (RESOURCES, ApiError, ResourceType, discovery, find_resource, resource_for,
                           status_object)
from k8s_store import (Event, Store, implicit_namespace, json_patch, labels_match, make_matcher, merge_patch,
                       parse_field_selector, parse_label_selector, strategic_merge_patch)

# Re-exported: tests and fixtures import these from here.
__all__ = ["K8sApiServer", "main", "RESOURCES", "ApiError", "ResourceType", "find_resource", "resource_for",
           "status_object", "Event", "Store", "implicit_namespace", "json_patch", "labels_match", "make_matcher",
           "merge_patch", "parse_field_selector", "parse_label_selector", "strategic_merge_patch",
           "bookmark_object"]


@dataclass
class _Failure:
    count: int
    code: int
    retry_after: int | None = None
    match: str | None = None
    message: str | None = None


# ---------------------------------------------------------------------------------------------------------
# The server object


class K8sApiServer:
    """The stand-in API server, run in a background thread. See the module docstring for the API."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token_file: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, bookmark_interval: float = 1.0,
                 watch_timeout: float = 1800.0, verbose: bool = False):
        self.host, self._port = host, port
        self.token_file = token_file
        self.tls_cert = tls_cert
        self.bookmark_interval = bookmark_interval  # seconds between BOOKMARKs on watches that allow them
        self.watch_timeout = watch_timeout          # a watch without timeoutSeconds ends after this
        self.verbose = verbose
        self.store = Store()
        self._tls = None
        if tls_cert:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_cert, tls_key)
        self._lock = threading.Lock()               # guards the request log, failures, connections
        self._requests: list[dict] = []
        self._failures: list[_Failure] = []
        self._connections: set = set()
        self._watches: set[Watch] = set()           # guarded by store.cond
        self._stopping = False
        self._httpd: ApiHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle

    def start(self) -> "K8sApiServer":
        self._httpd = ApiHTTPServer((self.host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="k8s-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection (clients see the server go away, as in a crash)."""
        if self._httpd is None:
            return
        with self.store.cond:
            self._stopping = True
            self.store.cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}:{self._port}"

    def write_kubeconfig(self, path: str, namespace: str = "default", *, ca_file: str | None = None,
                         token: str | None = None, use_token_file: bool = False) -> str:
        """A kubeconfig for kubectl (and pgkeel) with one context pointing here. The user carries `token`, or
        the token file's contents, or with use_token_file a `tokenFile:` reference (re-read by clients)."""
        q = json.dumps  # a JSON string is a valid YAML scalar
        cluster = [f"    server: {q(self.url)}"]
        if self._tls:
            cluster.append(f"    certificate-authority: {q(os.path.abspath(ca_file or self.tls_cert))}")
        user = "  user: {}"
        if token is None and self.token_file and not use_token_file:
            token = self._read_token()
        if token is not None:
            user = f"  user:\n    token: {q(token)}"
        elif self.token_file:
            user = f"  user:\n    tokenFile: {q(os.path.abspath(self.token_file))}"
        text = "\n".join(["apiVersion: v1", "kind: Config", "clusters:", "- name: test", "  cluster:", *cluster,
                          "users:", "- name: test", user, "contexts:", "- name: test", "  context:",
                          "    cluster: test", "    user: test", f"    namespace: {q(namespace)}",
                          "current-context: test", ""])
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- in-process helpers (the same store the HTTP API uses; every write is seen by watches)

    def apply(self, obj: dict, namespace: str | None = None) -> dict:
        """Create or replace a whole object, status included (as an operator writing both would). Its
        resourceVersion and uid are replaced by new ones. Returns the stored object."""
        rt = resource_for(obj.get("apiVersion", ""), obj.get("kind", ""))
        md = obj.get("metadata", {})
        ns = (namespace or md.get("namespace") or "default") if rt.namespaced else ""
        fresh = copy.deepcopy(obj)
        fresh["metadata"] = {k: v for k, v in md.items() if k not in ("resourceVersion", "uid", "namespace")}
        if rt.namespaced:
            fresh["metadata"]["namespace"] = ns
        return self.store.update(rt, ns, md.get("name", ""), lambda _old: fresh, mode="seed",
                                 create=lambda: fresh)

    def load(self, obj: dict, namespace: str | None = None) -> list[dict]:
        """apply() an object, or every item of a List (`PodList` items get kind Pod and the list's apiVersion)."""
        if obj.get("kind", "").endswith("List") and "items" in obj:
            kind = obj["kind"][:-4]
            return [self.apply({"kind": kind, "apiVersion": obj["apiVersion"], **item}, namespace)
                    for item in obj["items"]]
        return [self.apply(obj, namespace)]

    def load_file(self, path: str, namespace: str | None = None) -> list[dict]:
        with open(path) as f:
            return self.load(json.load(f), namespace)

    def get(self, resource: str, name: str, namespace: str = "default") -> dict | None:
        try:
            return self.store.get(find_resource(resource), namespace, name)
        except ApiError:
            return None

    def list(self, resource: str, namespace: str | None = None, label_selector: str = "",
             field_selector: str = "") -> list[dict]:
        rt = find_resource(resource)
        return self.store.list(rt, namespace, make_matcher(rt, label_selector, field_selector))[0]

    def patch(self, resource: str, name: str, patch, namespace: str = "default", *,
              subresource: str | None = None, patch_type: str = "merge") -> dict:
        """Patch like the HTTP API (patch_type merge, strategic or json); subresource="status" changes only status."""
        fn = {"merge": merge_patch, "strategic": strategic_merge_patch, "json": json_patch}[patch_type]
        return self.store.update(find_resource(resource), namespace, name, lambda old: fn(old, patch),
                                 mode="status" if subresource == "status" else "main")

    def patch_status(self, resource: str, name: str, status: dict, namespace: str = "default") -> dict:
        """Merge-patch `status` into the object's status (the status subresource)."""
        return self.patch(resource, name, {"status": status}, namespace, subresource="status")

    def delete(self, resource: str, name: str, namespace: str = "default") -> dict | None:
        try:
            return self.store.delete(find_resource(resource), namespace, name)
        except ApiError:
            return None

    @property
    def resource_version(self) -> str:
        with self.store.cond:
            return str(self.store.rv)

    # -- test controls

    def expire(self, close_watches: bool = False) -> str:
        """Make every RV older than the current one too old: a watch from it gets an ERROR 410 event, a
        `continue` token from before gets HTTP 410. With close_watches, open watches end with an ERROR 410."""
        rv = self.store.expire()
        if close_watches:
            self._end_watches(status_object(410, "Expired", "The resourceVersion for the provided watch is "
                                                            "too old."))
        return str(rv)

    def close_watches(self) -> int:
        """End every open watch stream cleanly (as at timeoutSeconds); returns how many there were."""
        return self._end_watches("clean")

    def _end_watches(self, how) -> int:
        with self.store.cond:
            for w in self._watches:
                w.end = how
            self.store.cond.notify_all()
            return len(self._watches)

    def fail_next(self, count: int, code: int = 500, *, retry_after: int | None = None,
                  match: str | None = None, message: str | None = None) -> None:
        """The next `count` API requests (those whose "METHOD /path?query" contains `match`) get `code` with a
        Status body (and Retry-After when given). Checked after the token."""
        with self._lock:
            self._failures.append(_Failure(count, code, retry_after, match, message))

    @property
    def requests(self) -> list[dict]:
        """API requests so far: {"method", "path" (with query), "authorization", "time"}."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def watch_count(self) -> int:
        with self.store.cond:
            return len(self._watches)

    def wait_for_watches(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` watch streams are open."""
        deadline = time.monotonic() + timeout
        while self.watch_count < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # -- used by the handler

    def _connections_changed(self, conn, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(conn)

    def _read_token(self) -> str | None:
        try:
            with open(self.token_file) as f:
                return f.read().strip()
        except OSError:
            return None  # in the middle of a rotation: nobody gets in

    def _admit_request(self, method: str, path: str, headers) -> None:
        """Log the request, then check the token (re-read every time) and the failures asked for."""
        auth = headers.get("Authorization")
        with self._lock:
            self._requests.append({"method": method, "path": path, "authorization": auth, "time": time.time()})
        token = self._read_token() if self.token_file else None
        if self.token_file and (token is None or auth != f"Bearer {token}"):
            raise ApiError(401, "Unauthorized")
        with self._lock:
            failure = next((f for f in self._failures if f.count > 0 and (not f.match or f.match in
                                                                          f"{method} {path}")), None)
            if failure is None:
                return
            failure.count -= 1
        headers_out, details = {}, None
        if failure.retry_after is not None:
            headers_out["Retry-After"] = failure.retry_after
            details = {"retryAfterSeconds": failure.retry_after}
        raise ApiError(failure.code, failure.message or f"injected failure {failure.code}", details=details,
                       headers=headers_out)

    def _control(self, method: str, path: str, query: dict, body: bytes) -> dict:
        if (method, path) == ("POST", "/_test/expire"):
            return {"resourceVersion": self.expire(close_watches=query.get("close") in ("1", "true"))}
        if (method, path) == ("POST", "/_test/close-watches"):
            return {"closed": self.close_watches()}
        if (method, path) == ("POST", "/_test/fail"):
            spec = decode_body(body) or {}
            self.fail_next(int(spec.get("count", 1)), int(spec.get("code", 500)),
                           retry_after=spec.get("retryAfter"), match=spec.get("match"),
                           message=spec.get("message"))
            return {}
        if (method, path) == ("POST", "/_test/load"):
            try:
                return {"items": self.load(decode_body(body), query.get("namespace"))}
            except ValueError as err:
                raise ApiError(400, str(err)) from None
        if (method, path) == ("GET", "/_test/requests"):
            return {"requests": self.requests}
        if (method, path) == ("DELETE", "/_test/requests"):
            self.clear_requests()
            return {}
        if (method, path) == ("GET", "/_test/state"):
            with self.store.cond:
                return {"resourceVersion": str(self.store.rv), "compacted": str(self.store.compacted),
                        "watches": len(self._watches)}
        raise ApiError(404, f"no test control {method} {path}")

    def _discovery(self, path: str, host: str) -> dict | None:
        """The discovery or OpenAPI document at `path`, or None (see k8s_resources.discovery)."""
        return discovery(path, host)


# ---------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Kubernetes API server stand-in for tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    ap.add_argument("--namespace", default="default", help="the kubeconfig context's namespace")
    ap.add_argument("--token-file", help="require Authorization: Bearer <this file's contents> (re-read per request)")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) ...")
    ap.add_argument("--tls-key", help="... and this key")
    ap.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between watch BOOKMARKs")
    ap.add_argument("--watch-timeout", type=float, default=1800.0, help="end watches without timeoutSeconds after this")
    ap.add_argument("--load", action="append", default=[], help="a JSON object or List to store at start")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    srv = K8sApiServer(args.host, args.port, token_file=args.token_file, tls_cert=args.tls_cert,
                       tls_key=args.tls_key, bookmark_interval=args.bookmark_interval,
                       watch_timeout=args.watch_timeout, verbose=args.verbose)
    for path in args.load:
        srv.load_file(path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before serving: a caller may stop us at once
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    srv.start()
    if args.kubeconfig:
        srv.write_kubeconfig(args.kubeconfig, args.namespace)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{srv.port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)  # readers never see a half-written file
    print(json.dumps({"port": srv.port, "url": srv.url}), flush=True)
    stop.wait()
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
