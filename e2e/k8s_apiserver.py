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

The file is longer than ~600 lines because it is one self-contained program, run by path with any python3.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------------------------------------
# The resources served


@dataclass(frozen=True)
class ResourceType:
    """One resource: where it lives in the API and how the server treats it."""
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    short_names: tuple[str, ...] = ()
    status: bool = False          # has a /status subresource: main writes keep status, status writes keep the rest
    custom: bool = False          # a custom resource: list items keep kind/apiVersion, metadata.generation is kept
    fields: tuple[str, ...] = ()  # field-selector keys besides metadata.name and metadata.namespace
    namespaced: bool = True       # False: cluster-scoped, at /apis/<group>/<version>/<plural>/<name>
    generation: bool = False      # metadata.generation counts spec changes (always for custom resources)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name in error messages: `pods`, `clusters.postgresql.cnpg.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")

R, RBAC, ADMISSION = ResourceType, "rbac.authorization.k8s.io", "admissionregistration.k8s.io"
RESOURCES = (
    R("", "v1", "pods", "Pod", "pod", ("po",), status=True, fields=POD_FIELDS),
    R("", "v1", "configmaps", "ConfigMap", "configmap", ("cm",)),
    R("", "v1", "endpoints", "Endpoints", "endpoints", ("ep",)),
    R("", "v1", "secrets", "Secret", "secret", fields=("type",)),
    R("", "v1", "serviceaccounts", "ServiceAccount", "serviceaccount", ("sa",)),
    R("", "v1", "services", "Service", "service", ("svc",), status=True),
    R("", "v1", "namespaces", "Namespace", "namespace", ("ns",), status=True, fields=("status.phase",),
      namespaced=False),
    R("apps", "v1", "deployments", "Deployment", "deployment", ("deploy",), status=True, generation=True),
    R("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", "poddisruptionbudget", ("pdb",), status=True,
      generation=True),
    R("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", "horizontalpodautoscaler",
      ("hpa",), status=True),
    R("coordination.k8s.io", "v1", "leases", "Lease", "lease"),
    R(RBAC, "v1", "roles", "Role", "role"),
    R(RBAC, "v1", "rolebindings", "RoleBinding", "rolebinding"),
    R(RBAC, "v1", "clusterroles", "ClusterRole", "clusterrole", namespaced=False),
    R(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", "clusterrolebinding", namespaced=False),
    R(ADMISSION, "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
      "mutatingwebhookconfiguration", namespaced=False, generation=True),
    R(ADMISSION, "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration",
      "validatingwebhookconfiguration", namespaced=False, generation=True),
    R("postgresql.cnpg.io", "v1", "clusters", "Cluster", "cluster", status=True, custom=True),
    R("acid.zalan.do", "v1", "postgresqls", "postgresql", "postgresql", ("pg",), status=True, custom=True),
    R("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", "servicemonitor", ("smon",), custom=True),
    R("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", "podmonitor", ("pmon",), custom=True),
    R("cert-manager.io", "v1", "certificates", "Certificate", "certificate", ("cert", "certs"), status=True,
      custom=True),
    R("cert-manager.io", "v1", "issuers", "Issuer", "issuer", status=True, custom=True),
    R("cert-manager.io", "v1", "clusterissuers", "ClusterIssuer", "clusterissuer", status=True, custom=True,
      namespaced=False),
)

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def find_resource(name: str) -> ResourceType:
    """A resource by plural, singular, short name, kind or `plural.group` (ValueError if unknown)."""
    low = name.lower()
    for rt in RESOURCES:
        if low in (rt.plural, rt.singular, rt.kind.lower(), rt.qualified) or low in rt.short_names:
            return rt
    raise ValueError(f"unknown resource {name!r}")


def resource_for(api_version: str, kind: str) -> ResourceType:
    for rt in RESOURCES:
        if rt.api_version == api_version and rt.kind == kind:
            return rt
    raise ValueError(f"unknown kind {kind!r} in {api_version!r}")


# ---------------------------------------------------------------------------------------------------------
# Errors as Status objects


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason}
    if details:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """An error answer: HTTP `code` with a Status body (and extra headers such as Retry-After)."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.reason = reason or REASONS.get(code, "Unknown")
        self.headers = headers or {}

    def status(self) -> dict:
        return status_object(self.code, self.reason, self.message, self.details)


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found',
                    details={"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    details={"name": name, "group": rt.group, "kind": rt.plural})


# ---------------------------------------------------------------------------------------------------------
# Label and field selectors


_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"
_LABEL_REQ = re.compile(
    rf"^\s*(?:!\s*(?P<absent>{_KEY})"
    rf"|(?P<skey>{_KEY})\s+(?P<setop>in|notin)\s*\((?P<set>[^()]*)\)"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<value>{_VALUE})|(?P<cmp>[<>])\s*(?P<num>-?\d+))?)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b` is two requirements)."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts if text.strip() else []


def parse_label_selector(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Requirements (key, op, values), op one of exists ! = != in notin > <; ValueError on bad syntax."""
    reqs = []
    for part in _split_top(text):
        m = _LABEL_REQ.match(part)
        if not m:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        if m["absent"]:
            reqs.append((m["absent"], "!", ()))
        elif m["skey"]:
            values = tuple(v.strip() for v in m["set"].split(",") if v.strip())
            reqs.append((m["skey"], m["setop"], values))
        elif m["op"]:
            reqs.append((m["key"], "!=" if m["op"] == "!=" else "=", (m["value"],)))
        elif m["cmp"]:
            reqs.append((m["key"], m["cmp"], (m["num"],)))
        else:
            reqs.append((m["key"], "exists", ()))
    return reqs


