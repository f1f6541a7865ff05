"""The endpoints of ``gamerec serve`` over one :class:`Recommender`, its token, and reloading.

:class:`GamerecServer` holds what the endpoints share (the Recommender, swapped atomically by
:meth:`GamerecServer.reload`, the token, the page); :class:`RoutesHandler` maps a parsed
request to an endpoint. Framing, limits and deadlines are :mod:`gamerec.runtime.protocol`'s.
"""

from __future__ import annotations

import hmac
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from importlib import resources
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import parse_qs, unquote, urlsplit

from gamerec.dataio.ids import is_appid_text
from gamerec.errors import (
    ArtifactError,
    ConfigError,
    GamerecError,
    InvalidRequestError,
    RequestError,
)
from gamerec.runtime.protocol import (
    SP_HTAB,
    BoundedHTTPServer,
    RequestHandler,
    json_bytes,
    logger,
)
from gamerec.runtime.recommender import HTTP
from gamerec.runtime.schema import (
    MAX_ITEMS_LIMIT,
    MAX_TEXT,
    decode_json,
    int_param,
    parse_recommend_request,
)

if TYPE_CHECKING:
    from gamerec.runtime.recommender import Recommender

__all__ = ["DEFAULT_LIMITS", "GamerecServer", "RoutesHandler", "ServerLimits"]


class ServerLimits(TypedDict, total=False):
    """:class:`GamerecServer`'s keyword options (``serve`` passes them on); see DEFAULT_LIMITS.

    ``token``: the bearer token every route but ``/health`` and the page needs (None: open);
    ``timeout_s``: a request's line, headers and body must arrive within it of its first
    byte, ``header_timeout_s`` its line and headers; ``max_header_bytes``: their size
    together; ``idle_timeout_s``: a connection that sends no request for this long is closed;
    ``max_workers``: requests computing at once; ``max_connections`` open at once, of which
    ``max_connections_per_client`` from one address; ``default_top_k``: when none is asked;
    ``max_top_k``: the most a request may ask (the Recommender's own cap applies too);
    ``max_history``: a /recommend history is scored by at most this many most-played games.
    """

    token: str | None
    max_body_bytes: int
    max_header_bytes: int
    timeout_s: float
    header_timeout_s: float
    idle_timeout_s: float
    max_workers: int
    max_connections: int
    max_connections_per_client: int
    default_top_k: int
    max_top_k: int
    max_history: int


DEFAULT_LIMITS: ServerLimits = {
    "token": None,
    "max_body_bytes": 1_000_000,
    "max_header_bytes": 32 * 1024,
    "timeout_s": 10.0,
    "header_timeout_s": 5.0,
    "idle_timeout_s": 5.0,
    "max_workers": 2,
    "max_connections": 256,
    "max_connections_per_client": 32,
    "default_top_k": 10,
    "max_top_k": 100,
    "max_history": 250,
}


def _token_bytes(token: str | None) -> bytes | None:
    """The bearer token as UTF-8, trimmed (a token read from a file keeps its line end)."""
    if token is None:
        return None
    if not token.strip():
        raise ConfigError(
            "serve.token is empty or blank, which would turn authentication off; set a token "
            "or leave it unset"
        )
    return token.strip().encode("utf-8")


def _read_page() -> bytes:
    return resources.files("gamerec.runtime").joinpath("static/index.html").read_bytes()


class GamerecServer(BoundedHTTPServer):
    """The HTTP server over one Recommender, swapped atomically by :meth:`reload`."""

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
        self.token = _token_bytes(options["token"])
        self.default_top_k = options["default_top_k"]
        self.max_top_k = options["max_top_k"]
        self.max_history = options["max_history"]
        self.recommender = loader()
        self._check(self.recommender)  # fail at start rather than on the first request
        self.page = _read_page()
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None
        #: in a forked worker, the process that passes signals on to every worker
        self.group_leader: int | None = None
        self._reload_lock = threading.Lock()
        super().__init__(
            host,
            port,
            RoutesHandler,
            max_body_bytes=options["max_body_bytes"],
            max_header_bytes=options["max_header_bytes"],
            timeout_s=options["timeout_s"],
            header_timeout_s=options["header_timeout_s"],
            idle_timeout_s=options["idle_timeout_s"],
            max_workers=options["max_workers"],
            max_connections=options["max_connections"],
            max_connections_per_client=options["max_connections_per_client"],
        )

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
                self._check(fresh)
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

    def _check(self, recommender: Recommender) -> None:
        """:meth:`Recommender.check`, then trial answers encoded as a request's are: an answer
        that is not JSON (a NaN score) is an ArtifactError here, not a 500 on every request."""
        recommender.check()
        k = min(self.default_top_k, self.max_top_k, recommender.max_top_k)
        appids = recommender.catalog.appids[: recommender.n_items]
        appid = next((int(a) for a in appids if a >= 0), None)
        trials: list[Callable[[], Any]] = []
        if recommender.known_users:
            user = next(iter(recommender.known_users))
            trials.append(lambda: recommender.recommend(user_id=user, k=k).to_dict())
        if appid is not None:
            trials.append(lambda: recommender.recommend(played={appid: 60.0}, k=k).to_dict())
            trials.append(lambda: [a.to_dict() for a in recommender.similar(appid, k)])
        try:
            for trial in trials:
                json_bytes(trial())
        except ValueError as exc:
            raise ArtifactError(
                f"the artifacts give answers that are not finite numbers ({exc}); "
                "run `gamerec train` and `gamerec index` again"
            ) from None

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


