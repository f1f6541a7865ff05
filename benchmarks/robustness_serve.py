"""Hostile requests against ``gamerec serve``: every one must get a 4xx or be cut off in time.

Run: python benchmarks/robustness_serve.py                  (about two minutes)
     python benchmarks/robustness_serve.py --requests 2000 --data-dir gamerec-data
     python benchmarks/robustness_serve.py --skip-hostile --phases expensive

Starts ``gamerec serve`` as a subprocess on a free loopback port (with a token, a 1 s request
timeout and the default 1 MB body cap), warms it up, records its RSS, then sends seeded hostile
requests from a few threads, each on its own connection: invalid JSON and UTF-8, wrong types,
huge, negative and fractional ``top_k``, 10 MB bodies (with and without ``Expect:
100-continue``), unicode in paths, queries and payloads (Unicode digits as appids included),
unknown paths and methods, broken request lines and headers, request smuggling (repeated
``Content-Length``, ``Transfer-Encoding`` beside it or repeated, NBSP and ``\x85`` as
separators), wrong and missing tokens, deep nesting, slow partial headers and idle sockets that
send nothing. Then a flood of idle sockets from this one address, during which ``/health`` must
still answer.

A request passes when its answer is a 4xx JSON error ``{"error": {"code", "message"}}`` with no
traceback (for a smuggling attempt: one answer, then the connection closed), or, for the slow
and idle ones, when the server closes the connection (with or without a 408) within its
timeout. Afterwards the server must still answer ``/health`` and a valid
``/recommend``, and its RSS must be within a few MB of the warmed-up value.

Then the pressure phases, each ``--pressure-seconds`` (15) long, against ``gamerec serve`` at
its defaults (one worker process per core), while ``/health`` is asked from another address
every 0.25 s (from a process of its own) and the workers' RSS is sampled:

* header-phase fill: 24 addresses keep 32 connections each that sent ``G`` and nothing more
  (each one the server closes is opened again);
* header flood: 8 addresses x 32 clients send requests whose headers are 99 lines of 64 KB
  (~6.5 MB), over and over;
* expensive flood: 8 keep-alive clients from one address send the most expensive
  ``/recommend`` the server accepts (10,000 games of the catalog, its largest ``top_k``) while
  a client from another address (in a process of its own) sends normal ones.

A phase passes when every ``/health`` got 200 within 1 s and no answer was an unexpected 5xx
(503 to a connection past the connection limit is expected); the expensive flood also needs
the normal requests' p99 under 100 ms.

The generator and the checker (``hostile_requests``, ``send``, ``judge``) are importable: the
test suite runs a few hundred of them against a server in a thread.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import random
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

TOKEN = "robustness-token"
BIG_BODY_BYTES = 10_000_000
_BIG_BODY = b'{"time_played": {"620": ' + b"1" * (BIG_BODY_BYTES - 30) + b"}}"


@dataclass(frozen=True)
class Hostile:
    """One request: the bytes to send, and whether the server should time it out."""

    kind: str
    head: bytes  # request line + headers (+ a small body), sent at once
    body: bytes = b""  # a large body sent after the head, while the answer is read
    slow: bool = False  # a partial request the server must cut off by its timeout
    dribble: bool = False  # send ``head`` a byte at a time, slowly (never finishes in time)
    closes: bool = False  # one answer, then the server must close (what follows is not read)


@dataclass
class Outcome:
    status: int | None  # None: no answer (closed, or our read timed out)
    body: bytes
    closed: bool  # the server closed the connection
    seconds: float
    error: str = ""


def _request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    token: str | None = TOKEN,
    extra: str = "",
    length: str | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if method in ("POST", "PUT", "PATCH") or body:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _post(payload: object) -> bytes:
    return _request("POST", "/recommend", json.dumps(payload, ensure_ascii=False).encode())


#: (field, value) pairs /recommend must refuse: wrong types (422), an unknown genre (404); an
#: unknown user is answered like a new one, so it is not among them
_INVALID_FIELDS: list[tuple[str, object]] = [
    ("user_id", 42),
    ("user_id", ""),
    ("user_id", ["u"]),
    ("user_id", "u" * 300),
    ("time_played", 7),
    ("time_played", "none"),
    ("time_played", [620]),
    ("time_played", {"abc": 10}),
    ("time_played", {"-5": 10}),
    ("time_played", {"6.2": 1}),
    ("time_played", {"1" * 30: 1}),
    ("time_played", {"620": "10"}),
    ("time_played", {"620": None}),
    ("time_played", {"620": -5}),
    ("time_played", {"620": True}),
    ("time_played", {"620": [1]}),
    ("time_played", {"620": 1e30}),
    ("achievements", [1]),
    ("achievements", {"620": 1.5}),
    ("achievements", {"620": -1}),
    ("achievements", {"620": "3"}),
    ("genres", "Action"),
    ("genres", [3]),
    ("genres", ["NotAGenre"]),
    ("genres", {"a": 1}),
    ("genres", ["x"] * 100),
    ("exclude_owned", "yes"),
    ("exclude_owned", 1),
    ("exclude_owned", None),
    ("extra", 1),
    ("TOP_K", 5),
    ("top_k", None),
]
_TOP_K: list[object] = [0, -1, -(10**9), 1001, 10**30, 2.0, 2.5, "5", None, True, [5], {"k": 5}]


def _invalid_json(rng: random.Random) -> bytes:
    valid = json.dumps({"time_played": {"620": 600}, "top_k": 5})
    return rng.choice(
        [
            valid[: rng.randrange(1, len(valid) - 1)].encode(),
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
            b'{"top_k": NaN}',
            b'{"time_played": {"620": Infinity}}',
            b"\xff\xfe" + valid.encode("utf-16-le"),
            b"{'top_k': 5}",
            b'{"top_k": 5,}',
            b"",
        ]
    )


def _unicode(rng: random.Random) -> bytes:
    text = rng.choice(["ポータル", "💥🎮", "Ünïcödé", "\u202egnp.exe", "null\u0000byte", "ß" * 50])
    return rng.choice(
        [
            _post({"user_id": text, "genres": [text]}),  # an unknown user alone is answered
            _post({"genres": [text]}),
            _post({"time_played": {text: 60}}),
            _request("GET", "/similar/" + quote(text)),
            _request("GET", "/similar/%FF%FE%FD"),
            _request("GET", "/similar/%C2%B2"),  # Unicode digits are not appids
            _request("GET", "/similar/%EF%BC%96%EF%BC%92%EF%BC%90"),
            _request("GET", "/items?appids=%D9%A3,620"),
            _post({"time_played": {"²": 60}}),
            _post({"achievements": {"６２０": 3}}),
            _request("GET", "/items?q=%C3%28&limit=5"),
            _request("GET", "/" + quote(text)),
            _request("POST", "/recommend", b'{"user_id": "\\ud800", "genres": ["\\udfff"]}'),
        ]
    )


def _chunked() -> bytes:
    body = b'{"top_k": 3}'
    head = _request("POST", "/recommend", extra="Transfer-Encoding: chunked", length=None)
    head = head.replace(b"Content-Length: 0\r\n", b"")
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


def _protocol(rng: random.Random) -> bytes:
    body = b'{"top_k": 3}'
    many_headers = b"".join(b"X-%d: y\r\n" % i for i in range(120))
    return rng.choice(
        [
            b"GARBAGE\r\n\r\n",
            b"GET /health HTTP/9.x\r\n\r\n",
            b"GET /health HTTP/1.1 extra\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS hello
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/1.1\r\n" + many_headers + b"\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nY: " + b"z" * 70_000 + b"\r\n\r\n",
            _request("POST", "/recommend", body, length="12abc"),
            _request("POST", "/recommend", body, length="-5"),
            _request("POST", "/recommend", body, length="\u00b2"),
            _request("POST", "/recommend", body, extra="Content-Length: 99"),
            _request("POST", "/recommend", body, length=str(len(body) + 40)),  # never completes
            _chunked(),
            _request("POST", "/recommend", body, content_type=None),
            _request("POST", "/recommend", body, content_type="text/plain"),
            _request("POST", "/recommend", body, content_type="application/x-www-form-urlencoded"),
            _request("POST", "/recommend", body, content_type="application/json; charset=latin-1"),
            _request("GET", "/items?" + "&".join(f"f{i}=1" for i in range(40))),
        ]
    )


#: a request hidden in a body whose end two parties could see differently
_HIDDEN = b"GET /similar/620 HTTP/1.1\r\nHost: x\r\n\r\n"


def _smuggling(rng: random.Random) -> bytes:
    json_post = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    return rng.choice(
        [
            b"GET /health HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" + _HIDDEN,
            b"GET /health HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
            % len(_HIDDEN)
            + _HIDDEN,
            json_post + auth + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" + _HIDDEN,
            json_post
            + auth
            + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"
            + b"Content-Length: 2\r\n\r\n{}"
            + _HIDDEN,
            json_post
            + auth
            + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}"
            + _HIDDEN,
            json_post + auth + b"Transfer-Encoding: gzip\r\n\r\n{}" + _HIDDEN,
            b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + _HIDDEN,
            json_post + auth + b"Content-Length: \xa02\r\n\r\n{}" + _HIDDEN,
            json_post + auth + b"Content-Length: 2\x85\r\n\r\n{}" + _HIDDEN,
            b"GET\xa0/health\xa0HTTP/1.1\r\nHost: x\r\n\r\n" + _HIDDEN,
            b"GET /health HTTP/1.1\x85\r\nHost: x\r\n\r\n" + _HIDDEN,
        ]
    )


def _params(rng: random.Random) -> bytes:
    return _request(
        "GET",
        rng.choice(
            [
                "/similar/620?k=-1",
                "/similar/620?k=0",
                "/similar/620?k=99999999999",
                "/similar/620?k=2.5",
                "/similar/620?k=1&k=2",
                "/similar/620?bogus=1",
                "/similar/999999999",
                "/similar/" + "x" * 300,
                "/items",
                "/items?q=",
                "/items?q=" + "a" * 300,
                "/items?q=portal&appids=620",
                "/items?appids=abc,-1",
                "/items?q=portal&limit=0",
                "/items?q=portal&limit=1000",
                "/health?x=1",
            ]
        ),
    )


def _paths(rng: random.Random) -> bytes:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
    path = rng.choice(
        [
            "/nope",
            "/recommend/",
            "/admin",
            "/../../etc/passwd",
            "/%2e%2e/",
            "/similar/",
            "/health/",
            "/index.html",
            "/static/index.html",
            "/" + "x" * 2000,
            "/items/620",
        ]
    )
    if method != "GET" and rng.random() < 0.5:  # a known path, the wrong method: 405
        path = rng.choice(
            ["/health", "/items", "/similar/620", "/"] + ["/recommend"] * (method != "POST")
        )
    return _request(method, path, b"" if method == "GET" else b"{}")


def hostile_requests(n: int, seed: int = 0, max_top_k: int = 1000) -> Iterator[Hostile]:
    """``n`` seeded hostile requests of every kind (about 1% slow, 2% with a 10 MB body)."""
    rng = random.Random(seed)
    kinds = [
        ("invalid_json", 14),
        ("wrong_types", 20),
        ("top_k", 10),
        ("unicode", 9),
        ("unknown_path", 10),
        ("protocol", 12),
        ("params", 9),
        ("token", 9),
        ("deep", 4),
        ("big_body", 2),
        ("slow", 1),
        ("smuggling", 6),
        ("idle", 1),
    ]
    names = [name for name, _ in kinds]
    weights = [weight for _, weight in kinds]
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        if kind == "invalid_json":
            yield Hostile(kind, _request("POST", "/recommend", _invalid_json(rng)))
        elif kind == "wrong_types":
            field, value = rng.choice(_INVALID_FIELDS)
            yield Hostile(kind, _post({"time_played": {"620": 600}, field: value}))
        elif kind == "top_k":
            top_k = rng.choice([*_TOP_K, max_top_k + 1])
            yield Hostile(kind, _post({"time_played": {"620": 60}, "top_k": top_k}))
        elif kind == "unicode":
            yield Hostile(kind, _unicode(rng))
        elif kind == "unknown_path":
            yield Hostile(kind, _paths(rng))
        elif kind == "protocol":
            yield Hostile(kind, _protocol(rng))
        elif kind == "params":
            yield Hostile(kind, _params(rng))
        elif kind == "token":
            token = rng.choice([None, "", "wrong", TOKEN + "x", TOKEN[:-1], "ü" * 10])
            path = rng.choice(["/recommend", "/items?q=portal", "/similar/620", "/admin/reload"])
            method = "POST" if path in ("/recommend", "/admin/reload") else "GET"
            yield Hostile(
                kind, _request(method, path, b"{}" if method == "POST" else b"", token=token)
            )
        elif kind == "deep":
            depth = rng.choice([10_000, 100_000])
            body = rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
            if rng.random() < 0.3:
                body = b'{"top_k": ' + b"9" * 5000 + b"}"
            yield Hostile(kind, _request("POST", "/recommend", body[:900_000]))
        elif kind == "big_body":
            expect = "Expect: 100-continue" if rng.random() < 0.5 else ""
            head = _request("POST", "/recommend", extra=expect, length=str(len(_BIG_BODY)))
            yield Hostile(kind, head, body=_BIG_BODY)
        elif kind == "smuggling":
            yield Hostile(kind, _smuggling(rng), closes=True)
        elif kind == "idle":  # connects and sends nothing
            yield Hostile(kind, b"", slow=True)
        else:  # slow: a partial request, stalled or dribbled
            head = b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
            yield Hostile(kind, head, slow=True, dribble=rng.random() < 0.5)


def _read_answer(sock: socket.socket) -> tuple[int | None, bytes, bool]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return (_status(data), data, True)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    closed = False
    try:
        sock.settimeout(2.0)
        closed = sock.recv(1) == b""
    except OSError:
        closed = True
    return (_status(head), body, closed)


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def send(host: str, port: int, request: Hostile, timeout_s: float) -> Outcome:
    """Send one hostile request on a fresh connection; read the answer (or the close)."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s + 5) as sock:
            if request.dribble:
                for byte in request.head:
                    sock.sendall(bytes([byte]))
                    time.sleep(timeout_s / 4)
                    if time.monotonic() - started > timeout_s + 3:
                        break
            elif request.head:
                sock.sendall(request.head)
            if request.body:
                with suppress(OSError):  # refused before it was read: read the answer
                    sock.sendall(request.body)
            status, body, closed = _read_answer(sock)
    except OSError as exc:
        return Outcome(None, b"", True, time.monotonic() - started, f"{type(exc).__name__}")
    return Outcome(status, body, closed, time.monotonic() - started)