def labels_match(reqs, labels: dict) -> bool:
    for key, op, values in reqs:
        have = labels.get(key)
        if op == "exists":
            ok = key in labels
        elif op == "!":
            ok = key not in labels
        elif op == "=":
            ok = have == values[0]
        elif op == "!=":
            ok = have != values[0]          # an object without the key matches, as in Kubernetes
        elif op == "in":
            ok = have in values
        elif op == "notin":
            ok = have not in values
        else:
            ok = have is not None and re.fullmatch(r"-?\d+", have) is not None and (
                int(have) > int(values[0]) if op == ">" else int(have) < int(values[0]))
        if not ok:
            return False
    return True


def parse_field_selector(text: str, rt: ResourceType) -> list[tuple[str, bool, str]]:
    """Requirements (path, equal, value); ValueError for bad syntax or a field the kind does not support."""
    reqs = []
    for part in _split_top(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ValueError(f"invalid selector: {part.strip()!r}")
        if m[1] not in ("metadata.name", "metadata.namespace") + rt.fields:
            raise ValueError(f"field label not supported: {m[1]}")
        reqs.append((m[1], m[2] != "!=", m[3]))
    return reqs


def field_value(obj: dict, path: str) -> str:
    """An object's field as the field selector compares it: a string, "" when absent, true/false for bools."""
    cur = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def make_matcher(rt: ResourceType, label_selector: str = "", field_selector: str = ""):
    """A predicate obj -> bool for both selectors (ValueError on a bad selector)."""
    lreqs = parse_label_selector(label_selector or "")
    freqs = parse_field_selector(field_selector or "", rt)

    def match(obj: dict) -> bool:
        if not labels_match(lreqs, obj.get("metadata", {}).get("labels") or {}):
            return False
        return all((field_value(obj, path) == value) == equal for path, equal, value in freqs)
    return match


# ---------------------------------------------------------------------------------------------------------
# Patches


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target, patch):
    """Strategic merge patch, simplified: a merge patch that honours `$patch: replace|delete` on maps and
    drops the other `$` directives. Lists are replaced whole (the real one merges some of them by key)."""
    if isinstance(patch, list):
        return [strategic_merge_patch(None, v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    clean = {k: v for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = {} if directive == "replace" or not isinstance(target, dict) else copy.deepcopy(target)
    for key, value in clean.items():
        merged = None if value is None else strategic_merge_patch(result.get(key), value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _pointer_parent(doc, tokens: list[str]):
    cur = doc
    for tok in tokens[:-1]:
        try:
            cur = cur[int(tok)] if isinstance(cur, list) else cur[tok]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, f"JSON patch path /{'/'.join(tokens)} does not exist") from None
    return cur, tokens[-1]


def _pointer_get(doc, tokens):
    if not tokens:
        return doc
    parent, last = _pointer_parent(doc, tokens)
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise ApiError(422, f"JSON patch path /{'/'.join(tokens)} does not exist") from None


def _pointer_remove(doc, tokens):
    _pointer_get(doc, tokens)  # raises when absent
    parent, last = _pointer_parent(doc, tokens)
    del parent[int(last) if isinstance(parent, list) else last]


def _pointer_add(doc, tokens, value):
    if not tokens:
        return value
    parent, last = _pointer_parent(doc, tokens)
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if not 0 <= index <= len(parent):
            raise ApiError(422, f"JSON patch index {last} out of range")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise ApiError(422, f"JSON patch path /{'/'.join(tokens)} does not exist")
    return doc


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise ApiError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_pointer_get(doc, source))
            if kind == "move":
                _pointer_remove(doc, source)
            doc = _pointer_add(doc, path, value)
        elif kind == "remove":
            _pointer_remove(doc, path)
        elif kind == "replace":
            _pointer_get(doc, path)
            if path:
                _pointer_remove(doc, path)
            doc = _pointer_add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "add":
            doc = _pointer_add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "test":
            if _pointer_get(doc, path) != op.get("value"):
                raise ApiError(422, f"JSON patch test failed at {op.get('path')}")
        else:
            raise ApiError(422, f"unknown JSON patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------------------------------------
# The object store: current objects, one global resourceVersion counter, and the history watches replay


def now_timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Event:
    """One committed change. `obj` has the new resourceVersion (for DELETED: the last state with it)."""
    rv: int
    rt: ResourceType
    namespace: str
    type: str
    obj: dict
    prev: dict | None


class Store:
    """Objects by (resource, namespace, name). Stored dicts are never changed after a commit, so events can
    share them. `cond` guards everything and is notified on every commit."""

    FIRST_RV = 100

    def __init__(self):
        self.cond = threading.Condition()
        self.rv = self.FIRST_RV
        self.compacted = self.FIRST_RV      # watches from an RV below this get 410
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.history: list[Event] = []      # in RV order; kept whole (expire() only moves `compacted`)
        self.history_rvs: list[int] = []

    @staticmethod
    def _key(rt, ns, name):
        return (rt.qualified, ns if rt.namespaced else "", name)

    def get(self, rt: ResourceType, ns: str, name: str) -> dict:
        """The object (a cluster-scoped kind ignores `ns`, here and in every method below)."""
        with self.cond:
            obj = self.objects.get(self._key(rt, ns, name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(self, rt: ResourceType, ns: str | None, match) -> tuple[list[dict], int]:
        """Matching objects ordered by (namespace, name), and the RV the list was read at."""
        ns = ns if rt.namespaced else None
        with self.cond:
            items = [copy.deepcopy(obj) for (q, ons, _), obj in self.objects.items()
                     if q == rt.qualified and ns in (None, ons) and match(obj)]
            rv = self.rv
        items.sort(key=_sort_key)
        return items, rv

    def _commit(self, rt: ResourceType, ns: str, etype: str, obj: dict, prev: dict | None) -> dict:
        ns = ns if rt.namespaced else ""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = self._key(rt, ns, obj["metadata"]["name"])
        if etype == "DELETED":
            del self.objects[key]
        else:
            self.objects[key] = obj
        self.history.append(Event(self.rv, rt, ns, etype, obj, prev))
        self.history_rvs.append(self.rv)
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def create(self, rt: ResourceType, ns: str, obj: dict, *, seed: bool = False, dry_run: bool = False) -> dict:
        """Store a new object. `seed` (in-process loads) keeps status, creationTimestamp and generation."""
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        _check_kind(rt, obj)
        if not rt.namespaced:
            ns = ""
            md.pop("namespace", None)   # the real server clears it too
        elif md.get("namespace") not in (None, "", ns):
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on "
                           "the request")
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        if not md.get("name"):
            raise ApiError(422, "metadata.name: Required value: name or generateName is required")
        if rt.namespaced:
            md["namespace"] = ns
        md["uid"] = str(uuid.uuid4())
        md.pop("resourceVersion", None)
        if not (seed and md.get("creationTimestamp")):
            md["creationTimestamp"] = now_timestamp()
        if (rt.custom or rt.generation) and not (seed and md.get("generation")):
            md["generation"] = 1
        if rt.status and not seed:
            obj.pop("status", None)
            if rt.kind in INITIAL_STATUS:
                obj["status"] = copy.deepcopy(INITIAL_STATUS[rt.kind])
        if rt.kind == "Namespace":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        _normalize(rt, obj)
        with self.cond:
            if self._key(rt, ns, md["name"]) in self.objects:
                raise ApiError(409, f'{rt.qualified} "{md["name"]}" already exists', "AlreadyExists",
                               {"name": md["name"], "group": rt.group, "kind": rt.plural})
            if dry_run:
                return obj
            return self._commit(rt, ns, "ADDED", obj, None)

    def update(self, rt: ResourceType, ns: str, name: str, change, *, mode: str = "main", dry_run: bool = False,
               create=None) -> dict:
        """Replace an object by change(copy of current) -> new object, atomically.

        mode "main": status is kept from the stored object (kinds with a status subresource); "status": only
        status is taken from the new object; "seed": everything is taken (in-process apply). When the object
        does not exist, create() gives the object to create (server-side apply), else 404.
        """
        with self.cond:
            old = self.objects.get(self._key(rt, ns, name))
            if old is None:
                if create is None:
                    raise not_found(rt, name)
                return self.create(rt, ns, create(), dry_run=dry_run, seed=mode == "seed")
            new = change(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise ApiError(400, "the object must be a JSON object")
            new_md = new.get("metadata") or {}
            if new_md.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
                raise conflict(rt, name)
            if new_md.get("name") not in (None, name):
                raise ApiError(400, f"the name of the object ({new_md.get('name')}) does not match the name on "
                               f"the URL ({name})")
            result = _admit_update(rt, old, new, mode)
            if result == old or dry_run:        # a no-op write changes nothing, not even the RV
                return copy.deepcopy(result)
            return self._commit(rt, ns, "MODIFIED", result, old)

    def delete(self, rt: ResourceType, ns: str, name: str, *, dry_run: bool = False,
               preconditions: dict | None = None) -> dict:
        with self.cond:
            old = self.objects.get(self._key(rt, ns, name))
            if old is None:
                raise not_found(rt, name)
            for key, value in (preconditions or {}).items():
                if value is not None and old["metadata"].get(key) != value:
                    raise ApiError(409, f"Precondition failed: {key} in precondition: {value}, {key} in "
                                   f"object meta: {old['metadata'].get(key)}",
                                   details={"name": name, "group": rt.group, "kind": rt.plural})
            gone = copy.deepcopy(old)
            if dry_run:
                return gone
            return self._commit(rt, ns, "DELETED", gone, old)

    def implicit_namespace(self, name: str) -> bool:
        """True when objects live in namespace `name` but no Namespace object was created for it."""
        with self.cond:
            return ("namespaces", "", name) not in self.objects and any(ns == name for _, ns, _ in self.objects)

    def events_after(self, rv: int) -> list[Event]:
        """History after `rv` (call with cond held)."""
        return self.history[bisect.bisect_right(self.history_rvs, rv):]

    def expire(self) -> int:
        with self.cond:
            self.compacted = self.rv
            return self.rv


def _check_kind(rt: ResourceType, obj: dict) -> None:
    if obj.get("kind", rt.kind) != rt.kind or obj.get("apiVersion", rt.api_version) != rt.api_version:
        raise ApiError(400, f"the API version in the data ({obj.get('apiVersion')}) and kind "
                       f"({obj.get('kind')}) do not match the resource {rt.qualified} ({rt.api_version})")
    obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _admit_update(rt: ResourceType, old: dict, new: dict, mode: str) -> dict:
    """The object an update stores: server-owned metadata from `old`, status or the rest by `mode`."""
    if mode == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = copy.deepcopy(new["status"])
        else:
            result.pop("status", None)
        return result
    _check_kind(rt, new)
    result = copy.deepcopy(new)
    if mode == "main" and rt.status:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    md, old_md = result.setdefault("metadata", {}), old["metadata"]
    if not rt.namespaced:
        md.pop("namespace", None)
    for key in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation"):
        if key in old_md:
            md[key] = old_md[key]
    _normalize(rt, result)
    if (rt.custom or rt.generation) and _spec_part(result) != _spec_part(old):
        md["generation"] = old_md.get("generation", 0) + 1
    return result


INITIAL_STATUS = {"Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"}}


def _normalize(rt: ResourceType, obj: dict) -> None:
    """What the real server changes in a written object: a Secret's stringData goes into data (base64)."""
    if rt.kind == "Secret" and isinstance(obj.get("stringData"), dict):
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _sort_key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return md.get("namespace", ""), md["name"]


def implicit_namespace(name: str) -> dict:
    """What a GET shows of a namespace that holds objects but was never created (a write to it stores this first)."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


# ---------------------------------------------------------------------------------------------------------
# HTTP


def _watch_event(etype: str, obj: dict) -> bytes:
    return (json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n").encode()


def bookmark_object(rt: ResourceType, rv: int, initial_events_end: bool = False) -> dict:
    """A BOOKMARK's object: only metadata.resourceVersion (built-in kinds show their Go zero values)."""
    md: dict = {"resourceVersion": str(rv)}
    if not rt.custom:
        md["creationTimestamp"] = None
    if initial_events_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}
    if rt.kind == "Pod":
        obj["spec"], obj["status"] = {"containers": None}, {}
    return obj


def _translate(ev: Event, rt: ResourceType, ns: str | None, match) -> tuple[str, dict] | None:
    """What a watch with this selector sees of an event: label changes across the selector become ADDED or
    DELETED (the previous content with the new RV), as in the apiserver's cache_watcher."""
    if ev.rt is not rt or ns not in (None, ev.namespace):
        return None
    old_ok = ev.prev is not None and match(ev.prev)
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if old_ok else None
    new_ok = match(ev.obj)
    if new_ok:
        return ("MODIFIED" if old_ok else "ADDED"), ev.obj
    if old_ok:
        prev = copy.deepcopy(ev.prev)
        prev["metadata"]["resourceVersion"] = str(ev.rv)
        return "DELETED", prev
    return None


@dataclass(eq=False)
class _Watch:
    """An open watch stream; a control request sets `end` ("clean" or a Status to send as ERROR)."""
    end: object = None


@dataclass
class _Failure:
    count: int
    code: int
    retry_after: int | None = None
    match: str | None = None
    message: str | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-apiserver-stand-in"
    timeout = 600  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait for the peer's delayed ACK

    def log_message(self, fmt, *args):
        if self.server.api.verbose:
            super().log_message(fmt, *args)

    def setup(self):
        super().setup()
        self.server.api._connections_changed(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.api._connections_changed(self.connection, False)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunks.append(self.rfile.read(size + 2)[:size])
                if size == 0:
                    return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
            if body and "protobuf" in self.headers.get("Content-Type", ""):
                # kubectl's typed commands (`create configmap`, `create secret`...) send protobuf bodies
                raise ApiError(415, "this Kubernetes API stand-in reads JSON bodies only, not protobuf")
            if url.path.startswith("/_test/"):
                return self._send_json(200, api._control(method, url.path, query, body))
            api._admit_request(method, self.path, self.headers)
            self._route(method, url.path, query, body)
        except ApiError as err:
            self._send_json(err.code, err.status(), err.headers)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # a bug here: answer 500 and show it rather than drop the connection
            traceback.print_exc()
            self.close_connection = True
            self._send_json(500, status_object(500, "InternalError", f"stand-in bug: {err!r}"))

    # -- the API

    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        api = self.server.api
        if method == "GET" and path == "/openapi/v2":
            # An empty protobuf Document: no schemas, so kubectl's client-side validation (which it still does
            # for a `kind: List` file) passes everything.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        doc = api._discovery(path.rstrip("/") or "/", self.headers.get("Host", ""))
        if doc is not None and method == "GET":
            return self._send_json(200, doc)
        target = _parse_resource_path(path)
        if target is None:
            raise ApiError(404, "the server could not find the requested resource")
        rt, ns, name, sub, watch = target
        if method == "GET" and (watch or query.get("watch") in ("1", "true")):
            if name:  # the old single-object form, as a name field selector
                query["fieldSelector"] = ",".join(filter(None, [query.get("fieldSelector"),
                                                                f"metadata.name={name}"]))
            return self._watch(rt, ns, query)
        if watch:
            raise ApiError(405, "only GET may watch")
        dry_run = "dryRun" in query
        implicit = rt.kind == "Namespace" and name and not sub and api.store.implicit_namespace(name)
        if method == "GET" and name:
            return self._send_json(200, implicit_namespace(name) if implicit else api.store.get(rt, ns, name))
        if method == "GET":
            return self._list(rt, ns, query)
        if method == "POST" and not name:
            obj = _decode(body)
            ns = (ns or (obj.get("metadata") or {}).get("namespace") or "default") if rt.namespaced else ""
            return self._send_json(201, api.store.create(rt, ns, obj, dry_run=dry_run))
        if method == "DELETE" and not name:
            return self._delete_collection(rt, ns, query, dry_run)
        if not name:
            raise ApiError(405, f"{method} is not supported on a collection")
        if method == "PUT":
            obj = _decode(body)
            return self._send_json(200, api.store.update(rt, ns, name, lambda _old: obj, dry_run=dry_run,
                                                         mode="status" if sub else "main",
                                                         create=(lambda: obj) if implicit else None))
        if method == "PATCH":
            return self._patch(rt, ns, name, sub, body, dry_run, implicit)
        if method == "DELETE":
            options = _decode(body) if body.strip() else {}
            result = api.store.delete(rt, ns, name, dry_run=dry_run,
                                      preconditions=options.get("preconditions"))
            return self._send_json(200, result)
        raise ApiError(405, f"{method} is not supported")

    def _matcher(self, rt: ResourceType, query: dict):
        try:
            return make_matcher(rt, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        except ValueError as err:
            raise ApiError(400, str(err)) from None

    def _list(self, rt: ResourceType, ns: str | None, query: dict) -> None:
        store = self.server.api.store
        items, rv = store.list(rt, ns, self._matcher(rt, query))
        start = None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"] + "=="))
                list_rv, start = int(token["rv"]), tuple(token["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid") from None
            if list_rv < store.compacted:
                raise ApiError(410, "The provided continue parameter is too old to display a consistent list "
                               "result. You can start a new list without the continue parameter, or use the "
                               "continue token in this response to retrieve the remainder of the results. "
                               "Continuing with the provided token results in an inconsistent list - objects "
                               "that were created, modified, or deleted between the time the first chunk was "
                               "returned and now may show up in the list.")
            rv = list_rv
            items = [o for o in items if _sort_key(o) > start]
        metadata: dict = {"resourceVersion": str(rv)}
        limit = int(_number(query, "limit", 0))
        if 0 < limit < len(items):
            items, rest = items[:limit], len(items) - limit
            last = _sort_key(items[-1])
            token = json.dumps({"rv": rv, "start": last}, separators=(",", ":")).encode()
            metadata["continue"] = base64.urlsafe_b64encode(token).decode().rstrip("=")
            metadata["remainingItemCount"] = rest
        if not rt.custom:
            for obj in items:
                obj.pop("kind", None)
                obj.pop("apiVersion", None)
        self._send_json(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": metadata,
                              "items": items})

    def _patch(self, rt: ResourceType, ns: str, name: str, sub: str | None, body: bytes, dry_run: bool,
               implicit: bool = False) -> None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        mode = "status" if sub else "main"
        create = None
        if ctype == "application/apply-patch+yaml":
            patch = _decode(body, yaml_ok=True)
            apply = merge_patch
            create = (lambda: patch) if not sub else None
        elif ctype == "application/merge-patch+json":
            patch, apply = _decode(body), merge_patch
        elif ctype == "application/strategic-merge-patch+json" and not rt.custom:
            patch, apply = _decode(body), strategic_merge_patch
        elif ctype == "application/json-patch+json":
            patch, apply = _decode(body), json_patch
        else:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types "
                           "include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml" + ("" if rt.custom else
                                                            ", application/strategic-merge-patch+json"))
        if implicit and create is None:  # a namespace nobody created: patch the one reads show
            create = lambda: apply(implicit_namespace(name), patch)  # noqa: E731
        store = self.server.api.store
        result = store.update(rt, ns, name, lambda old: apply(old, patch), mode=mode, dry_run=dry_run,
                              create=create)
        self._send_json(200, result)

    def _delete_collection(self, rt: ResourceType, ns: str | None, query: dict, dry_run: bool) -> None:
        store = self.server.api.store
        items, _ = store.list(rt, ns, self._matcher(rt, query))
        deleted = []
        for obj in items:
            try:
                ons, name = _sort_key(obj)
                deleted.append(store.delete(rt, ons, name, dry_run=dry_run))
            except ApiError:
                pass  # deleted meanwhile
        _, rv = store.list(rt, ns, lambda _o: False)
        self._send_json(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": str(rv)}, "items": deleted})

    # -- watch

    def _watch(self, rt: ResourceType, ns: str | None, query: dict) -> None:
        api, store = self.server.api, self.server.api.store
        match = self._matcher(rt, query)
        rv_param = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        initial_end = query.get("sendInitialEvents") == "true" and bookmarks
        timeout = _number(query, "timeoutSeconds", api.watch_timeout)
        if rv_param not in ("", "0") and not rv_param.isdigit():
            raise ApiError(400, f"invalid resource version: {rv_param}")
        watch, error, initial = _Watch(), None, []
        with store.cond:
            if rv_param in ("", "0") or query.get("sendInitialEvents") == "true":
                initial = [copy.deepcopy(o) for (q, ons, _), o in sorted(store.objects.items())
                           if q == rt.qualified and ns in (None, ons) and match(o)]
                pos = store.rv
            elif int(rv_param) < store.compacted:
                error = status_object(410, "Expired",
                                      f"too old resource version: {rv_param} ({store.compacted})")
                pos = store.rv
            else:
                pos = int(rv_param)
            api._watches.add(watch)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if error is None:
                error = self._stream(rt, ns, match, watch, pos, initial, bookmarks, initial_end, timeout)
            if error == "dropped":
                self.close_connection = True
                return
            if error is not None:
                self._chunk(_watch_event("ERROR", error))
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            with store.cond:
                api._watches.discard(watch)

    def _stream(self, rt, ns, match, watch: _Watch, pos: int, initial: list[dict], bookmarks: bool,
                initial_end: bool, timeout: float):
        """Send events until the deadline or a control request; return None (clean end), a Status to send as
        an ERROR event, or "dropped" (the peer went away or the server stops: no end of stream)."""
        api, store = self.server.api, self.server.api.store
        for obj in initial:
            self._chunk(_watch_event("ADDED", obj))
        if initial_end:
            self._chunk(_watch_event("BOOKMARK", bookmark_object(rt, pos, initial_events_end=True)))
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + api.bookmark_interval
        while True:
            with store.cond:
                if store.rv <= pos and watch.end is None and not api._stopping:
                    wake = min(deadline, next_bookmark if bookmarks else deadline, time.monotonic() + 0.2)
                    store.cond.wait(max(0.0, wake - time.monotonic()))
                events = store.events_after(pos)
                pos, end = max(pos, store.rv), watch.end  # an RV from the future waits for it
            for ev in events:
                seen = _translate(ev, rt, ns, match)
                if seen:
                    self._chunk(_watch_event(*seen))
            if api._stopping or self._peer_closed():
                return "dropped"
            if end is not None:
                return None if end == "clean" else end
            now = time.monotonic()
            if now >= deadline:
                return None
            if bookmarks and now >= next_bookmark:
                self._chunk(_watch_event("BOOKMARK", bookmark_object(rt, pos)))
                next_bookmark = now + api.bookmark_interval

    def _peer_closed(self) -> bool:
        """A watch client sends nothing, so a readable socket means it closed (or misbehaves)."""
        try:
            return bool(select.select([self.connection], [], [], 0)[0])
        except (OSError, ValueError):
            return True


def _number(query: dict, key: str, default: float) -> float:
    try:
        return float(query[key]) if query.get(key) else default
    except ValueError:
        raise ApiError(400, f"invalid {key}: {query[key]!r}") from None


def _decode(body: bytes, yaml_ok: bool = False):
    try:
        return json.loads(body or b"null")
    except ValueError:
        if yaml_ok:
            try:
                import yaml  # Debian's python3-yaml, when present; kubectl sends JSON anyway
                return yaml.safe_load(body)
            except ImportError:
                pass
            except yaml.YAMLError as err:
                raise ApiError(400, f"invalid YAML: {err}") from None
        raise ApiError(400, "the request body is not valid JSON") from None


def _parse_resource_path(path: str):
    """(rt, namespace or None, name or None, subresource or None, watch prefix) or None for unknown paths."""
    segs = [s for s in path.split("/") if s]
    if segs[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segs[2:]
    elif segs[:1] == ["apis"] and len(segs) >= 3:
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    watch = rest[:1] == ["watch"]
    rest = rest[1:] if watch else rest

    def lookup(plural):
        return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces" and getattr(lookup(rest[2]), "namespaced", False):
        ns, rest = rest[1], rest[2:]   # not /api/v1/namespaces/<name>/status
    if not 1 <= len(rest) <= 3:
        return None
    rt = lookup(rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if rt is None or sub not in (None, "status") or (sub and not rt.status):
        return None
    if (rt.namespaced and name and ns is None) or (not rt.namespaced and ns is not None):
        return None
    return rt, ns, name, sub, watch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, api: "K8sApiServer"):
        self.api = api
        super().__init__(address, _Handler)

    def server_bind(self):
        TCPServer.server_bind(self)  # HTTPServer's would do a reverse DNS lookup of the host
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        """In the connection's own thread: the TLS handshake (so a slow client cannot stall accept())."""
        if self.api._tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(10)
            tls = self.api._tls.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            return None
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


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
        self._watches: set[_Watch] = set()          # guarded by store.cond
        self._stopping = False
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle

    def start(self) -> "K8sApiServer":
        self._httpd = _HTTPServer((self.host, self._port), self)
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
            spec = _decode(body) or {}
            self.fail_next(int(spec.get("count", 1)), int(spec.get("code", 500)),
                           retry_after=spec.get("retryAfter"), match=spec.get("match"),
                           message=spec.get("message"))
            return {}
        if (method, path) == ("POST", "/_test/load"):
            try:
                return {"items": self.load(_decode(body), query.get("namespace"))}
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
        """The discovery document at `path`, or None. Aggregated discovery is not offered: clients that ask
        for it get these plain documents (Content-Type application/json) and fall back."""
        groups: dict[str, list[ResourceType]] = {}
        for rt in RESOURCES:
            groups.setdefault(rt.api_version, []).append(rt)
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "stand-in",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/openapi/v3":
            return {"paths": {f"{_api_root(rts[0])[1:]}": {"serverRelativeURL": f"/openapi/v3{_api_root(rts[0])}"}
                              for rts in groups.values()}}
        if path.startswith("/openapi/v3/"):
            rts = next((r for r in groups.values() if path == f"/openapi/v3{_api_root(r[0])}"), None)
            return None if rts is None else _openapi_v3(rts)
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
        group_docs = {}
        for gv, rts in groups.items():
            if rts[0].group:
                version = {"groupVersion": gv, "version": rts[0].version}
                group_docs[rts[0].group] = {"name": rts[0].group, "versions": [version],
                                            "preferredVersion": version}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(group_docs.values())}
        if path.startswith("/apis/") and path[len("/apis/"):] in group_docs:
            return {"kind": "APIGroup", "apiVersion": "v1", **group_docs[path[len("/apis/"):]]}
        for gv, rts in groups.items():
            if path == _api_root(rts[0]):
                return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                        "resources": [doc for rt in rts for doc in _resource_docs(rt)]}
        return None


def _api_root(rt: ResourceType) -> str:
    return f"/apis/{rt.api_version}" if rt.group else f"/api/{rt.version}"


def _openapi_v3(rts: list[ResourceType]) -> dict:
    """A minimal OpenAPI v3 document for one group version: only what tells kubectl (apply, create) that the
    server validates fields itself (`fieldValidation` on each PATCH), so it needs no schemas of its own."""
    paths = {}
    for rt in rts:
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        paths[f"{_api_root(rt)}{scope}/{rt.plural}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths}


def _resource_docs(rt: ResourceType) -> list[dict]:
    doc = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
           "verbs": VERBS}
    if rt.short_names:
        doc["shortNames"] = list(rt.short_names)
    docs = [doc]
    if rt.status:
        docs.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced, "kind": rt.kind,
                     "verbs": ["get", "patch", "update"]})
    return docs


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
