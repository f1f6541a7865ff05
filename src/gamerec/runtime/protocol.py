"""HTTP/1.1 for ``gamerec serve``: framing, deadlines, limits and connection admission.

:class:`BoundedHTTPServer` is a ``ThreadingHTTPServer`` that admits at most ``max_connections``
connections (``max_connections_per_client`` from one address), closing idle ones to make room,
and lets at most ``max_workers`` requests compute at once. :class:`RequestHandler` reads one
request at a time under a deadline, refuses ambiguous framing (RFC 9112), caps bodies and
header blocks, and writes each answer in one buffered write; what a request means is its
subclass's business (:meth:`RequestHandler.dispatch`). Standard library only.
"""

from __future__ import annotations

import email.utils
import errno
import io
import ipaddress
import itertools
import json
import logging
import math
import re
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gamerec.errors import AmbiguousNameError, ConfigError, GamerecError, RequestError

__all__ = [
    "BoundedHTTPServer",
    "FairSlots",
    "RequestHandler",
    "client_key",
    "error_body",
    "framing_error",
    "json_bytes",
]

logger = logging.getLogger("gamerec.serve")
access_logger = logging.getLogger("gamerec.serve.access")

#: the request line may be this long (longer: 414), as in http.server, and no longer than the
#: whole header block may be (the server's ``max_header_bytes``)
MAX_REQUEST_LINE = 65536
#: header limits, as http.client's: a longer line or more lines get 431, and so does a request
#: line and header block longer than ``max_header_bytes`` together
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110)
#: after refusing a body unread, read and drop this much of it (for this long) before closing,
#: so that the client sees the answer instead of a connection reset; after refusing a request
#: line or headers, at most what a request may hold (headers and body): a client sending
#: megabytes of headers is not waited for
LINGER_BYTES = 16 * 1024 * 1024
LINGER_S = 2.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")  # ASCII digits only ("²" is a digit to int())
#: the only whitespace of HTTP's grammar (RFC 9112): NBSP, \x85 and the like are not separators
SP_HTAB = " \t"
_WORDS = re.compile(r"[ \t]+")
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


def framing_error(headers: HTTPMessage) -> tuple[int, str] | None:
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


#: one encoder for every answer: json.dumps with options builds a new one per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: text a log line can quote as it is (printable ASCII but for the quote and the backslash)
_PLAIN_TEXT = re.compile(r"[ !#-\[\]-~]*")
#: the HTTP date of the current second, reused within it: (second, text)
_date_cache: tuple[int, str] = (0, "")


def json_bytes(value: Any) -> bytes:
    """``value`` as compact JSON bytes; ValueError for NaN or infinity (not JSON)."""
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


def error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    """The JSON body of an error answer: ``{"error": {"code", "message", ...extra}}``."""
    error: dict[str, Any] = {"code": _CODES.get(status, "error"), "message": message}
    error.update(extra or {})
    return json_bytes({"error": error})


