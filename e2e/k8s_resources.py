"""The resources the Kubernetes API server stand-in (k8s_apiserver.py) serves: the ResourceType of each kind and
the RESOURCES table, lookups by name (find_resource) or by apiVersion and kind (resource_for), the mapping of a URL
path to its resource (parse_resource_path), the discovery documents and minimal OpenAPI documents kubectl reads
(discovery), and errors as Kubernetes Status objects (ApiError, status_object). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def parse_resource_path(path: str):
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
# Discovery and OpenAPI


def discovery(path: str, host: str) -> dict | None:
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

