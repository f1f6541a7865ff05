"""``gamerec serve``: a small, hardened HTTP/1.1 server over one :class:`Recommender`.

Standard library only (``http.server``), tuned: HTTP/1.1 keep-alive, ``TCP_NODELAY``, one
buffered write per response, a large listen backlog, daemon threads. Never imports torch or
pandas. The parts, as uvicorn splits its own:

    schema.py      what a request may say: the /recommend body, query parameters
    protocol.py    HTTP/1.1: framing (RFC 9112), deadlines, body and header caps, keep-alive,
                   connection admission and eviction, computing slots
    routes.py      the endpoints, the token, reloading the artifacts
    supervisor.py  one process or forked workers, signals, drain
    server.py      :func:`serve`, the entry point, and what callers import

Endpoints::

    GET  /                     a small page to search games, build a library, see recommendations
    GET  /health               model and index versions, item count (open even with a token)
    POST /recommend            {"user_id", "time_played": {appid: minutes}, "genres",
                               "achievements", "top_k", "exclude_owned", "include_dlc"}
                               -> {"recommendations", "history", "note"}
    GET  /similar/{appid}?k=   games close to a game (an appid, or a URL-encoded name)
    GET  /items?q=&limit=      games whose name contains q;  /items?appids=620,400 by appid
    POST /admin/reload         load the artifacts again (needs the token; refused without one)

Hardening: a request must arrive within ``timeout_s`` of its first byte, its line and headers
within ``header_timeout_s`` and ``max_header_bytes`` (a slow client is cut off, it cannot hold a
thread); bodies above ``max_body_bytes`` get 413 before they are read; at most ``max_workers``
requests compute at once, shared fairly between addresses (others wait up to ``timeout_s``,
then 503), each bounded (``max_top_k``, ``max_history``); at most ``max_connections``
connections are open, idle ones and ones stuck in their headers closed to make room (others get
503); errors are JSON ``{"error": {"code", "message"}}``, never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Unpack

from gamerec.errors import ConfigError, RequestError
from gamerec.runtime.protocol import logger
from gamerec.runtime.routes import DEFAULT_LIMITS, GamerecServer, ServerLimits
from gamerec.runtime.schema import RecommendRequest, parse_recommend_request
from gamerec.runtime.supervisor import (
    MAX_AUTO_PROCESSES,
    available_cores,
    configure_logging,
    serve_forked,
    serve_one,
    steady_memory,
    worker_processes,
)

if TYPE_CHECKING:
    from gamerec.runtime.recommender import Recommender

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_AUTO_PROCESSES",
    "GamerecServer",
    "RecommendRequest",
    "RequestError",
    "ServerLimits",
    "available_cores",
    "is_loopback",
    "parse_recommend_request",
    "serve",
    "worker_processes",
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        return serve_forked(server, count, drain_s, on_ready)
    return serve_one(server, drain_s, on_ready)
