"""``gamerec serve``: a small, hardened HTTP/1.1 server over one :class:`Recommender`.

Standard library only (``http.server``), tuned: HTTP/1.1 keep-alive, ``TCP_NODELAY``, one
buffered write per response, a large listen backlog, daemon threads. Never imports torch or
pandas.

Endpoints::

    GET  /                     a small page to search games, build a library, see recommendations
    GET  /health               model and index versions, item count (open even with a token)
    POST /recommend            {"user_id", "time_played": {appid: minutes}, "genres",
                               "achievements", "top_k", "exclude_owned", "include_dlc"}
                               -> {"recommendations", "history", "note"}
    GET  /similar/{appid}?k=   games close to a game (an appid, or a URL-encoded name)
    GET  /items?q=&limit=      games whose name contains q;  /items?appids=620,400 by appid
    POST /admin/reload         load the artifacts again (needs the token; refused without one)

Hardening: every request line, header block and body must arrive within ``timeout_s`` of the
previous answer (a slow client is cut off, it cannot hold a thread); bodies above
``max_body_bytes`` get 413 before they are read; at most ``max_workers`` requests compute at
once (others wait up to ``timeout_s``, then 503) and at most ``max_connections`` connections are
open (others get 503); errors are JSON ``{"error": {"code", "message"}}``, never a traceback.
"""

from __future__ import annotations

import ctypes
import email.utils
import hmac
import io
import ipaddress
import json
import logging
import math
import mmap
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import parse_qs, unquote, urlsplit

from gamerec.dataio.ids import is_appid_text
from gamerec.errors import (
    AmbiguousNameError,
    ConfigError,
    GamerecError,
    InvalidRequestError,
    RequestError,
)

if TYPE_CHECKING:
    from types import FrameType

    from gamerec.runtime.recommender import Recommender

__all__ = [
    "DEFAULT_LIMITS",
    "GamerecServer",
    "RecommendRequest",
    "RequestError",
    "ServerLimits",
    "is_loopback",
    "parse_recommend_request",
    "serve",
]

logger = logging.getLogger("gamerec.serve")
access_logger = logging.getLogger("gamerec.serve.access")

#: the request line may be this long (longer: 414), as in http.server
MAX_REQUEST_LINE = 65536
#: header limits, as http.client's: a longer line or more lines get 431
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110)
#: limits of a /recommend payload, beyond max_body_bytes
MAX_HISTORY = 10_000
MAX_GENRES = 64
MAX_TEXT = 256
MAX_MINUTES = 1e9
MAX_ITEMS_LIMIT = 100
#: after refusing a body unread, read and drop this much of it (for this long) before closing,
#: so that the client sees the answer instead of a connection reset
LINGER_BYTES = 16 * 1024 * 1024
LINGER_S = 2.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")  # ASCII digits only ("²" is a digit to int())
#: the only whitespace of HTTP's grammar (RFC 9112): NBSP, \x85 and the like are not separators
_SP_HTAB = " \t"
_WORDS = re.compile(r"[ \t]+")
_FIELDS = (
    "user_id",
    "time_played",
    "genres",
    "achievements",
    "top_k",
    "exclude_owned",
    "include_dlc",
)
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_request",
    431: "headers_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    505: "http_version_not_supported",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------- request payloads
@dataclass(frozen=True)
class RecommendRequest:
    """A validated ``POST /recommend`` payload, as the Recommender's arguments."""

    user_id: str | None = None
    played: dict[int | str, float] = field(default_factory=dict)
    genres: list[str] = field(default_factory=list)
    achievements: dict[int | str, int] = field(default_factory=dict)
    top_k: int = 10
    exclude_owned: bool = True
    include_dlc: bool = False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _appid_map(name: str, value: Any, integers: bool) -> dict[int | str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"{name} must be an object of appid: {'count' if integers else 'minutes'}, "
            f'like {{"620": 600}}; got {type(value).__name__}'
        )
    if len(value) > MAX_HISTORY:
        raise InvalidRequestError(f"{name} has {len(value)} games; the limit is {MAX_HISTORY}")
    parsed: dict[int | str, Any] = {}
    for key, amount in value.items():
        if not is_appid_text(key):
            raise InvalidRequestError(
                f'{name}: keys must be appids (digits, like "620"); got {key[:40]!r}'
            )
        if integers:
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise InvalidRequestError(
                    f"{name}[{key}] must be a whole number of achievements; got {amount!r:.40}"
                )
        elif not _is_number(amount):
            raise InvalidRequestError(
                f"{name}[{key}] must be a number of minutes; got {amount!r:.40}"
            )
        if not 0 <= amount <= MAX_MINUTES:  # also refuses NaN and infinity (1e400)
            raise InvalidRequestError(
                f"{name}[{key}] must be between 0 and {MAX_MINUTES:.0e}; got {amount!r:.40}"
            )
        parsed[int(key)] = amount if integers else float(amount)
    return parsed


def _given(payload: dict[str, Any], name: str, default: Any) -> Any:
    value = payload.get(name)
    return default if value is None else value