_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class RoutesHandler(RequestHandler):
    """The endpoints: which path and method go where, the token, and each answer."""

    server: GamerecServer
    _query: str = ""

    # -------------------------------------------------------------- routing
    def dispatch(self) -> None:
        route, argument, allowed = self._route()
        if self.command not in allowed:
            raise RequestError(
                405,
                f"{self.command[:16]} is not allowed on this path; use {' or '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        route(argument)

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
        supplied = value.strip(SP_HTAB).encode("iso-8859-1")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied, token):
            raise RequestError(
                401,
                "missing or wrong token; send the header Authorization: Bearer <serve.token>",
                headers={"WWW-Authenticate": 'Bearer realm="gamerec"'},
            )

    def _top_k_limit(self, recommender: Recommender) -> int:
        # a request's cost grows with top_k: the server's cap, within the Recommender's own
        return min(self.server.max_top_k, recommender.max_top_k)

    # -------------------------------------------------------------- endpoints
    def _page(self, _: str) -> None:
        self.send_answer(
            200,
            self.server.page,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"},
        )

    def _health(self, _: str) -> None:
        self._params(())
        server = self.server
        recommender = server.recommender
        self.send_json(
            {
                "status": "draining" if server.draining else "ok",
                **recommender.info(),
                "genres": recommender.genres,
                "max_top_k": self._top_k_limit(recommender),
                "max_history": server.max_history,
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
        body = self.read_body(require_json=True)  # read before a slot: a slow client waits
        recommender = self.server.recommender  # read once: a reload cannot split a request
        limit = self._top_k_limit(recommender)
        # decoding and checking a large history costs as much as recommending: in the slot
        with self.server.slot(self.client):
            request = parse_recommend_request(
                decode_json(body),
                limit,
                min(self.server.default_top_k, limit),
                self.server.max_history,
            )
            answers = recommender.recommend(
                user_id=request.user_id,
                history=request.history,
                genres=request.genres,
                k=request.top_k,
                exclude_owned=request.exclude_owned,
                include_dlc=request.include_dlc,
                released_since=request.released_since,
                wording=HTTP,
                games=request.games,
            )
            answer = answers.to_dict()
            if request.left_out:  # the least played, past serve.max_history
                answer["history"]["left_out"] = request.left_out
            encoded = json_bytes(answer)
        self.send_answer(200, encoded)

    def _similar(self, game: str) -> None:
        self._authorize()
        recommender = self.server.recommender
        params = self._params(("k",))
        limit = self._top_k_limit(recommender)
        k = int_param(params, "k", min(self.server.default_top_k, limit), 1, limit)
        if len(game) > MAX_TEXT:
            raise InvalidRequestError(f"the game is longer than {MAX_TEXT} characters")
        key: int | str = int(game) if is_appid_text(game) else game
        with self.server.slot(self.client):
            answers = recommender.similar(key, k, HTTP)
            encoded = json_bytes({"similar": [a.to_dict() for a in answers]})
        self.send_answer(200, encoded)

    def _items(self, _: str) -> None:
        self._authorize()
        recommender = self.server.recommender
        params = self._params(("q", "appids", "limit"))
        limit = int_param(params, "limit", 20, 1, MAX_ITEMS_LIMIT)
        if ("q" in params) == ("appids" in params):
            raise InvalidRequestError("give q (part of a name) or appids (620,400), not both")
        if "appids" in params:
            self.send_json({"items": _items_by_appid(recommender, params["appids"])})
            return
        query = params["q"]
        if not query.strip() or len(query) > MAX_TEXT:
            raise InvalidRequestError(f"q must be 1 to {MAX_TEXT} characters of a game's name")
        with self.server.slot(self.client):
            items = recommender.search_items(query, limit)
        self.send_json({"items": items})

    def _reload(self, _: str) -> None:
        if self.server.token is None:
            raise RequestError(
                403, "reloading over HTTP needs serve.token to be set; or send the server SIGHUP"
            )
        self._authorize()
        self._params(())
        self.read_body(require_json=False)  # ignored, but read so the connection stays usable
        leader = self.server.group_leader
        if leader is not None:  # one of several workers: every one of them must reload
            os.kill(leader, signal.SIGHUP)
            self.send_json({"reload": "requested of every worker; see /health"}, status=202)
            return
        self.send_json(self.server.reload())


def _items_by_appid(recommender: Recommender, appids: str) -> list[dict[str, Any]]:
    """``GET /items?appids=620,400``: the games of these appids that the catalog has."""
    wanted = [a.strip(SP_HTAB) for a in appids.split(",")]
    wanted = [a for a in wanted if a]
    if len(wanted) > MAX_ITEMS_LIMIT or not all(is_appid_text(a) for a in wanted):
        raise InvalidRequestError(f"appids must be up to {MAX_ITEMS_LIMIT} comma-separated appids")
    by_appid = recommender.catalog.by_appid
    return [recommender.item_summary(by_appid[int(a)]) for a in wanted if int(a) in by_appid]