def client_key(address: str) -> str:
    """Whom a connection from ``address`` counts against: an IPv4 address, or an IPv6 /64.

    One IPv6 subscriber usually holds a whole /64 (2^64 addresses): counted per address, one
    machine could open as many connections as it likes. An IPv4-mapped address is its IPv4.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return address


@dataclass(eq=False)
class _Waiter:
    client: str
    ticket: int
    granted: threading.Event = field(default_factory=threading.Event)


class FairSlots:
    """``count`` computing slots shared fairly between clients.

    One client holds at most half of them (rounded up): the others stay free for other
    clients, so a request from elsewhere never waits behind one client's queue of expensive
    ones. Within that, a free slot is taken at once while nobody waits; when requests wait,
    a freed slot goes to the waiting client holding the fewest slots, then the one served
    longest ago, then the request that came first: a client sending many requests at once
    gets one turn in each round.
    """

    def __init__(self, count: int):
        self._lock = threading.Lock()
        self._free = count
        #: the most slots one client may hold at once
        self.share = max(1, (count + 1) // 2)
        self._held: dict[str, int] = {}
        self._queues: dict[str, deque[_Waiter]] = {}
        #: when each client holding or awaiting a slot was last given one (a serial number)
        self._served: dict[str, int] = {}
        self._tickets = itertools.count(1)

    def acquire(self, client: str, timeout_s: float) -> bool:
        """Take a slot for ``client``; False when none could be had within ``timeout_s``."""
        with self._lock:
            if self._free > 0 and not self._queues and self._held.get(client, 0) < self.share:
                self._take(client, next(self._tickets))
                return True
            waiter = _Waiter(client, next(self._tickets))
            self._queues.setdefault(client, deque()).append(waiter)
            self._grant()
        if waiter.granted.wait(timeout_s):
            return True
        with self._lock:
            if waiter.granted.is_set():  # given just as the wait ended
                return True
            queue = self._queues[client]
            queue.remove(waiter)
            if not queue:
                del self._queues[client]
                self._forget(client)
            return False

    def release(self, client: str) -> None:
        with self._lock:
            held = self._held[client] - 1
            if held:
                self._held[client] = held
            else:
                del self._held[client]
                self._forget(client)
            self._free += 1
            self._grant()

    def _grant(self) -> None:
        """Give free slots to waiting requests, fairly (the lock held)."""
        while self._free > 0:
            eligible = [c for c in self._queues if self._held.get(c, 0) < self.share]
            if not eligible:
                return
            chosen = min(eligible, key=self._turn)
            queue = self._queues[chosen]
            waiter = queue.popleft()
            if not queue:
                del self._queues[chosen]
            self._take(chosen, waiter.ticket)
            waiter.granted.set()

    def _turn(self, client: str) -> tuple[int, int, int]:
        held, served = self._held.get(client, 0), self._served.get(client, 0)
        return held, served, self._queues[client][0].ticket

    def _take(self, client: str, ticket: int) -> None:
        self._free -= 1
        self._held[client] = self._held.get(client, 0) + 1
        self._served[client] = ticket

    def _forget(self, client: str) -> None:
        # a client neither holding nor awaiting a slot is remembered no longer (bounded memory)
        if client not in self._held and client not in self._queues:
            self._served.pop(client, None)


class RateLimitedWarning:
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


# ---------------------------------------------------------------------------- the server
class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with bounded connections, deadlines and computing slots."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self,
        host: str,
        port: int,
        handler: type[RequestHandler],
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        timeout_s: float,
        header_timeout_s: float,
        idle_timeout_s: float,
        max_workers: int,
        max_connections: int,
        max_connections_per_client: int,
    ):
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.idle_timeout_s = min(idle_timeout_s, timeout_s)
        self.header_timeout_s = min(header_timeout_s, timeout_s)
        self.started = time.time()
        self.requests = 0
        self.draining = False
        self._slots = FairSlots(max_workers)
        self._state = threading.Condition()
        self._in_flight = 0
        self._connections = 0
        self._per_client: dict[str, int] = {}
        #: connections waiting for a request's first byte, per client, oldest first: they are
        #: closed to make room when a limit is reached (a client may close an idle keep-alive
        #: connection at any time; the client retries on another)
        self._idle: dict[str, dict[socket.socket, None]] = {}
        #: connections still sending a request line and headers, per client, oldest first:
        #: closed to make room at the connection limit when no idle one is left (a request
        #: line and headers take a well-behaved client a round trip, not seconds)
        self._in_head: dict[str, dict[socket.socket, None]] = {}
        self._refusals = RateLimitedWarning(logger, 10.0)
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host.strip("[]"), port), handler)
        except OSError as exc:
            raise _listen_error(host, port, exc) from None

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
        client = client_key(str(client_address[0]))
        with self._state:
            admitted = self._admit(client)
            if admitted:
                self._connections += 1
                self._per_client[client] = self._per_client.get(client, 0) + 1
        if not admitted:
            # answered from the accept loop without blocking it: the socket buffer is empty
            body = error_body(503, "too many open connections; retry shortly")
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

        At a limit, the oldest idle connection of this client is closed to make room: idle
        sockets cannot keep others out. At the limit of open connections, else, the client
        holding the most connections that are idle or still sending their request line and
        headers loses its oldest idle one, or its oldest such one: a byte sent and then
        nothing must not keep others out for ``header_timeout_s``. Without one: refused.
        """
        client_full = self._per_client.get(client, 0) >= self.max_connections_per_client
        if not client_full and self._connections < self.max_connections:
            return True
        victims = self._idle.get(client)
        if not victims and not client_full:
            # the client holding the most such connections: a fresh connection of another
            # client (idle until its first byte arrives) is not the one to go
            busiest = max(
                self._idle.keys() | self._in_head.keys(),
                key=lambda c: len(self._idle.get(c, ())) + len(self._in_head.get(c, ())),
                default=None,
            )
            if busiest is not None:
                victims = self._idle.get(busiest) or self._in_head.get(busiest)
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

    def phase(self, client: str, sock: socket.socket, phase: str | None) -> None:
        """What a connection does now: ``"idle"`` (waiting for a request), ``"head"``
        (receiving a request line and headers) or None (busy); see :meth:`_admit`."""
        with self._state:
            for name, marked in (("idle", self._idle), ("head", self._in_head)):
                if phase == name:
                    marked.setdefault(client, {})[sock] = None
                elif client in marked:
                    marked[client].pop(sock, None)
                    if not marked[client]:
                        del marked[client]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("a connection from %s failed", client_address[0])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_key(str(client_address[0])))

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
    def slot(self, client: str) -> Iterator[None]:
        """One of ``max_workers`` computing slots, shared fairly between clients (see
        :class:`FairSlots`); 503 after ``timeout_s`` of waiting."""
        if not self._slots.acquire(client, self.timeout_s):
            raise RequestError(
                503, "the server is busy; retry shortly", headers={"Retry-After": "1"}
            )
        try:
            yield
        finally:
            self._slots.release(client)

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


