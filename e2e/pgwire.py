"""A tiny raw PostgreSQL wire-protocol client for e2e tests: read SQLSTATEs of startup errors, send garbage, SSLRequest.

libpq hides the SQLSTATE of an error that arrives during connection start-up, so tests that must see
57P03 speak the protocol themselves. Standard library only.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103


@dataclass
class StartupResult:
    """How the server (or proxy) answered a StartupMessage."""
    outcome: str                 # "ready" (ReadyForQuery), "error" (ErrorResponse), "closed" (EOF/reset), "timeout"
    fields: dict = field(default_factory=dict)   # ErrorResponse fields by code: "C" SQLSTATE, "M" message, ...
    params: dict = field(default_factory=dict)   # ParameterStatus values when ready
    elapsed: float = 0.0
    raw: bytes = b""             # bytes received before a "closed"/"timeout" (for diagnostics)

    @property
    def sqlstate(self) -> str | None:
        return self.fields.get("C")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


def startup_packet(user: str = "postgres", database: str = "postgres", **params: str) -> bytes:
    body = struct.pack("!I", PROTOCOL_3_0)
    for k, v in {"user": user, "database": database, **params}.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def parse_error_fields(body: bytes) -> dict:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def _recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    return buf


def read_until_ready(sock, deadline: float) -> StartupResult:
    """Read backend messages after a StartupMessage until ReadyForQuery, ErrorResponse, EOF or the deadline."""
    params, seen = {}, b""
    t0 = time.monotonic()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return StartupResult("timeout", raw=seen, elapsed=time.monotonic() - t0)
            sock.settimeout(remaining)
            header = _recv_exact(sock, 5)
            seen += header
            tag, length = header[:1], struct.unpack("!I", header[1:])[0]
            body = _recv_exact(sock, length - 4)
            seen += body
            if tag == b"E":
                return StartupResult("error", fields=parse_error_fields(body), elapsed=time.monotonic() - t0)
            if tag == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code != 0:
                    raise RuntimeError(f"server asks for authentication method {code}; e2e clusters use trust")
            elif tag == b"S":
                k, v = body[:-1].split(b"\0", 1)
                params[k.decode()] = v.decode()
            elif tag == b"Z":
                return StartupResult("ready", params=params, elapsed=time.monotonic() - t0)
    except socket.timeout:
        return StartupResult("timeout", raw=seen, elapsed=time.monotonic() - t0)
    except (EOFError, ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
        if isinstance(exc, EOFError):
            seen += exc.args[0]
        return StartupResult("closed", raw=seen, elapsed=time.monotonic() - t0)


def try_startup(host: str, port: int, timeout: float = 10, user: str = "postgres",
                database: str = "postgres") -> StartupResult:
    """Connect, send a StartupMessage, report how it ended; Terminate politely when it succeeded."""
    t0 = time.monotonic()
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(startup_packet(user, database))
        res = read_until_ready(sock, t0 + timeout)
        if res.outcome == "ready":
            try:
                sock.sendall(b"X\0\0\0\4")
            except OSError:
                pass
        res.elapsed = time.monotonic() - t0
        return res
    finally:
        sock.close()


def send_garbage(host: str, port: int, payload: bytes, timeout: float = 5) -> StartupResult:
    """Send payload as if it were a startup packet; report whether we got an ErrorResponse, EOF or nothing."""
    t0 = time.monotonic()
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return StartupResult("closed", elapsed=time.monotonic() - t0)
        res = read_until_ready(sock, t0 + timeout)
        res.elapsed = time.monotonic() - t0
        return res
    finally:
        sock.close()


def ssl_handshake_peer_cert(host: str, port: int, timeout: float = 10) -> bytes:
    """SSLRequest, then a TLS handshake without verification; returns the peer certificate in DER form."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
        answer = _recv_exact(sock, 1)
        if answer != b"S":
            raise RuntimeError(f"SSLRequest answered {answer!r}, expected b'S'")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(startup_packet())
            res = read_until_ready(tls, time.monotonic() + timeout)
            if res.outcome != "ready":
                raise RuntimeError(f"startup inside TLS ended with {res}")
            tls.sendall(b"X\0\0\0\4")
            return der
    finally:
        sock.close()


@dataclass
class SslAnswer:
    """What came back for an SSLRequest: the one-byte answer, and (after 'N') the answer to a StartupMessage."""
    ssl_byte: bytes
    error_fields: dict = field(default_factory=dict)   # when the SSLRequest itself got an ErrorResponse
    after_startup: StartupResult | None = None


def ssl_request_answer(host: str, port: int, timeout: float = 10) -> SslAnswer:
    """Send SSLRequest; on 'N' continue in plain text with a StartupMessage and report how that ended."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
        try:
            first = _recv_exact(sock, 1)
        except EOFError:
            return SslAnswer(b"")
        if first == b"E":
            rest = _recv_exact(sock, 4)
            body = _recv_exact(sock, struct.unpack("!I", rest)[0] - 4)
            return SslAnswer(first, error_fields=parse_error_fields(body))
        if first != b"N":
            return SslAnswer(first)
        sock.sendall(startup_packet())
        return SslAnswer(first, after_startup=read_until_ready(sock, deadline))
    finally:
        sock.close()


def connect_refused(host: str, port: int, timeout: float = 1) -> bool:
    """True when a TCP connect to host:port is refused (nobody listens)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
