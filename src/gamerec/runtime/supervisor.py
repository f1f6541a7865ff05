"""Running ``gamerec serve``: one process or forked workers, signals, reload and drain.

SIGTERM/SIGINT finish what is in flight and stop; SIGHUP reloads the artifacts. With several
worker processes the first process forks them over one listening socket, passes signals on
and replaces a worker that dies.
"""

from __future__ import annotations

import ctypes
import logging
import math
import mmap
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gamerec.errors import ConfigError, RequestError
from gamerec.runtime.protocol import logger

if TYPE_CHECKING:
    from types import FrameType

    from gamerec.runtime.routes import GamerecServer

__all__ = [
    "MAX_AUTO_PROCESSES",
    "available_cores",
    "configure_logging",
    "serve_forked",
    "serve_one",
    "steady_memory",
    "worker_processes",
]


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


def serve_one(
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


def serve_forked(
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
        if reload_first:  # signals stay held until serve_one has its handlers in place
            with suppress(RequestError):  # logged; the forked model serves meanwhile
                server.reload()
        summary = serve_one(server, drain_s, unblock_signals=True)
        done = struct.unpack_from("<Q", counts, 8 * slot)[0]
        struct.pack_into("<Q", counts, 8 * slot, done + summary["requests"])
        code = 0 if summary["drained"] else 1
    except BaseException:
        logger.exception("worker failed")
    finally:
        sys.stderr.flush()
        os._exit(code)