def parse_recommend_request(
    payload: Any, max_top_k: int, default_top_k: int = 10
) -> RecommendRequest:
    """Check a decoded ``/recommend`` JSON body strictly; InvalidRequestError (422) says why.

    Unknown fields, wrong types, non-finite or negative numbers and ``top_k`` outside
    ``1..max_top_k`` are refused. Unknown users, games and genres are the Recommender's to judge.
    """
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            f"the body must be a JSON object with some of {', '.join(_FIELDS)}; "
            f"got {type(payload).__name__}"
        )
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidRequestError(f"unknown field(s) {shown}; allowed: {', '.join(_FIELDS)}")
    user_id = payload.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not user_id.strip()):
        raise InvalidRequestError(f"user_id must be a non-empty string; got {user_id!r:.40}")
    if user_id is not None and len(user_id) > MAX_TEXT:
        raise InvalidRequestError(f"user_id is longer than {MAX_TEXT} characters")
    # null stands for "not given"; any other value must have the right type (0 and "" too)
    played = _appid_map("time_played", _given(payload, "time_played", {}), integers=False)
    achievements = _appid_map("achievements", _given(payload, "achievements", {}), integers=True)
    genres = _given(payload, "genres", [])
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise InvalidRequestError(f"genres must be a list of strings; got {genres!r:.60}")
    if len(genres) > MAX_GENRES or any(len(g) > MAX_TEXT for g in genres):
        raise InvalidRequestError(f"genres: at most {MAX_GENRES} names of {MAX_TEXT} characters")
    top_k = payload.get("top_k", default_top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise InvalidRequestError(f"top_k must be a whole number; got {top_k!r:.40}")
    if not 1 <= top_k <= max_top_k:
        raise InvalidRequestError(f"top_k must be between 1 and {max_top_k}; got {top_k}")
    flags = {}
    for name, default in (("exclude_owned", True), ("include_dlc", False)):
        flags[name] = payload.get(name, default)
        if not isinstance(flags[name], bool):
            raise InvalidRequestError(f"{name} must be true or false; got {flags[name]!r:.40}")
    return RecommendRequest(
        user_id=user_id,
        played=played,
        genres=list(genres),
        achievements=achievements,
        top_k=top_k,
        **flags,
    )


def _framing_error(headers: HTTPMessage) -> tuple[int, str] | None:
    """Why a request's body length is ambiguous, as (status, message); None when it is not.

    One ``Content-Length`` of ASCII digits, or nothing. ``Transfer-Encoding: chunked`` alone is
    411 (not read: send a length); any other transfer coding, a repeated header, or both headers
    together is 400. Checked on every request, those without a body included.
    """
    lengths = headers.get_all("Content-Length") or []
    codings = headers.get_all("Transfer-Encoding") or []
    if len(lengths) > 1:
        return 400, "Content-Length is given more than once; send it once"
    if lengths and not _CONTENT_LENGTH.fullmatch(lengths[0]):
        return 400, "Content-Length must be a whole number of bytes (ASCII digits)"
    if not codings:
        return None
    if lengths:
        return 400, "send Content-Length or Transfer-Encoding, not both"
    if len(codings) > 1:
        return 400, "Transfer-Encoding is given more than once"
    if codings[0].lower() == "chunked":
        return 411, "chunked bodies are not accepted; send Content-Length"
    return 400, f"unsupported Transfer-Encoding {codings[0][:40]!r}; send Content-Length"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON ({str(exc)[:120]})") from None


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise InvalidRequestError(f"{name} must be a whole number; got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}; got {value}")
    return value


#: one encoder for every answer: json.dumps with options builds a new one per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: text a log line can quote as it is (printable ASCII but for the quote and the backslash)
_PLAIN_TEXT = re.compile(r"[ !#-\[\]-~]*")
#: the HTTP date of the current second, reused within it: (second, text)
_date_cache: tuple[int, str] = (0, "")


def _json_bytes(value: Any) -> bytes:
    # ASCII escapes: safe for any string, lone surrogates from a JSON request included
    return _ENCODER.encode(value).encode()


def _quoted(text: str) -> str:
    """``text`` as a JSON string, for a log line (json.dumps only where it has to escape)."""
    return f'"{text}"' if _PLAIN_TEXT.fullmatch(text) else json.dumps(text)


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


def _error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": _CODES.get(status, "error"), "message": message}
    error.update(extra or {})
    return _json_bytes({"error": error})


def _read_page() -> bytes:
    return resources.files("gamerec.runtime").joinpath("static/index.html").read_bytes()


# ---------------------------------------------------------------------------- the server
class ServerLimits(TypedDict, total=False):
    """:class:`GamerecServer`'s keyword options (``serve`` passes them on); see DEFAULT_LIMITS.

    ``token``: the bearer token every route but ``/health`` and the page needs (None: open);
    ``timeout_s``: a request's line, headers and body must arrive within it of its first
    byte; ``idle_timeout_s``: a connection that sends no request for this long is closed;
    ``max_workers``: requests computing at once; ``max_connections`` open at once, of which
    ``max_connections_per_client`` from one address; ``default_top_k``: when none is asked.
    """

    token: str | None
    max_body_bytes: int
    timeout_s: float
    idle_timeout_s: float
    max_workers: int
    max_connections: int
    max_connections_per_client: int
    default_top_k: int


DEFAULT_LIMITS: ServerLimits = {
    "token": None,
    "max_body_bytes": 1_000_000,
    "timeout_s": 10.0,
    "idle_timeout_s": 5.0,
    "max_workers": 2,
    "max_connections": 256,
    "max_connections_per_client": 32,
    "default_top_k": 10,
}


class GamerecServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` over one Recommender, swapped atomically by :meth:`reload`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self,
        loader: Callable[[], Recommender],
        host: str = "127.0.0.1",
        port: int = 8000,
        **limits: Unpack[ServerLimits],
    ):
        unknown = sorted(set(limits) - set(DEFAULT_LIMITS))
        if unknown:  # a typo must not quietly leave a limit at its default
            raise TypeError(f"unknown server option(s) {', '.join(unknown)}")
        options: ServerLimits = {**DEFAULT_LIMITS, **limits}
        self.loader = loader
        self.recommender = loader()
        self.recommender.check()  # fail at start rather than on the first request
        token = options["token"]
        self.token = token.encode("utf-8") if token else None
        self.max_body_bytes = options["max_body_bytes"]
        self.timeout_s = options["timeout_s"]
        self.max_connections = options["max_connections"]
        self.max_connections_per_client = options["max_connections_per_client"]
        self.idle_timeout_s = min(options["idle_timeout_s"], self.timeout_s)
        self.default_top_k = options["default_top_k"]
        self.page = _read_page()
        self.started = time.time()
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None
        self.requests = 0
        self.draining = False
        #: in a forked worker, the process that passes signals on to every worker
        self.group_leader: int | None = None
        self._slots = threading.BoundedSemaphore(options["max_workers"])
        self._reload_lock = threading.Lock()
        self._state = threading.Condition()
        self._in_flight = 0
        self._connections = 0
        self._per_client: dict[str, int] = {}
        #: connections waiting for a request's first byte, per client address, oldest first:
        #: they are closed to make room when a limit is reached (a client may close an idle
        #: keep-alive connection at any time; the client retries on another)
        self._idle: dict[str, dict[socket.socket, None]] = {}
        self._refusals = _RateLimitedWarning(logger, 10.0)
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn): slow without DNS
        socketserver.TCPServer.server_bind(self)
        address, port = self.server_address[:2]
        self.server_name = address.decode() if isinstance(address, bytes) else str(address)
        self.server_port = int(port)

    @property
    def url(self) -> str:
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # -------------------------------------------------------------- connections and requests
    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        with self._state:
            admitted = self._admit(client)
            if admitted:
                self._connections += 1
                self._per_client[client] = self._per_client.get(client, 0) + 1
        if not admitted:
            # answered from the accept loop without blocking it: the socket buffer is empty
            body = _error_body(503, "too many open connections; retry shortly")
            head = (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
            )
            try:
                request.setblocking(False)
                request.send(head.encode() + body)
            except OSError:
                pass
            self._refusals.count(
                "refused %d connection(s) in %.0f s (limits: %d open, %d per client); last from %s",
                self.max_connections,
                self.max_connections_per_client,
                client,
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread to be had: give the place back, then socketserver closes
            self._release(client)
            raise

    def _admit(self, client: str) -> bool:
        """Whether a new connection from ``client`` may open (under ``_state``).

        At a limit, the oldest idle connection (of this client, else of the client holding the
        most) is closed to make room: idle sockets cannot keep others out. Without one: refused.
        """
        client_full = self._per_client.get(client, 0) >= self.max_connections_per_client
        if not client_full and self._connections < self.max_connections:
            return True
        victims = self._idle.get(client)
        if not victims and not client_full:
            busiest = max(self._idle, key=lambda c: len(self._idle[c]), default=None)
            victims = self._idle.get(busiest) if busiest is not None else None
        if not victims:
            return False
        victim = next(iter(victims))
        del victims[victim]
        with suppress(OSError):  # its handler's read returns at once, and it closes
            victim.shutdown(socket.SHUT_RDWR)
        return True

    def _release(self, client: str) -> None:
        with self._state:
            self._connections -= 1
            left = self._per_client.get(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)

    def waiting(self, client: str, sock: socket.socket, idle: bool) -> None:
        """Mark a connection as idle (waiting for a request) or busy; see :meth:`_admit`."""
        with self._state:
            if idle:
                self._idle.setdefault(client, {})[sock] = None
            elif client in self._idle:
                self._idle[client].pop(sock, None)
                if not self._idle[client]:
                    del self._idle[client]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("a connection from %s failed", client_address[0])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]))

    def request_started(self) -> None:
        with self._state:
            self._in_flight += 1
            self.requests += 1

    def request_finished(self) -> None:
        with self._state:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._state.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of ``max_workers`` computing slots; 503 after ``timeout_s`` of waiting."""
        if not self._slots.acquire(timeout=self.timeout_s):
            raise RequestError(
                503, "the server is busy; retry shortly", headers={"Retry-After": "1"}
            )
        try:
            yield
        finally:
            self._slots.release()

    def drain(self, timeout_s: float) -> bool:
        """Stop keeping connections alive; wait until no request is in flight. True if none is."""
        deadline = time.monotonic() + timeout_s
        with self._state:
            self.draining = True
            while self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    # -------------------------------------------------------------- reloading
    def reload(self) -> dict[str, Any]:
        """Load the artifacts again and swap them in; on failure keep serving the old ones.

        The new Recommender is built and checked completely (what it loads lazily, such as the
        users, included; then a trial request) before one reference is replaced, so every
        request is answered by the old or the new model, never a mix or a broken one.
        """
        if not self._reload_lock.acquire(blocking=False):
            raise RequestError(409, "a reload is already running; try again when it has finished")
        try:
            started = time.perf_counter()
            try:
                fresh = self.loader()
                fresh.check()
            except GamerecError as exc:
                self._record_reload(False, started, type(exc).__name__)
                logger.error("reload failed, still serving the previous model: %s", exc.message)
                raise RequestError(
                    exc.http_status if exc.http_status >= 500 else 503,
                    f"reload failed, still serving the previous model: {exc.message}",
                ) from None
            except Exception:
                logger.exception("reload failed, still serving the previous model")
                self._record_reload(False, started, "unexpected error")
                raise RequestError(
                    500,
                    "reload failed with an unexpected error, still serving the previous "
                    "model; the server log has the details",
                ) from None
            self.recommender = fresh  # the one swap: requests read this reference once
            self.reloads += 1
            self._record_reload(True, started, None)
            logger.warning("reloaded the artifacts in %.2f s", time.perf_counter() - started)
            return {"reloaded": True, **(self.last_reload or {}), **fresh.info()}
        finally:
            self._reload_lock.release()

    def _record_reload(self, ok: bool, started: float, kind: str | None) -> None:
        # shown by /health, which needs no token: the error's kind only, never its message
        # (it names files and folders); the log and the admin's answer have the message
        self.last_reload = {
            "ok": ok,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - started, 3),
            "error": None if kind is None else f"{kind}; see the server log for the details",
        }

    def reload_in_background(self) -> None:
        """Reload from a signal handler: in a thread, errors logged (the old model stays)."""

        def run() -> None:
            with suppress(RequestError):  # logged by reload(); the old model keeps serving
                self.reload()

        threading.Thread(target=run, name="gamerec-reload", daemon=True).start()


class _RateLimitedWarning:
    """A warning counted on each event but written at most once per ``every_s`` seconds."""

    def __init__(self, log: logging.Logger, every_s: float):
        self._log, self._every_s = log, every_s
        self._lock = threading.Lock()
        self._count, self._since = 0, time.monotonic()
        self._next = 0.0

    def count(self, message: str, *args: Any) -> None:
        """``message`` gets the number of events and the seconds they span, then ``args``."""
        now = time.monotonic()
        with self._lock:
            self._count += 1
            if now < self._next:
                return
            count, span = self._count, max(now - self._since, 1.0)
            self._count, self._since, self._next = 0, now, now + self._every_s
        self._log.warning(message, count, span, *args)


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail with TimeoutError once the request's deadline has passed.

    A plain socket timeout limits each ``recv``; a client sending one byte every few seconds
    would never trip it. This bounds the whole request line, headers and body instead.
    """

    def __init__(self, sock: socket.socket, handler: _Handler):
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._handler.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: GamerecServer
    protocol_version = "HTTP/1.1"
    # a request line too broken to name its version is answered as HTTP/1.1 (with a status
    # line and headers), not as HTTP/0.9 (a bare body)
    default_request_version = "HTTP/1.1"
    server_version = "gamerec"
    error_content_type = "application/json"

    deadline: float = math.inf
    _linger: bool = False
    _status: int = 0
    _sent: int = 0
    _body_read: bool = False

    def version_string(self) -> str:
        return self.server_version  # no Python version for the curious

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(self.server.timeout_s)
        self._reader = io.BufferedReader(_DeadlineReader(self.connection, self), 65536)
        self.rfile = self._reader
        self.wfile = self.connection.makefile("wb", 65536)

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain_unread_body()

    def _drain_unread_body(self) -> None:
        # closing with unread data makes the kernel send a reset, which can destroy the answer
        # still in flight to the client: stop sending, then drop what arrives, within limits
        sock, dropped, scratch = self.connection, 0, memoryview(bytearray(65536))
        deadline = time.monotonic() + LINGER_S
        try:
            sock.shutdown(socket.SHUT_WR)
            while dropped < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                received = sock.recv_into(scratch)  # into one buffer: no garbage per chunk
                if not received:
                    break
                dropped += received
        except OSError:
            pass

    # -------------------------------------------------------------- the request loop
    def handle_one_request(self) -> None:
        # the first byte within idle_timeout_s (an idle keep-alive socket is closed sooner than
        # a request is cut off); then request line + headers + body within timeout_s
        server, client = self.server, str(self.client_address[0])
        self.deadline = time.monotonic() + server.idle_timeout_s
        self.command, self.path, self._status, self._sent, self._body_read = "", "", 0, 0, False
        self.headers = None  # type: ignore[assignment]
        try:
            server.waiting(client, self.connection, idle=True)
            try:
                first = self._reader.peek(1)  # at once when a pipelined request is buffered
            finally:
                server.waiting(client, self.connection, idle=False)
            if not first:
                self.close_connection = True
                return
            self.deadline = time.monotonic() + server.timeout_s
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except (TimeoutError, OSError):
            self.close_connection = True  # idle too long, or the client went away
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = time.perf_counter()
        self.server.request_started()
        try:
            self._handle_request()
        finally:
            self.server.request_finished()
            self._log_access(started)

    def _handle_request(self) -> None:
        try:
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version = "", "HTTP/1.1"
                self.send_error(414, "the request line is too long")
                return
            if not self.parse_request():
                self.close_connection = True
                return
            if self.server.draining:
                self.close_connection = True
            self._dispatch()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if not self._status:
                self._send_quietly(408, "the request did not arrive within the time limit")
        except OSError:
            self.close_connection = True  # the client went away mid-request

    def _send_quietly(self, status: int, message: str) -> None:
        try:
            self.connection.settimeout(1.0)
            self._send_error(RequestError(status, message))
            self.wfile.flush()
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, header limits) as JSON."""
        self.close_connection = True
        self._linger = True  # the rest of a broken request may still be arriving
        self._send_error(RequestError(int(code), message or HTTPStatus(code).phrase))

    def parse_request(self) -> bool:
        """The request line and headers; on failure an error is sent and False returned.

        http.server's rules, with a plain header reader instead of the email parser (a tenth
        of its time): folded or malformed header lines are refused (400), as RFC 9112 allows.
        """
        self.command, self.close_connection = "", True
        self.request_version = self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = _WORDS.split(self.requestline.strip(_SP_HTAB))
        if len(words) != 3:
            self.send_error(400, f"bad request line {self.requestline[:60]!r}")
            return False
        command, path, version = words
        match = _VERSION.fullmatch(version)
        if not match:
            self.send_error(400, f"bad HTTP version {version[:20]!r}")
            return False
        if match.group(1) != "1":
            self.send_error(505, f"HTTP version {version[5:]} is not supported; use HTTP/1.1")
            return False
        self.request_version = version
        self.command, self.path = command, "/" + path.lstrip("/") if path[:2] == "//" else path
        headers = HTTPMessage()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(431, "a header line is too long")
                return False
            if not line:
                return False  # the client hung up halfway: nobody to answer
            if line in (b"\r\n", b"\n"):
                break
            name, colon, value = line.decode("iso-8859-1").rstrip("\r\n").partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                self.send_error(400, f"malformed header line {line[:40]!r}")
                return False
            headers[name] = value.strip(_SP_HTAB)
        else:
            self.send_error(431, f"more than {MAX_HEADERS} headers")
            return False
        self.headers = headers
        framing = _framing_error(headers)
        if framing is not None:
            # a body whose end two parties could see differently is how requests are smuggled
            # (RFC 9112 6.3): refuse it, whatever the route, and close the connection
            self.send_error(*framing)
            return False
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("Expect", "").lower() == "100-continue" and version != "HTTP/1.0":
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        # refuse an oversized body before the client sends it (the length is checked already)
        length = self.headers.get("Content-Length", "")
        if length and int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._send_error(self._too_large(int(length)))
            return False
        super().handle_expect_100()
        self.wfile.flush()  # the client waits for the 100 before it sends the body
        return True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None  # one access line per request is written by _log_access

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, self.client_address[0], *args)

    def _log_access(self, started: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        path = self.path.split("?", 1)[0][:200]
        access_logger.info(
            "method=%s path=%s status=%s ms=%.2f bytes=%d client=%s",
            _quoted((self.command or "-")[:16]),
            _quoted(path or "-"),
            self._status or "-",
            (time.perf_counter() - started) * 1000,
            self._sent,
            self.client_address[0],
        )

    # -------------------------------------------------------------- routing
    def _dispatch(self) -> None:
        try:
            route, argument, allowed = self._route()
            if self.command not in allowed:
                raise RequestError(
                    405,
                    f"{self.command[:16]} is not allowed on this path; use {' or '.join(allowed)}",
                    headers={"Allow": ", ".join(allowed)},
                )
            route(argument)
        except GamerecError as exc:
            self._send_error(exc)
        except OSError:
            raise  # a timeout or a vanished client: the request loop decides
        except Exception:
            logger.exception("a bug answering %s %s", self.command, self.path[:200])
            self._send_error(RequestError(500, "internal error; the server log has the details"))

    def _route(self) -> tuple[Callable[[str], None], str, tuple[str, ...]]:
        try:
            parts = urlsplit(self.path)
            path = unquote(parts.path, errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "the path is not valid (percent-encoded UTF-8)") from None
        self._query = parts.query
        if path == "/":
            return self._page, "", ("GET", "HEAD")
        if path == "/health":
            return self._health, "", ("GET", "HEAD")
        if path == "/recommend":
            return self._recommend, "", ("POST",)
        if path == "/items":
            return self._items, "", ("GET", "HEAD")
        if path.startswith("/similar/") and len(path) > len("/similar/"):
            return self._similar, path[len("/similar/") :], ("GET", "HEAD")
        if path == "/admin/reload":
            return self._reload, "", ("POST",)
        raise RequestError(
            404, f"no such endpoint {path[:80]!r}; see / , /health, /recommend, /items, /similar/"
        )

    def _params(self, allowed: tuple[str, ...]) -> dict[str, str]:
        try:
            values = parse_qs(
                self._query, keep_blank_values=True, errors="strict", max_num_fields=20
            )
        except (ValueError, UnicodeDecodeError):
            raise RequestError(
                400, "the query string is not valid (percent-encoded UTF-8)"
            ) from None
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise InvalidRequestError(
                f"unknown parameter(s) {', '.join(repr(u[:40]) for u in unknown[:5])}; "
                f"allowed: {', '.join(allowed) or 'none'}"
            )
        repeated = [name for name, items in values.items() if len(items) > 1]
        if repeated:
            raise InvalidRequestError(f"parameter {repeated[0]!r} is given more than once")
        return {name: items[0] for name, items in values.items()}

    def _authorize(self) -> None:
        token = self.server.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        # the header's own bytes (it was read as latin-1) against the token's UTF-8 bytes
        supplied = value.strip(_SP_HTAB).encode("iso-8859-1")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied, token):
            raise RequestError(
                401,
                "missing or wrong token; send the header Authorization: Bearer <serve.token>",
                headers={"WWW-Authenticate": 'Bearer realm="gamerec"'},
            )

    def _too_large(self, length: int) -> RequestError:
        return RequestError(
            413,
            f"the body is {length:,} bytes; the limit is {self.server.max_body_bytes:,} "
            "(serve.max_body_bytes)",
        )

    def _read_body(self, require_json: bool) -> bytes:
        if require_json:
            media_type = self.headers.get("Content-Type", "")
            kind, _, options = media_type.partition(";")
            charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", options, re.IGNORECASE)
            if kind.strip(_SP_HTAB).lower() != "application/json" or (
                charset and charset.group(1).lower() not in ("utf-8", "utf8")
            ):
                raise RequestError(
                    415,
                    f"send Content-Type: application/json (UTF-8); got {media_type[:60]!r}",
                )
        # parse_request has refused every other framing: at most one Content-Length, of digits
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._body_read = True
            return b""
        length = int(length_text)
        if length > self.server.max_body_bytes:
            raise self._too_large(length)
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
        self._body_read = True
        return body

    # -------------------------------------------------------------- answers
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._status = status
        if self.server.draining:
            self.close_connection = True  # shutting down: no further request on this one
        if not self._body_read and self.headers is not None:
            has_body = self.headers.get("Content-Length", "0") not in ("", "0")
            if has_body or "Transfer-Encoding" in self.headers:
                self.close_connection = True  # an unread body would poison the next request
                self._linger = True
        self.connection.settimeout(self.server.timeout_s)  # a client that does not read
        # the head as one string (not send_header per line: a fifth of a small answer's time)
        head = (
            f"HTTP/1.1 {status} {_PHRASES.get(status, '')}\r\nDate: {_http_date()}\r\n"
            f"Server: {self.server_version}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n"
            "Cache-Control: no-store\r\n"
        )
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        if self.command == "HEAD":
            self.wfile.write(head.encode("latin-1") + b"\r\n")
        else:
            self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
            self._sent = len(body)

    def _send_json(self, value: Any, status: int = 200) -> None:
        self._send(status, _json_bytes(value))

    def _send_error(self, exc: GamerecError) -> None:
        status = int(getattr(exc, "http_status", 400))
        if status < 400 or status > 599:
            status = 400
        extra: dict[str, Any] = {}
        if isinstance(exc, AmbiguousNameError):
            extra = {"code": "ambiguous_name", "candidates": exc.candidates[:20]}
        headers = exc.headers if isinstance(exc, RequestError) else {}
        if status >= 500 and status != 503:
            logger.error("%s %s -> %d: %s", self.command, self.path[:200], status, exc.message)
        self._send(status, _error_body(status, exc.message, extra), headers=headers)

    def _page(self, _: str) -> None:
        self._send(
            200,
            self.server.page,
            "text/html; charset=utf-8",
            {
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer",
            },
        )

    def _health(self, _: str) -> None:
        self._params(())
        server = self.server
        recommender = server.recommender
        self._send_json(
            {
                "status": "draining" if server.draining else "ok",
                **recommender.info(),
                "genres": recommender.genres,
                "max_top_k": recommender.max_top_k,
                "uptime_s": round(time.time() - server.started, 1),
                "pid": os.getpid(),  # which worker answered, with serve.processes > 1
                "reloads": server.reloads,
                "last_reload": server.last_reload,
            },
            status=503 if server.draining else 200,
        )

    def _recommend(self, _: str) -> None:
        self._authorize()
        self._params(())
        payload = _decode_json(self._read_body(require_json=True))
        recommender = self.server.recommender  # read once: a reload cannot split a request
        request = parse_recommend_request(
            payload, recommender.max_top_k, min(self.server.default_top_k, recommender.max_top_k)
        )
        with self.server.slot():
            answers = recommender.recommend(
                user_id=request.user_id,
                played=request.played,
                genres=request.genres,
                achievements=request.achievements,
                k=request.top_k,
                exclude_owned=request.exclude_owned,
                include_dlc=request.include_dlc,
            )
        self._send_json(answers.to_dict())

    def _similar(self, game: str) -> None:
        self._authorize()
        recommender = self.server.recommender
        params = self._params(("k",))
        k = _int_param(params, "k", self.server.default_top_k, 1, recommender.max_top_k)
        if len(game) > MAX_TEXT:
            raise InvalidRequestError(f"the game is longer than {MAX_TEXT} characters")
        key: int | str = int(game) if is_appid_text(game) else game
        with self.server.slot():
            answers = recommender.similar(key, k)
        self._send_json({"similar": [a.to_dict() for a in answers]})

    def _items(self, _: str) -> None:
        self._authorize()
        recommender = self.server.recommender
        params = self._params(("q", "appids", "limit"))
        limit = _int_param(params, "limit", 20, 1, MAX_ITEMS_LIMIT)
        if ("q" in params) == ("appids" in params):
            raise InvalidRequestError("give q (part of a name) or appids (620,400), not both")
        if "appids" in params:
            wanted = [a.strip(_SP_HTAB) for a in params["appids"].split(",")]
            wanted = [a for a in wanted if a]
            if len(wanted) > MAX_ITEMS_LIMIT or not all(is_appid_text(a) for a in wanted):
                raise InvalidRequestError(
                    f"appids must be up to {MAX_ITEMS_LIMIT} comma-separated appids"
                )
            catalog = recommender.catalog
            rows = [catalog.by_appid[int(a)] for a in wanted if int(a) in catalog.by_appid]
            items = [
                {
                    "appid": int(catalog.appids[row]),
                    "name": catalog.names[row],
                    "genres": catalog.genres[row],
                    "item_idx": row,
                }
                for row in rows
            ]
        else:
            query = params["q"]
            if not query.strip() or len(query) > MAX_TEXT:
                raise InvalidRequestError(f"q must be 1 to {MAX_TEXT} characters of a game's name")
            with self.server.slot():
                items = recommender.search_items(query, limit)
        self._send_json({"items": items})

    def _reload(self, _: str) -> None:
        if self.server.token is None:
            raise RequestError(
                403, "reloading over HTTP needs serve.token to be set; or send the server SIGHUP"
            )
        self._authorize()
        self._params(())
        self._read_body(require_json=False)  # ignored, but read so the connection stays usable
        leader = self.server.group_leader
        if leader is not None:  # one of several workers: every one of them must reload
            os.kill(leader, signal.SIGHUP)
            self._send_json({"reload": "requested of every worker; see /health"}, status=202)
            return
        self._send_json(self.server.reload())


# ---------------------------------------------------------------------------- the entry point
def configure_logging(level: str) -> None:
    """Server logs (one access line per request at info) on stderr, at ``level``."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def steady_memory() -> bool:
    """Fix glibc's mmap threshold at 128 KB, so the server's RSS stays flat; False elsewhere.

    glibc raises the threshold each time a large block is freed; after that, bodies of up to
    32 MB are carved out of the per-thread arenas, which fragment, and RSS creeps up with the
    variety of traffic before it levels off. A fixed threshold returns every large buffer to
    the system at once. Nothing on the request path of a normal request is that large.
    """
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(-3, 128 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


#: serve.processes = "auto" uses the cores available, up to this many
MAX_AUTO_PROCESSES = 8


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, within a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    with suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, cores)


def worker_processes(processes: int | str) -> int:
    """How many processes serve: ``processes``, or for ``"auto"`` the available cores (capped
    at :data:`MAX_AUTO_PROCESSES`; one without fork or on a single core)."""
    if processes == "auto":
        return min(available_cores(), MAX_AUTO_PROCESSES) if hasattr(os, "fork") else 1
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(
            f'serve.processes must be a whole number >= 1 or "auto"; got {processes!r}'
        )
    return processes


def serve(
    loader: Callable[[], Recommender],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    drain_s: float = 30.0,
    processes: int | str = "auto",
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
    **options: Unpack[ServerLimits],
) -> dict[str, Any]:
    """Serve until SIGTERM or SIGINT, then answer what is in flight and return.

    ``options`` are :class:`GamerecServer`'s (token, limits, timeouts), per process. SIGHUP
    reloads the artifacts (``loader()``) without dropping a request. With more than one of
    ``processes`` (``"auto"``: one per available core, see :func:`worker_processes`) the loaded
    server is forked into that many worker processes that share the listening socket (and,
    copy-on-write, the model), so requests use more than one core; signals to the first
    process reach every worker. Returns a summary: requests answered, seconds up, whether every
    request in flight was finished within ``drain_s``.
    """
    count = worker_processes(processes)
    if count > 1 and not hasattr(os, "fork"):
        raise ConfigError("serve.processes above 1 needs fork (Linux, macOS); set it to 1")
    configure_logging(log_level)
    steady_memory()
    server = GamerecServer(loader, host, port, **options)
    if not is_loopback(host) and not options.get("token"):
        logger.warning(
            "listening on %s without a token: anyone who can reach it may use it; "
            "set serve.token (GAMEREC_SERVE__TOKEN) or bind 127.0.0.1",
            host,
        )
    info = server.recommender.info()
    logger.info(
        "%s games, %s index, model %s; %d process(es)",
        info["items"],
        info["index"],
        info["model"],
        count,
    )
    if count > 1:
        return _serve_forked(server, count, drain_s, on_ready)
    return _serve_one(server, drain_s, on_ready)


def _serve_one(
    server: GamerecServer,
    drain_s: float,
    on_ready: Callable[[str], None] | None = None,
    unblock_signals: bool = False,
) -> dict[str, Any]:
    """Serve in this process until SIGTERM/SIGINT; SIGHUP reloads."""

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.warning("signal %d: finishing the requests in flight, then stopping", signum)
        server.draining = True
        threading.Thread(target=server.shutdown, name="gamerec-stop", daemon=True).start()

    def reload(signum: int, frame: FrameType | None) -> None:
        logger.warning("SIGHUP: reloading the artifacts")
        server.reload_in_background()

    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop))
    }
    if hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    if unblock_signals:  # a forked worker: signals held since the fork reach these handlers
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    if on_ready is not None:
        on_ready(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # no new connections
        drained = server.drain(drain_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not drained:
        logger.error(
            "stopped with %d request(s) still in flight after %s s", server.in_flight, drain_s
        )
    return {
        "requests": server.requests,
        "uptime_s": round(time.time() - server.started, 1),
        "drained": drained,
        "url": server.url,
    }


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if hasattr(signal, "SIGHUP") else ()


def _serve_forked(
    server: GamerecServer,
    processes: int,
    drain_s: float,
    on_ready: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Fork ``processes`` workers over one listening socket and look after them.

    SIGTERM/SIGINT: stop accepting, pass the signal on, wait for every worker to drain.
    SIGHUP: pass it on (each worker reloads). A worker that dies is replaced (after a SIGHUP
    the replacement loads the artifacts again rather than serve the model forked from here).
    """
    counts = mmap.mmap(-1, 8 * processes)  # shared: requests answered, per worker slot
    workers: dict[int, int] = {}  # pid -> slot
    state = {"stopping": False, "reloaded": False, "failed": False}
    server.socket.setblocking(False)  # workers race to accept: the losers must not block

    def spawn(slot: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # no handler of ours in a child
        pid = os.fork()
        if pid == 0:
            _worker(server, slot, counts, drain_s, reload_first=state["reloaded"])
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        workers[pid] = slot

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            logger.warning("SIGHUP: every worker reloads the artifacts")
            state["reloaded"] = True
        elif not state["stopping"]:
            logger.warning("signal %d: the workers finish what is in flight, then stop", signum)
            state["stopping"] = True
            server.server_close()  # refuse new connections at once
        for pid in list(workers):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    previous = {sig: signal.signal(sig, forward) for sig in _SIGNALS}
    for slot in range(processes):
        spawn(slot)
    if on_ready is not None:
        on_ready(server.url)
    try:
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot = workers.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if state["stopping"]:
                state["failed"] |= code != 0
            else:
                logger.error(
                    "worker %d stopped unexpectedly (exit %d); starting another", pid, code
                )
                time.sleep(1.0)  # no tight loop when every new worker fails at once
                if not state["stopping"]:
                    spawn(slot)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return {
        "requests": sum(struct.unpack_from("<Q", counts, 8 * i)[0] for i in range(processes)),
        "uptime_s": round(time.time() - server.started, 1),
        "drained": not state["failed"],
        "url": server.url,
        "processes": processes,
    }


def _worker(
    server: GamerecServer, slot: int, counts: mmap.mmap, drain_s: float, reload_first: bool
) -> None:
    """A forked worker: serve until SIGTERM, add its request count to ``slot``, exit."""
    code = 1
    try:
        server.group_leader = os.getppid()
        if reload_first:  # signals stay held until _serve_one has its handlers in place
            with suppress(RequestError):  # logged; the forked model serves meanwhile
                server.reload()
        summary = _serve_one(server, drain_s, unblock_signals=True)
        done = struct.unpack_from("<Q", counts, 8 * slot)[0]
        struct.pack_into("<Q", counts, 8 * slot, done + summary["requests"])
        code = 0 if summary["drained"] else 1
    except BaseException:
        logger.exception("worker failed")
    finally:
        sys.stderr.flush()
        os._exit(code)