def judge(request: Hostile, outcome: Outcome, timeout_s: float) -> str:
    """'' when the server behaved, else what was wrong."""
    if request.slow:
        if outcome.status not in (None, 408):
            return f"a partial request got {outcome.status}"
        if not outcome.closed:
            return "a partial request was left open"
        if outcome.seconds > timeout_s + 3:
            return f"a partial request was cut off only after {outcome.seconds:.1f} s"
        return ""
    if outcome.status is None:
        return f"no answer ({outcome.error or 'closed'})"
    if not 400 <= outcome.status < 500:
        return f"status {outcome.status}"
    if request.closes and not outcome.closed:
        return "the connection stayed open after an ambiguous request (smuggling)"
    if b"Traceback" in outcome.body or b'File "' in outcome.body:
        return "a traceback in the answer"
    try:
        error = json.loads(outcome.body)["error"]
        if not (isinstance(error["code"], str) and isinstance(error["message"], str)):
            return "a malformed error body"
    except (ValueError, KeyError, TypeError):
        return f"not a JSON error body: {outcome.body[:80]!r}"
    return ""


def idle_flood(host: str, port: int, sockets: int = 300) -> tuple[int | None, float]:
    """Open ``sockets`` idle connections from this address, then ask ``/health`` (status, s)."""
    held: list[socket.socket] = []
    try:
        for _ in range(sockets):
            with suppress(OSError):
                held.append(socket.create_connection((host, port), timeout=5))
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status = _read_answer(sock)[0]
        except OSError:
            status = None
        return status, time.monotonic() - started
    finally:
        for sock in held:
            sock.close()


