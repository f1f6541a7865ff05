"""A real HTTP server on 127.0.0.1 that replays recorded SteamSpy, Steam Web API and Steam store
answers.

It records every request (arrival time, path, query, headers) so tests can check politeness
from the server's side, and injects faults on demand: an HTTP status (429 with Retry-After,
500), a slow answer (longer than the client's timeout), a body cut short of its
Content-Length, a well-framed but truncated JSON body, a non-JSON body, an empty page, or a
request that hangs until the server stops.

The recorded data (tests/fixtures, copied from real crawls):

- ``steamspy/all-2025-01-01/page_{0,1,2}.json.gz``: real ``request=all`` pages, served as they
  are; adjacent pages share an appid, as SteamSpy's pages do.
- ``steamspy/appdetails/``: ``379720.json`` (a raw appdetails answer, served verbatim) and
  ``appdetails-1000-apps.csv.gz`` (SteamSpy appdetails fields of 1,000 apps), turned back into
  appdetails answers of the same shape (ints, price strings, a tag->votes object or ``[]``).
- ``steam-webapi/GetOwnedGames_*.json``: two real GetOwnedGames answers, from which
  :func:`synthetic_libraries` derives several players' libraries.
- ``steam-store/appdetails-shard-*.json.gz``: 572 real store ``appdetails`` records without
  their envelope; ``/api/appdetails?appids=N`` answers ``{"N": {"success": true, "data": ...}}``
  for those and ``{"N": {"success": false}}`` for any other app, as the store does. With
  ``store_live_form`` the genres and categories are sent as the live API sends them,
  ``{"id", "description"}`` objects (the recorded records keep only the ids).
"""

from __future__ import annotations

import ast
import csv
import functools
import gzip
import io
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
STEAMSPY_PAGES = FIXTURES / "steamspy" / "all-2025-01-01"
STEAMSPY_DETAILS = FIXTURES / "steamspy" / "appdetails"
STEAM_WEBAPI = FIXTURES / "steam-webapi"
STEAM_STORE = FIXTURES / "steam-store"

#: the first SteamID64 of the synthetic players (Steam's documented example id)
FIRST_STEAMID = 76561197960287930

_DETAIL_INTS = [
    "positive",
    "negative",
    "userscore",
    "average_forever",
    "average_2weeks",
    "median_forever",
    "median_2weeks",
    "ccu",
]


@functools.cache
def recorded_pages() -> dict[int, bytes]:
    """Page number -> the raw ``request=all`` body, exactly as recorded."""
    pages = {}
    for path in STEAMSPY_PAGES.glob("page_*.json.gz"):
        number = int(path.name.removeprefix("page_").split(".")[0])
        pages[number] = gzip.decompress(path.read_bytes())
    return dict(sorted(pages.items()))


def page_appids() -> list[list[int]]:
    """The appids of each recorded page, in page order."""
    return [[int(k) for k in json.loads(body)] for body in recorded_pages().values()]


def _appdetails_from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {"appid": int(row["appid"])}
    for name in ["name", "developer", "publisher", "score_rank", "owners"]:
        record[name] = row[name]
    for name in _DETAIL_INTS:
        record[name] = int(row[name]) if row[name].strip() else 0
    for name in ["price", "initialprice", "discount"]:
        record[name] = row[name] or None
    record["languages"] = row["languages"] or None
    record["genre"] = row["genre"] or None
    tags = ast.literal_eval(row["tags"]) if row["tags"].strip() else []
    record["tags"] = tags if tags else []
    return record


@functools.cache
def recorded_appdetails() -> dict[int, bytes]:
    """Appid -> an appdetails body: the verbatim one where recorded, else rebuilt from the CSV."""
    text = gzip.decompress((STEAMSPY_DETAILS / "appdetails-1000-apps.csv.gz").read_bytes())
    details = {}
    for row in csv.DictReader(io.StringIO(text.decode("utf-8"))):
        record = _appdetails_from_csv_row(row)
        details[record["appid"]] = json.dumps(record).encode()
    for path in STEAMSPY_DETAILS.glob("*.json"):
        details[int(path.stem)] = path.read_bytes()
    return details


def blank_appdetails(appid: int) -> bytes:
    """SteamSpy's answer for an appid it does not know: a record with a null name."""
    record: dict[str, Any] = {
        "appid": appid,
        "name": None,
        "developer": "",
        "publisher": "",
        "score_rank": "",
        "owners": "0 .. 20,000",
        **{name: 0 for name in _DETAIL_INTS},
        "price": None,
        "initialprice": None,
        "discount": None,
        "languages": None,
        "genre": None,
        "tags": [],
    }
    return json.dumps(record).encode()


