"""The HTTP side of the Kubernetes API server stand-in (k8s_apiserver.py): the request handler that routes API
paths to the Store (get, list with pagination, create, update, the patch types, delete, deletecollection), streams
watches (initial events, history replay, BOOKMARKs, ERROR 410, clean ends), answers errors as Status objects,
and the threading HTTP server that does TLS handshakes in each connection's own thread. Standard library only.
"""

from __future__ import annotations

import base64
import copy
import json
import select
import ssl
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from k8s_resources import ApiError, ResourceType, parse_resource_path, status_object
from k8s_store import (implicit_namespace, json_patch, make_matcher, merge_patch, sort_key,
                       strategic_merge_patch, translate_event)

if TYPE_CHECKING:
    from k8s_apiserver import K8sApiServer

# ---------------------------------------------------------------------------------------------------------
# Watch streams


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


@dataclass(eq=False)
class Watch:
    """An open watch stream; a control request sets `end` ("clean" or a Status to send as ERROR)."""
    end: object = None


# ---------------------------------------------------------------------------------------------------------
# The request handler


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
        target = parse_resource_path(path)
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
            obj = decode_body(body)
            ns = (ns or (obj.get("metadata") or {}).get("namespace") or "default") if rt.namespaced else ""
            return self._send_json(201, api.store.create(rt, ns, obj, dry_run=dry_run))
        if method == "DELETE" and not name:
            return self._delete_collection(rt, ns, query, dry_run)
        if not name:
            raise ApiError(405, f"{method} is not supported on a collection")
        if method == "PUT":
            obj = decode_body(body)
            return self._send_json(200, api.store.update(rt, ns, name, lambda _old: obj, dry_run=dry_run,
                                                         mode="status" if sub else "main",
                                                         create=(lambda: obj) if implicit else None))
        if method == "PATCH":
            return self._patch(rt, ns, name, sub, body, dry_run, implicit)
        if method == "DELETE":
            options = decode_body(body) if body.strip() else {}
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
            items = [o for o in items if sort_key(o) > start]
        metadata: dict = {"resourceVersion": str(rv)}
        limit = int(_number(query, "limit", 0))
        if 0 < limit < len(items):
            items, rest = items[:limit], len(items) - limit
            last = sort_key(items[-1])
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
            patch = decode_body(body, yaml_ok=True)
            apply = merge_patch
            create = (lambda: patch) if not sub else None
        elif ctype == "application/merge-patch+json":
            patch, apply = decode_body(body), merge_patch
        elif ctype == "application/strategic-merge-patch+json" and not rt.custom:
            patch, apply = decode_body(body), strategic_merge_patch
        elif ctype == "application/json-patch+json":
            patch, apply = decode_body(body), json_patch
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
                ons, name = sort_key(obj)
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
        watch, error, initial = Watch(), None, []
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

    def _stream(self, rt, ns, match, watch: Watch, pos: int, initial: list[dict], bookmarks: bool,
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
                seen = translate_event(ev, rt, ns, match)
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


def decode_body(body: bytes, yaml_ok: bool = False):
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


# ---------------------------------------------------------------------------------------------------------
# The server


class ApiHTTPServer(ThreadingHTTPServer):
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