def run(
    host: str, port: int, requests: list[Hostile], timeout_s: float, workers: int = 8
) -> tuple[Counter[str], list[tuple[str, str]]]:
    """Send ``requests`` (slow ones on their own threads); return status counts and failures."""
    counts: Counter[str] = Counter()
    failures: list[tuple[str, str]] = []

    def one(request: Hostile) -> tuple[Hostile, Outcome]:
        return request, send(host, port, request, timeout_s)

    slow = [r for r in requests if r.slow]
    with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(2 * workers) as waiting:
        stalled = [waiting.submit(one, r) for r in slow]  # beside the others: each waits
        answered = list(pool.map(one, [r for r in requests if not r.slow]))
        answered += [future.result() for future in stalled]
    for request, outcome in answered:
        counts[str(outcome.status or "closed")] += 1
        problem = judge(request, outcome, timeout_s)
        if problem:
            failures.append((request.kind, problem))
    return counts, failures


# ---------------------------------------------------------------------------- pressure
#: the source addresses of each kind of client (every 127.x.y.z is this machine's loopback)
FILL_ADDRESSES = [f"127.0.1.{n}" for n in range(1, 25)]
FLOOD_ADDRESSES = [f"127.0.2.{n}" for n in range(1, 9)]
EXPENSIVE_ADDRESS = "127.0.3.1"
NORMAL_ADDRESS = "127.0.4.1"
PROBE_ADDRESS = "127.0.5.1"
NORMAL_PAYLOAD = {"time_played": {"620": 600, "400": 120, "570": 3000}, "top_k": 10}