@functools.cache
def recorded_store_text() -> dict[int, str]:
    """Appid -> the JSON text of its recorded store record, as the shard holds it."""
    records: dict[int, str] = {}
    for path in sorted(STEAM_STORE.glob("appdetails-shard-*.json.gz")):
        for key, record in json.loads(gzip.decompress(path.read_bytes())).items():
            records[int(key)] = json.dumps(record)
    return records


def recorded_store() -> dict[int, dict[str, Any]]:
    """Appid -> its recorded store record (a fresh copy)."""
    return {appid: json.loads(text) for appid, text in recorded_store_text().items()}


#: the store's category names for the ids the recorded records use most (the live API sends
#: ``{"id": 2, "description": "Single-player"}``); others are named "Category N"
_CATEGORY_NAMES = {
    1: "Multi-player",
    2: "Single-player",
    9: "Co-op",
    18: "Partial Controller Support",
    22: "Steam Achievements",
    23: "Steam Cloud",
    28: "Full Controller Support",
    29: "Steam Trading Cards",
    30: "Steam Workshop",
    49: "PvP",
}


def live_form(record: dict[str, Any]) -> dict[str, Any]:
    """A recorded record with genres and categories as the live API sends them: genre ids as
    text (``{"id": "1", "description": "Action"}``), category ids as numbers."""
    from gamerec.dataio.store_records import STORE_GENRES

    live = dict(record)
    if isinstance(record.get("genres"), list):
        live["genres"] = [
            {"id": str(number), "description": STORE_GENRES[number]} for number in record["genres"]
        ]
    if isinstance(record.get("categories"), list):
        live["categories"] = [
            {"id": number, "description": _CATEGORY_NAMES.get(number, f"Category {number}")}
            for number in record["categories"]
        ]
    return live


def store_answer(appid: int, record: dict[str, Any] | None) -> bytes:
    """The store's answer for one app: the record in its envelope, or "success": false."""
    entry: dict[str, Any] = (
        {"success": False} if record is None else {"success": True, "data": record}
    )
    return json.dumps({str(appid): entry}, separators=(",", ":")).encode()


def synthetic_libraries(players: int = 8, seed: int = 0) -> dict[str, bytes]:
    """SteamID64 -> a GetOwnedGames body: seeded samples of the two recorded libraries.

    Each player owns 40-80 of the 129 games of the recorded include_appinfo answer, with their
    recorded playtimes; the last player owns the recorded basic answer's games instead.
    """
    full = json.loads((STEAM_WEBAPI / "GetOwnedGames_include_appinfo.json").read_bytes())
    basic = json.loads((STEAM_WEBAPI / "GetOwnedGames_basic.json").read_bytes())
    rng = random.Random(seed)
    libraries = {}
    for index in range(players):
        steamid = str(FIRST_STEAMID + index)
        if index == players - 1:
            games = basic["response"]["games"]
        else:
            pool = full["response"]["games"]
            games = rng.sample(pool, rng.randint(40, 80))
        answer = {"response": {"game_count": len(games), "games": games}}
        libraries[steamid] = json.dumps(answer).encode()
    return libraries


FaultKind = Literal[
    "status", "slow", "cut", "truncated-json", "not-json", "empty", "hang", "redirect", "gzip"
]


@dataclass
class Fault:
    """What to do instead of the normal answer.

    ``status``: answer ``status`` (with ``retry_after`` as the Retry-After header);
    ``slow``: wait ``seconds`` and then answer normally (the client has usually given up);
    ``cut``: promise the whole body in Content-Length, send half, close the connection;
    ``truncated-json``: a well-framed response whose body is the first half of the JSON;
    ``not-json``: 200 with an HTML page; ``empty``: 200 with ``[]``;
    ``hang``: never answer until the server stops (sets :attr:`ReplayServer.hanging`);
    ``redirect``: answer ``status`` (default 302 here) with ``Location: location`` (the
    request's path and query are appended when ``location`` ends in ``/``);
    ``gzip``: 200 with ``Content-Encoding: gzip`` and ``body`` (already compressed), or the
    normal answer compressed.
    """

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    location: str = ""
    body: bytes | None = None


@dataclass
class _Rule:
    fault: Fault
    match: dict[str, str]
    remaining: int | None  # None: forever