def _listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    """Why the server cannot listen on ``host:port``, as one line saying what to do."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"port {port} on {host} is already in use (another gamerec serve or another "
            "program); stop it, or choose another port with --port (serve.port)"
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            f"port {port} needs privileges this user lacks; choose a port above 1023 with "
            "--port (serve.port)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"{host} is not an address of this machine; choose another with --host (serve.host)"
        )
    return ConfigError(
        f"cannot listen on {host} port {port} ({exc.strerror or exc}); check --host and --port"
    )


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail with TimeoutError once the request's deadline has passed.

    A plain socket timeout limits each ``recv``; a client sending one byte every few seconds
    would never trip it. This bounds the whole request line, headers and body instead.
    """

    def __init__(self, sock: socket.socket, handler: RequestHandler):
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


# ---------------------------------------------------------------------------- the handler
class RequestHandler(BaseHTTPRequestHandler):
    """One connection: requests read under deadlines, answered by :meth:`dispatch`."""

    server: BoundedHTTPServer
    protocol_version = "HTTP/1.1"
    # a request line too broken to name its version is answered as HTTP/1.1 (with a status
    # line and headers), not as HTTP/0.9 (a bare body)
    default_request_version = "HTTP/1.1"
    server_version = "gamerec"
    error_content_type = "application/json"

    #: the client the connection counts against (see :func:`client_key`)
    client: str = ""
    deadline: float = math.inf
    #: when the request under way must have arrived whole, body included
    _request_deadline: float = math.inf
    _linger: bool = False
    #: how much of an unread request to drop before closing (see LINGER_BYTES)
    _linger_bytes: int = LINGER_BYTES
    _status: int = 0
    _sent: int = 0
    _body_read: bool = False

    def dispatch(self) -> None:
        """Answer the parsed request (``command``, ``path``, ``headers``); subclasses route."""
        raise NotImplementedError

    def version_string(self) -> str:
        return self.server_version  # no Python version for the curious

    def setup(self) -> None:
        self.client = client_key(str(self.client_address[0]))
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
        # answered already: at a connection limit it may be closed to make room, like an idle one
        self.server.phase(self.client, sock, "idle")
        try:
            sock.shutdown(socket.SHUT_WR)
            limit = self._linger_bytes
            while dropped < limit and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                received = sock.recv_into(scratch)  # into one buffer: no garbage per chunk
                if not received:
                    break
                dropped += received
        except OSError:
            pass
        finally:
            self.server.phase(self.client, sock, None)

    # -------------------------------------------------------------- the request loop
    def handle_one_request(self) -> None:
        # the first byte within idle_timeout_s (an idle keep-alive socket is closed sooner than
        # a request is cut off); then request line + headers within header_timeout_s of it,
        # and the body within timeout_s of it
        server, client, sock = self.server, self.client, self.connection
        self.deadline = time.monotonic() + server.idle_timeout_s
        self.command, self.path, self._status, self._sent, self._body_read = "", "", 0, 0, False
        self.headers = None  # type: ignore[assignment]
        self.raw_requestline = b""
        try:
            server.phase(client, sock, "idle")
            if self._reader.peek(1):  # at once when a pipelined request is buffered
                began = time.monotonic()
                self.deadline = began + server.header_timeout_s
                self._request_deadline = began + server.timeout_s
                server.phase(client, sock, "head")
                self.raw_requestline = self.rfile.readline(self._request_line_limit() + 1)
        except (TimeoutError, OSError):
            pass  # idle too long, or the client went away
        finally:
            if not self.raw_requestline:
                server.phase(client, sock, None)
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = time.perf_counter()
        server.request_started()
        try:
            self._handle_request()
        finally:
            server.phase(client, sock, None)
            server.request_finished()
            self._log_access(started)

    def _request_line_limit(self) -> int:
        return min(MAX_REQUEST_LINE, self.server.max_header_bytes)

    def _headers_received(self) -> None:
        """The request line and headers are in: no longer evictable; the body has the time
        left of ``timeout_s``."""
        self.server.phase(self.client, self.connection, None)
        self.deadline = self._request_deadline

    def _handle_request(self) -> None:
        try:
            if len(self.raw_requestline) > self._request_line_limit():
                self.requestline, self.request_version = "", "HTTP/1.1"
                self.send_error(414, "the request line is too long")
                return
            if not self.parse_request():
                self.close_connection = True
                return
            if self.server.draining:
                self.close_connection = True
            self._dispatch_safely()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if not self._status:
                self._send_quietly(408, "the request did not arrive within the time limit")
        except OSError:
            self.close_connection = True  # the client went away mid-request

    def _dispatch_safely(self) -> None:
        try:
            self.dispatch()
        except GamerecError as exc:
            self.send_error_answer(exc)
        except OSError:
            raise  # a timeout or a vanished client: the request loop decides
        except Exception:
            logger.exception("a bug answering %s %s", self.command, self.path[:200])
            self.send_error_answer(
                RequestError(500, "internal error; the server log has the details")
            )

    def _send_quietly(self, status: int, message: str) -> None:
        try:
            self.connection.settimeout(1.0)
            self.send_error_answer(RequestError(status, message))
            self.wfile.flush()
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, header limits) as JSON."""
        self.close_connection = True
        self._linger = True  # the rest of a broken request may still be arriving
        self._linger_bytes = self.server.max_header_bytes + self.server.max_body_bytes
        self.send_error_answer(RequestError(int(code), message or HTTPStatus(code).phrase))

    def parse_request(self) -> bool:
        """The request line and headers; on failure an error is sent and False returned.

        http.server's rules, with a plain header reader instead of the email parser (a tenth
        of its time): folded or malformed header lines are refused (400), as RFC 9112 allows.
        """
        self.command, self.close_connection = "", True
        self.request_version = self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = _WORDS.split(self.requestline.strip(SP_HTAB))
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
        headers = self._read_headers()
        if headers is None:
            return False
        self._headers_received()
        self.headers = headers
        framing = framing_error(headers)
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

    def _read_headers(self) -> HTTPMessage | None:
        """The header block up to its blank line; None (the error sent) when it is refused."""
        headers = HTTPMessage()
        # the request line and the headers together: ~6.5 MB of 64 KB lines otherwise
        budget = self.server.max_header_bytes - len(self.raw_requestline)
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(min(MAX_HEADER_LINE, budget) + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(431, "a header line is too long")
                return None
            budget -= len(line)
            if budget < 0:
                self.send_error(
                    431,
                    f"the request line and headers are larger than "
                    f"{self.server.max_header_bytes:,} bytes (serve.max_header_bytes)",
                )
                return None
            if not line:
                return None  # the client hung up halfway: nobody to answer
            if line in (b"\r\n", b"\n"):
                return headers
            name, colon, value = line.decode("iso-8859-1").rstrip("\r\n").partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                self.send_error(400, f"malformed header line {line[:40]!r}")
                return None
            headers[name] = value.strip(SP_HTAB)
        self.send_error(431, f"more than {MAX_HEADERS} headers")
        return None

    def handle_expect_100(self) -> bool:
        # refuse an oversized body before the client sends it (the length is checked already)
        length = self.headers.get("Content-Length", "")
        if length and int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self.send_error_answer(self._too_large(int(length)))
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

    # -------------------------------------------------------------- bodies
    def _too_large(self, length: int) -> RequestError:
        return RequestError(
            413,
            f"the body is {length:,} bytes; the limit is {self.server.max_body_bytes:,} "
            "(serve.max_body_bytes)",
        )

    def read_body(self, require_json: bool) -> bytes:
        """The request's body (``b""`` without one); ``require_json``: 415 unless JSON."""
        if require_json:
            media_type = self.headers.get("Content-Type", "")
            kind, _, options = media_type.partition(";")
            charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", options, re.IGNORECASE)
            if kind.strip(SP_HTAB).lower() != "application/json" or (
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
    def send_answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Status line, headers and ``body`` in one buffered write (the head only for HEAD)."""
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

    def send_json(self, value: Any, status: int = 200) -> None:
        self.send_answer(status, json_bytes(value))

    def send_error_answer(self, exc: GamerecError) -> None:
        """``exc`` as a JSON error answer with its status (logged when it is a server error)."""
        status = int(getattr(exc, "http_status", 400))
        if status < 400 or status > 599:
            status = 400
        extra: dict[str, Any] = {}
        if isinstance(exc, AmbiguousNameError):
            extra = {"code": "ambiguous_name", "candidates": exc.candidates[:20]}
        headers = exc.headers if isinstance(exc, RequestError) else {}
        if status >= 500 and status != 503:
            logger.error("%s %s -> %d: %s", self.command, self.path[:200], status, exc.message)
        self.send_answer(status, error_body(status, exc.message, extra), headers=headers)