def _connect(host: str, port: int, source: str, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def _probe_health(host: str, port: int, every_s: float, stop: Any, out: Any) -> None:
    answers: list[tuple[int | None, float]] = []
    while not stop.is_set():
        started = time.monotonic()
        status: int | None = None
        try:
            connection = http.client.HTTPConnection(
                host, port, timeout=5, source_address=(PROBE_ADDRESS, 0)
            )
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            status = response.status
            connection.close()
        except (OSError, http.client.HTTPException):
            pass
        answers.append((status, time.monotonic() - started))
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))
    out.send(answers)


class HealthProbe:
    """``GET /health`` from an address of its own every ``every_s`` while running, from a
    process of its own (the load generator's threads must not slow its clock): each
    answer's status and seconds (None: no answer). Enter it before starting threads."""

    def __init__(self, host: str, port: int, every_s: float = 0.25):
        self.answers: list[tuple[int | None, float]] = []
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe_health, args=(host, port, every_s, self._stop, send), daemon=True
        )

    def __enter__(self) -> HealthProbe:
        self._process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.answers = self._receive.recv()
        self._process.join(15)

    def verdict(self, within_s: float = 1.0) -> str:
        """'' when every probe got 200 within ``within_s``, else what went wrong."""
        late = [(s, t) for s, t in self.answers if s != 200 or t > within_s]
        if not self.answers:
            return "no /health probe ran"
        if late:
            shown = ", ".join(f"{s} in {t:.2f} s" for s, t in late[:5])
            return f"{len(late)} of {len(self.answers)} /health probes failed or were late: {shown}"
        return ""

    def summary(self) -> str:
        seconds = sorted(t for _, t in self.answers)
        codes = Counter(str(s) for s, _ in self.answers)
        worst = seconds[-1] if seconds else float("nan")
        return f"/health from another address: {dict(codes)}, slowest {worst * 1000:.0f} ms"