@dataclass
class Recorded:
    """One request as the server saw it."""

    time: float  # time.monotonic() when the request line and headers had arrived
    path: str
    target: str  # the raw request target: path and query string
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    fault: FaultKind | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client may drop a kept-alive connection at any time: after an error status whose
        # body it did not read, the close is a reset. That is no server fault to print (it would
        # land in whatever stderr a test captures at that moment)
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ReplayServer:
    """Serves ``/api.php`` (SteamSpy), ``/IPlayerService/GetOwnedGames/v1/`` (Steam) and
    ``/api/appdetails`` (the Steam store)."""

    def __init__(
        self,
        *,
        pages: dict[int, bytes] | None = None,
        appdetails: dict[int, bytes] | None = None,
        libraries: dict[str, bytes] | None = None,
        api_key: str = "",
        unknown_appids: set[int] | None = None,
        store: dict[int, dict[str, Any]] | None = None,
        store_missing: set[int] | None = None,
        store_live_form: bool = False,
    ) -> None:
        self.pages = recorded_pages() if pages is None else pages
        self.appdetails = recorded_appdetails() if appdetails is None else appdetails
        self.libraries = libraries or {}
        self.api_key = api_key
        self.unknown_appids = unknown_appids or set()
        self.store = recorded_store() if store is None else store
        self.store_missing = store_missing or set()  # recorded apps answered "success": false
        self.store_live_form = store_live_form
        self.hanging = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._rules: list[_Rule] = []
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        # a short poll interval: shutdown() waits up to one interval for the loop to notice
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def steamspy_url(self) -> str:
        return f"{self.base}/api.php"

    @property
    def steam_url(self) -> str:
        return self.base

    @property
    def store_url(self) -> str:
        return f"{self.base}/api/appdetails"

    def store_body(self, appid: int) -> bytes:
        """What the store answers for ``appid`` (without a fault)."""
        record = self.store.get(appid) if appid not in self.store_missing else None
        if record is not None and self.store_live_form:
            record = live_form(record)
        return store_answer(appid, record)

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(self, fault: Fault, *, times: int | None = 1, **match: str | int) -> None:
        """Answer the next ``times`` requests whose query contains ``match`` with ``fault``."""
        with self._lock:
            self._rules.append(_Rule(fault, {k: str(v) for k, v in match.items()}, times))

    def requests(self, **match: str | int) -> list[Recorded]:
        """Recorded requests whose query contains ``match``, in arrival order."""
        wanted = {k: str(v) for k, v in match.items()}
        with self._lock:
            return [r for r in self._requests if wanted.items() <= r.params.items()]

    # -- called from the handler threads ------------------------------------------------------

    def _record(self, recorded: Recorded) -> Fault | None:
        with self._lock:
            self._requests.append(recorded)
            for rule in self._rules:
                if rule.remaining != 0 and rule.match.items() <= recorded.params.items():
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    recorded.fault = rule.fault.kind
                    return rule.fault
        return None

    def _answer(self, recorded: Recorded) -> tuple[int, bytes, str]:
        """The normal answer: (status, body, content type)."""
        params = recorded.params
        if recorded.path == "/api.php":
            request = params.get("request")
            if request == "all":
                return 200, self.pages.get(int(params.get("page", "0")), b"[]"), "application/json"
            if request == "appdetails":
                appid = int(params.get("appid", "0"))
                if appid in self.appdetails and appid not in self.unknown_appids:
                    return 200, self.appdetails[appid], "application/json"
                return 200, blank_appdetails(appid), "application/json"
            if request in ("top100in2weeks", "top100forever", "top100owned"):
                return 200, json.dumps(self.top100(request)).encode(), "application/json"
            if request in ("genre", "tag"):
                found = self.by_genre_or_tag(request, params.get(request, ""))
                return 200, json.dumps(found).encode(), "application/json"
            return 400, b'{"error": "unknown request"}', "application/json"
        if recorded.path == "/api/appdetails":
            text = params.get("appids", "")
            if not (text.isascii() and text.isdigit()):
                return 200, b"null", "application/json"  # the store's answer to a bad request
            return 200, self.store_body(int(text)), "application/json"
        if recorded.path.rstrip("/") == "/IPlayerService/GetOwnedGames/v1":
            key = recorded.headers.get("x-webapi-key") or params.get("key")
            if not self.api_key or key != self.api_key:
                return 403, b"<html><body><h1>Forbidden</h1></body></html>", "text/html"
            steamid = params.get("steamid", "")
            body = self.libraries.get(steamid, b'{"response":{}}')  # unknown: a private profile
            return 200, body, "application/json"
        return 404, b"<html><body>Not Found</body></html>", "text/html"

    @functools.cached_property
    def _page_records(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for body in self.pages.values():
            for key, record in json.loads(body).items():
                records.setdefault(key, record)
        return records

    def top100(self, request: str) -> dict[str, Any]:
        """A deterministic top 100 of the recorded pages for each top100* request."""
        field_name = {
            "top100in2weeks": "ccu",
            "top100forever": "average_forever",
            "top100owned": "positive",
        }[request]
        records = self._page_records
        ranked = sorted(records.items(), key=lambda item: (-int(item[1][field_name]), item[0]))
        return dict(ranked[:100])

    def by_genre_or_tag(self, request: str, name: str) -> dict[str, Any]:
        found = {}
        for appid, body in sorted(self.appdetails.items()):
            record = json.loads(body)
            if request == "genre":
                hit = name in [g.strip() for g in (record.get("genre") or "").split(",")]
            else:
                hit = isinstance(record.get("tags"), dict) and name in record["tags"]
            if hit:
                found[str(appid)] = {k: v for k, v in record.items() if k != "tags"}
        return found


def _make_handler(replay: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(
            self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            arrived = time.monotonic()
            url = urlsplit(self.path)
            recorded = Recorded(
                time=arrived,
                path=url.path,
                target=self.path,
                params=dict(parse_qsl(url.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            fault = replay._record(recorded)
            try:
                self._serve(recorded, fault)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout test): fine

        def _serve(self, recorded: Recorded, fault: Fault | None) -> None:
            if fault is None:
                self._send(*replay._answer(recorded))
                return
            if fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
                body = json.dumps({"error": f"injected HTTP {fault.status}"}).encode()
                self._send(fault.status, body, "application/json", extra)
            elif fault.kind == "slow":
                time.sleep(fault.seconds)
                self._send(*replay._answer(recorded))
            elif fault.kind == "cut":
                _, body, content_type = replay._answer(recorded)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif fault.kind == "truncated-json":
                _, body, content_type = replay._answer(recorded)
                self._send(200, body[: len(body) // 2], content_type)
            elif fault.kind == "not-json":
                page = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
                self._send(200, page, "text/html")
            elif fault.kind == "empty":
                self._send(200, b"[]", "application/json")
            elif fault.kind == "redirect":
                location = fault.location
                if location.endswith("/"):
                    location = location.rstrip("/") + recorded.target
                status = fault.status if 300 <= fault.status < 400 else 302
                self._send(status, b"", "text/plain", {"Location": location})
            elif fault.kind == "gzip":
                body = fault.body
                if body is None:
                    body = gzip.compress(replay._answer(recorded)[1])
                self._send(200, body, "application/json", {"Content-Encoding": "gzip"})
            elif fault.kind == "hang":
                replay.hanging.set()
                replay._stopping.wait(timeout=60)
                self.close_connection = True

    return Handler


#: fetch settings that keep tests fast: no politeness gaps, short timeouts, tiny backoff
FAST_FETCH: dict[str, float | int] = {
    "all_interval_s": 0.0,
    "request_interval_s": 0.0,
    "steam_interval_s": 0.0,
    "store_interval_s": 0.0,
    "timeout_s": 2.0,
    "max_retries": 3,
    "backoff_base_s": 0.005,
    "backoff_max_s": 0.05,
}


def fetch_overrides(
    server: ReplayServer, data_dir: Path, **fetch: float | int | str | None
) -> dict[str, Any]:
    """``Settings.load(overrides=...)`` pointing gamerec at ``server``, with fast fetching."""
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "fetch.steamspy_url": server.steamspy_url,
        "fetch.steam_api_url": server.steam_url,
        "fetch.store_url": server.store_url,
    }
    overrides.update({f"fetch.{name}": value for name, value in {**FAST_FETCH, **fetch}.items()})
    return overrides


def fetch_env(server: ReplayServer, **fetch: float | int | str) -> dict[str, str]:
    """The same as environment variables, for the CLI (CliRunner or a subprocess)."""
    values = {
        "steamspy_url": server.steamspy_url,
        "steam_api_url": server.steam_url,
        "store_url": server.store_url,
        **FAST_FETCH,
        **fetch,
    }
    return {f"GAMEREC_FETCH__{name.upper()}": str(value) for name, value in values.items()}
