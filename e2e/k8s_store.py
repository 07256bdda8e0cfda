"""The object store of the Kubernetes API server stand-in (k8s_apiserver.py): the objects by resource, namespace
and name, one global resourceVersion counter and the history of committed events that watches replay (Store,
Event, translate_event), label and field selectors (parse_label_selector, make_matcher), and the logic of
writes: JSON merge, strategic merge and JSON patches, and what an update keeps of the stored object.
Standard library only.
"""

from __future__ import annotations

import base64
import bisect
import copy
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass

from k8s_resources import ApiError, ResourceType, conflict, not_found

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
        items.sort(key=sort_key)
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


def sort_key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return md.get("namespace", ""), md["name"]


def implicit_namespace(name: str) -> dict:
    """What a GET shows of a namespace that holds objects but was never created (a write to it stores this first)."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


# ---------------------------------------------------------------------------------------------------------
# What a watch sees of the history


def translate_event(ev: Event, rt: ResourceType, ns: str | None, match) -> tuple[str, dict] | None:
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