def header_phase_fill(host: str, port: int, seconds: float, per_address: int = 32) -> Counter[str]:
    """Every fill address keeps ``per_address`` connections that sent ``G`` and nothing more;
    one the server closes is opened again (at most every 50 ms each). Returns what the
    server did to them: closed (evicted or timed out), answered (408, 503, ...)."""
    selector = selectors.DefaultSelector()
    outcomes: Counter[str] = Counter()
    next_open: dict[tuple[str, int], float] = {}

    def open_one(slot: tuple[str, int]) -> None:
        try:
            sock = _connect(host, port, slot[0])
            sock.sendall(b"G")
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, slot)
        except OSError:
            outcomes["connect failed"] += 1
            next_open[slot] = time.monotonic() + 0.05

    for address in FILL_ADDRESSES:
        for n in range(per_address):
            open_one((address, n))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            outcomes[f"answered {_status(data)}" if data else "closed"] += 1
            selector.unregister(sock)
            sock.close()
            next_open[key.data] = time.monotonic() + 0.05
        now = time.monotonic()
        for slot, when in list(next_open.items()):
            if when <= now:
                del next_open[slot]
                open_one(slot)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return outcomes


def header_flood(
    host: str, port: int, seconds: float, per_address: int = 32, lines: int = 99
) -> Counter[str]:
    """From each flood address, ``per_address`` clients that each send a request whose
    headers are ``lines`` lines of 64 KB (~6.5 MB), read the answer, and start again."""
    filler = b"y" * 65_000
    block = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (n, filler) for n in range(lines)
    )
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(address: str) -> None:
        while time.monotonic() < deadline:
            try:
                with _connect(host, port, address) as sock:
                    with suppress(OSError):  # refused before all of it was read
                        sock.sendall(block + b"\r\n")
                    status = _status(sock.recv(65536))
            except OSError:
                status = None
            with lock:
                outcomes[str(status or "closed")] += 1

    threads = [
        threading.Thread(target=client, args=(address,), daemon=True)
        for address in FLOOD_ADDRESSES
        for _ in range(per_address)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return outcomes


def _recommend(connection: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> int:
    connection.request("POST", "/recommend", body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def _normal_client(host: str, port: int, seconds: float, auth: dict[str, str], out: Any) -> None:
    """Normal /recommend requests one after another from NORMAL_ADDRESS (in a process of its
    own, so the load generator's threads do not slow its clock); sends (statuses, latencies)."""
    body = json.dumps(NORMAL_PAYLOAD).encode()
    headers = {**auth, "Content-Type": "application/json"}
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    connection = http.client.HTTPConnection(
        host, port, timeout=30, source_address=(NORMAL_ADDRESS, 0)
    )
    time.sleep(0.5)  # the flood under way first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status = _recommend(connection, body, headers)
        except (OSError, http.client.HTTPException):
            connection.close()
            status = 0
        latencies.append(time.monotonic() - started)
        statuses[f"normal {status or 'failed'}"] += 1
    connection.close()
    out.send((statuses, latencies))


def expensive_flood(
    host: str,
    port: int,
    seconds: float,
    auth: dict[str, str],
    appids: list[int],
    clients: int = 8,
) -> tuple[Counter[str], list[float]]:
    """``clients`` keep-alive clients from one address send the most expensive /recommend
    the server accepts (10,000 games of the catalog, ``appids``, played for random minutes,
    and its largest top_k) while a client from another address sends a normal one after
    another. Returns the statuses (expensive and normal) and the normal requests' latencies
    in seconds."""
    health = json.loads(_get(host, port, "/health"))
    rng = random.Random(0)
    expensive = json.dumps(
        {
            "time_played": {str(a): rng.randrange(1, 100_000) for a in appids[:10_000]},
            "top_k": health["max_top_k"],
        }
    ).encode()
    headers = {**auth, "Content-Type": "application/json"}
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    normal = multiprocessing.get_context("fork").Process(
        target=_normal_client, args=(host, port, seconds, auth, send), daemon=True
    )
    normal.start()  # before any thread of this process starts: a plain fork
    deadline = time.monotonic() + seconds + 0.5

    def loop() -> None:
        connection = http.client.HTTPConnection(
            host, port, timeout=30, source_address=(EXPENSIVE_ADDRESS, 0)
        )
        while time.monotonic() < deadline:
            try:
                status = _recommend(connection, expensive, headers)
            except (OSError, http.client.HTTPException):
                connection.close()
                status = 0
            with lock:
                statuses[f"expensive {status or 'failed'}"] += 1
        connection.close()

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    normal_statuses, latencies = receive.recv()
    normal.join(10)
    for thread in threads:
        thread.join(seconds + 60)
    return statuses + normal_statuses, latencies


def _get(host: str, port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


def worker_rss_mb(pid: int) -> list[float]:
    """Resident memory of the server's worker processes (or of the server, if it has none)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    workers.append(int(entry.name))
    from _serve_common import rss_mb

    return [rss_mb(worker) for worker in sorted(workers) or [pid]]


class RssSampler:
    """The largest worker RSS seen, sampled every ``every_s`` while running."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(OSError, ValueError):
                self.peak = max([self.peak, *worker_rss_mb(self.pid)])
            self._stop.wait(self.every_s)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else math.nan


def _connection_phase(name: str, phase: Any, server: Any, seconds: float) -> bool:
    """One phase that opens connections: /health probed throughout; True: it passed."""
    with (
        HealthProbe(server.host, server.port) as probe,
        RssSampler(server.process.pid) as sampler,
    ):
        outcomes = phase(server.host, server.port, seconds)
    problem = probe.verdict()
    fives = sum(n for code, n in outcomes.items() if code.split()[-1].startswith("5"))
    unexpected = fives - outcomes.get("answered 503", 0)  # 503: the connection limit
    print(f"{name} ({seconds:.0f} s): {dict(sorted(outcomes.items()))}")
    print(f"  {probe.summary()}; peak worker RSS {sampler.peak:.0f} MB")
    if problem or unexpected:
        print(f"  FAIL: {problem or f'{unexpected} unexpected responses of 5xx'}")
    return not problem and not unexpected


def catalog_appids(data_dir: Path) -> list[int]:
    """The appids of the workspace's catalog, most owned first."""
    import pyarrow.parquet as pq

    items = pq.read_table(data_dir / "processed" / "items.parquet", columns=["appid", "n_users"])
    rows = sorted(
        (row for row in items.to_pylist() if row["appid"] is not None),
        key=lambda row: -row["n_users"],
    )
    return [int(row["appid"]) for row in rows]


def _expensive_phase(server: Any, seconds: float, auth: dict[str, str], data_dir: Path) -> bool:
    appids = catalog_appids(data_dir)
    with (
        HealthProbe(server.host, server.port) as probe,
        RssSampler(server.process.pid) as sampler,
    ):
        statuses, latencies = expensive_flood(server.host, server.port, seconds, auth, appids)
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    fives = sum(n for code, n in statuses.items() if code.split()[-1].startswith("5"))
    print(f"expensive flood ({seconds:.0f} s): {dict(sorted(statuses.items()))}")
    print(
        f"  normal /recommend from another address: {len(latencies)} requests, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {probe.summary()}; "
        f"peak worker RSS {sampler.peak:.0f} MB"
    )
    problems = [probe.verdict()] if probe.verdict() else []
    if fives:
        problems.append(f"{fives} responses of 5xx")
    if not p99 < 100.0:
        problems.append(f"normal p99 {p99:.1f} ms is not under 100 ms")
    for problem in problems:
        print(f"  FAIL: {problem}")
    return not problems


def pressure(data_dir: Path, seconds: float, phases: set[str]) -> bool:
    """The header-phase fill, the header flood and the expensive flood against ``gamerec
    serve`` at its defaults (a worker per core), /health probed from another address
    throughout; prints each phase's outcome and returns whether all of them passed."""
    from _serve_common import start_server

    server = start_server(data_dir, env={"GAMEREC_SERVE__TOKEN": TOKEN}, processes=None)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ok = True
    try:
        good = json.dumps(NORMAL_PAYLOAD).encode()
        warm = http.client.HTTPConnection(server.host, server.port, timeout=30)
        for _ in range(200):
            _recommend(warm, good, {**auth, "Content-Type": "application/json"})
        warm.close()
        time.sleep(0.5)
        rss = worker_rss_mb(server.process.pid)
        print(f"workers: {len(rss)}, RSS after warm-up {', '.join(f'{r:.0f}' for r in rss)} MB")
        if "fill" in phases:
            ok = _connection_phase("header-phase fill", header_phase_fill, server, seconds) and ok
        if "flood" in phases:
            ok = _connection_phase("header flood", header_flood, server, seconds) and ok
        if "expensive" in phases:
            ok = _expensive_phase(server, seconds, auth, data_dir) and ok
        after = worker_rss_mb(server.process.pid)
        print(f"RSS afterwards: {', '.join(f'{r:.0f}' for r in after)} MB")
        ok = ok and json.loads(_get(server.host, server.port, "/health"))["status"] == "ok"
    finally:
        code = server.stop()
    print(f"server exit code after SIGTERM: {code}")
    return ok and code == 0


def hostile(data_dir: Path, args: argparse.Namespace) -> bool:
    """The seeded hostile requests, then an idle flood, against one process; True: passed."""
    from _serve_common import get_json, post_json, rss_mb, start_server

    timeout_s = 1.0
    server = start_server(
        data_dir,
        env={"GAMEREC_SERVE__TOKEN": TOKEN, "GAMEREC_SERVE__TIMEOUT_S": str(timeout_s)},
        log_level="warning",
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        good = {"time_played": {"620": 600, "400": 120}, "top_k": 10}
        expected = post_json(server.url + "/recommend", good, auth)
        # the same mix first, so that the allocator and the thread-stack cache reach their
        # working size before the measured run (they grow with the peak concurrency, then stay)
        warm = list(hostile_requests(2000, seed=args.seed + 1))
        run(server.host, server.port, warm, timeout_s, args.workers)
        before = rss_mb(server.process.pid)
        started = time.perf_counter()
        requests = list(hostile_requests(args.requests, seed=args.seed))
        counts, failures = run(server.host, server.port, requests, timeout_s, args.workers)
        seconds = time.perf_counter() - started
        flood_status, flood_seconds = idle_flood(server.host, server.port)
        if flood_status != 200 or flood_seconds > 2.0:
            failures.append(("idle_flood", f"/health got {flood_status} in {flood_seconds:.1f} s"))
        after = rss_mb(server.process.pid)
        health = get_json(server.url + "/health")
        again = post_json(server.url + "/recommend", good, auth)
    finally:
        code = server.stop()
    kinds = Counter(r.kind for r in requests)
    print(f"{len(requests):,} hostile requests in {seconds:.1f} s: {dict(sorted(kinds.items()))}")
    print(f"answers: {dict(sorted(counts.items()))}")
    fives = sum(n for code, n in counts.items() if code.startswith("5"))
    print(f"responses of 5xx: {fives}")
    print(
        f"/health with 300 idle sockets open from this address: {flood_status} "
        f"in {flood_seconds:.2f} s"
    )
    print(f"RSS before {before:.1f} MB, after {after:.1f} MB ({after - before:+.1f} MB)")
    print(f"healthy afterwards: {health['status']}; same answer as before: {again == expected}")
    print(f"server exit code after SIGTERM: {code}")
    for kind, problem in failures[:20]:
        print(f"  FAIL {kind}: {problem}")
    ok = not failures and health["status"] == "ok" and again == expected and code == 0
    ok = ok and abs(after - before) < 5.0
    print(f"{'PASS' if ok else 'FAIL'}: {len(failures)} misbehaved answers")
    return ok


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _serve_common import ensure_workspace, machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="a workspace with processed/, model/, index/")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--pressure-seconds", type=float, default=15.0, help="length of each pressure phase"
    )
    parser.add_argument("--skip-hostile", action="store_true", help="the pressure phases only")
    parser.add_argument("--skip-pressure", action="store_true", help="the hostile requests only")
    parser.add_argument(
        "--phases",
        default="fill,flood,expensive",
        help="pressure phases to run (comma-separated: fill, flood, expensive)",
    )
    args = parser.parse_args()

    data_dir = ensure_workspace(args.data_dir)
    print(machine())
    ok = True
    if not args.skip_hostile:
        ok = hostile(data_dir, args) and ok
    if not args.skip_pressure:
        passed = pressure(data_dir, args.pressure_seconds, set(args.phases.split(",")))
        print(f"{'PASS' if passed else 'FAIL'}: pressure phases")
        ok = passed and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
