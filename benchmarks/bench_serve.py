"""Load test of ``gamerec serve``'s ``POST /recommend``, and the same Recommender under FastAPI.

Run: python benchmarks/bench_serve.py                      (a few minutes; loopback only)
     python benchmarks/bench_serve.py --processes default,1,2   (the default, then 1 and 2)
     python benchmarks/bench_serve.py --compact --no-rerank     (the test suite's model size)
     python benchmarks/bench_serve.py --data-dir gamerec-data --seconds 20 --no-fastapi

Starts ``gamerec serve`` at its default settings (``serve.processes`` "auto": one worker
process per available core; one FAISS thread per query; access log at info, written to a
file) on a free 127.0.0.1 port, once per ``--processes`` entry ("default", or a count), and
drives ``/recommend`` with 8 keep-alive connections for ``--seconds`` after a short warm-up,
with the README's payload: one fixed five-game history, ``"genres": ["rpg"]`` and ``top_k`` 10.
The load generator is ``wrk`` (Debian's, with a small Lua script for the POST body) when it is
installed, else a two-process raw-socket HTTP/1.1 keep-alive client; either is bounded by time
and by ``--max-requests``.

Then, unless ``--no-fastapi``, the same Recommender is wrapped in FastAPI + uvicorn and measured
the same way, with as many uvicorn worker processes. FastAPI and uvicorn are installed with pip
into a throwaway virtualenv (never into the project) that sees this interpreter's packages
through a ``.pth`` file, so it works from a project virtualenv as from a system Python.
Targets at the default settings: at least 1,500 requests/s with p99 under 20 ms, no errors, and
1.5x FastAPI + uvicorn.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _serve_common import (
    ServerProcess,
    ensure_workspace,
    machine,
    post_json,
    start_server,
    tree_cpu_s,
)

HERE = Path(__file__).resolve().parent

PAYLOAD = {
    "time_played": {"620": 600, "400": 120, "730": 3000, "440": 900, "570": 60},
    "genres": ["rpg"],
    "top_k": 10,
}
TARGET_RPS = 1500
TARGET_P99_MS = 20.0
TARGET_RATIO = 1.5

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\":%%d,\\"seconds\\":%%f,\\"p50_ms\\":%%f,\\"p99_ms\\":%%f,"
    .. "\\"errors\\":%%d,\\"non2xx\\":%%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
"""

FASTAPI_APP = """
import faiss
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from gamerec.runtime.blas import set_blas_threads
from gamerec.runtime.recommender import Recommender

# as gamerec serve: requests run in parallel already, one thread per product
faiss.omp_set_num_threads(1)
set_blas_threads(1)
recommender = Recommender.from_dir(%r)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    time_played: dict[str, float] = {}
    genres: list[str] = []
    achievements: dict[str, int] = {}
    top_k: int = Field(default=10, ge=1, le=1000)
    exclude_owned: bool = True


app = FastAPI()


@app.post("/recommend")
def recommend(body: Body) -> dict:
    answers = recommender.recommend(
        user_id=body.user_id, played=body.time_played, genres=body.genres,
        achievements=body.achievements, k=body.top_k, exclude_owned=body.exclude_owned,
    )
    return answers.to_dict()  # the same answer as gamerec serve's
"""


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    non2xx: int
    cpu_ms: float = float("nan")  # the server's CPU time per request, all its processes

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# ------------------------------------------------------------------------------ load generators
def run_wrk(url: str, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % json.dumps(PAYLOAD, separators=(",", ":")))
    try:
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _client(host: str, port: int, connections: int, seconds: float, limit: int, out: Any) -> None:
    body = json.dumps(PAYLOAD).encode()
    request = (
        f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = non2xx = sent = 0
    deadline = time.monotonic() + seconds
    for _ in range(connections):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        sent += 1
        selector.register(sock, selectors.EVENT_READ, {"buffer": b"", "start": time.perf_counter()})
    while selector.get_map():
        for key, _ in selector.select(timeout=1.0):
            sock, state = key.fileobj, key.data
            try:
                chunk = sock.recv(65536)  # type: ignore[union-attr]
            except OSError:
                chunk = b""
            if not chunk:
                errors += 1
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                continue
            state["buffer"] += chunk
            head, found, rest = state["buffer"].partition(b"\r\n\r\n")
            if not found:
                continue
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(rest) < length:
                continue
            latencies.append(time.perf_counter() - state["start"])
            if not head.startswith(b"HTTP/1.1 2"):
                non2xx += 1
            state["buffer"] = rest[length:]
            if time.monotonic() < deadline and sent < limit:
                state["start"] = time.perf_counter()
                sock.sendall(request)  # type: ignore[union-attr]
                sent += 1
            else:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
    out.put((latencies, errors, non2xx))


def run_python_client(
    host: str, port: int, seconds: float, connections: int, processes: int, limit: int
) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    per = [connections // processes + (i < connections % processes) for i in range(processes)]
    started = time.perf_counter()
    workers = [
        multiprocessing.Process(
            target=_client, args=(host, port, n, seconds, limit // processes, queue)
        )
        for n in per
        if n
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for r in results for latency in r[0])

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50_ms": percentile(0.50) if latencies else float("nan"),
        "p99_ms": percentile(0.99) if latencies else float("nan"),
        "errors": sum(r[1] for r in results),
        "non2xx": sum(r[2] for r in results),
    }


def measure(name: str, host: str, port: int, pid: int, args: argparse.Namespace) -> Result:
    url = f"http://{host}:{port}/recommend"
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    for phase, seconds in (("warm-up", args.warmup), ("measured", args.seconds)):
        cpu_before = tree_cpu_s(pid)
        if use_wrk:
            raw = run_wrk(url, seconds, args.connections, args.wrk_threads)
        else:
            raw = run_python_client(host, port, seconds, args.connections, 2, args.max_requests)
        cpu_ms = (tree_cpu_s(pid) - cpu_before) * 1000 / max(raw["requests"], 1)
        print(
            f"  {name} {phase}: {raw['requests'] / raw['seconds']:,.0f} req/s, "
            f"{cpu_ms:.2f} CPU ms per request",
            flush=True,
        )
    return Result(name, **raw, cpu_ms=cpu_ms)


# ------------------------------------------------------------------------------ FastAPI
def _import_paths() -> list[str]:
    """This interpreter's import path (its site-packages, an editable gamerec), for the venv."""
    import gamerec

    paths = [str(Path(gamerec.__file__).resolve().parents[1])]
    paths += [p for p in sys.path if p and Path(p).is_dir() and Path(p).resolve() != HERE]
    return list(dict.fromkeys(paths))


def fastapi_python() -> Path | None:
    """A throwaway virtualenv with FastAPI and uvicorn that sees this environment's packages.

    Not ``venv --system-site-packages``: run from a project virtualenv, that shows the base
    interpreter's packages, not the project's (no gamerec, numpy or faiss), and uvicorn cannot
    load the app. A ``.pth`` file with this interpreter's import path does it for any setup.
    """
    venv = Path(tempfile.gettempdir()) / "gamerec-bench-fastapi"
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            print(f"creating {venv} for FastAPI and uvicorn (this comparison only)", flush=True)
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True
            )
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # after the venv's own packages: its fastapi, starlette and pydantic come first
        (Path(site) / "gamerec-bench.pth").write_text("\n".join(_import_paths()) + "\n")
        check = [str(python), "-c", "import fastapi, uvicorn, gamerec.runtime.recommender"]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return python
        print("installing fastapi and uvicorn with pip (this comparison only)", flush=True)
        for packages in (["fastapi", "uvicorn[standard]"], ["fastapi", "uvicorn"]):
            install = [str(python), "-m", "pip", "install", "--quiet", *packages]
            done = subprocess.run(install, capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                break
        else:
            print(f"pip install failed:\n{done.stderr[-2000:]}")
            return None
        checked = subprocess.run(check, capture_output=True, text=True)
        if checked.returncode != 0:
            print(f"the FastAPI environment cannot load gamerec:\n{checked.stderr[-2000:]}")
            return None
        return python
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"could not set up FastAPI ({exc})")
    return None


def start_fastapi(
    python: Path, data_dir: Path, workers: int
) -> tuple[subprocess.Popen[bytes], int]:
    folder = Path(tempfile.mkdtemp(prefix="gamerec-fastapi-"))
    (folder / "bench_app.py").write_text(FASTAPI_APP % str(data_dir.resolve()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = folder / "uvicorn.log"
    sink = log.open("wb")
    process = subprocess.Popen(
        [
            str(python),
            "-m",
            "uvicorn",
            "bench_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=sink,
    )
    sink.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            post_json(f"http://127.0.0.1:{port}/recommend", PAYLOAD)
            return process, port
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"uvicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")


# ------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="a workspace with processed/, model/, index/")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--max-requests", type=int, default=500_000)
    parser.add_argument("--log-level", default="info", help="gamerec serve's log level")
    parser.add_argument(
        "--processes",
        default="default",
        help='comma-separated: "default" (serve.processes, "auto") or worker process counts',
    )
    parser.add_argument("--no-fastapi", action="store_true")
    parser.add_argument(
        "--compact", action="store_true", help="without --data-dir: the test suite's model size"
    )
    parser.add_argument(
        "--no-rerank", action="store_true", help="without --data-dir: no co-play re-ranker"
    )
    args = parser.parse_args()

    data_dir = ensure_workspace(args.data_dir, compact=args.compact, rerank=not args.no_rerank)
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    client = "wrk" if args.client != "python" and shutil.which("wrk") else "python client"
    print(
        f"client: {client}, {args.connections} connections, {args.seconds:g} s; workspace "
        f"{data_dir}"
    )

    from gamerec.runtime.server import worker_processes
    from gamerec.settings import Settings

    # "default": no --processes flag; FastAPI then gets as many workers as the default gives
    default_count = worker_processes(Settings.load().serve.processes)
    runs = [
        (None, default_count) if entry.strip() == "default" else (int(entry), int(entry))
        for entry in args.processes.split(",")
    ]
    counts = list(dict.fromkeys(n for _, n in runs))
    results: list[Result] = []
    exit_codes = []
    for flag, n in runs:
        server: ServerProcess = start_server(data_dir, log_level=args.log_level, processes=flag)
        try:
            answer = post_json(server.url + "/recommend", PAYLOAD)["recommendations"]
            assert len(answer) == PAYLOAD["top_k"], answer
            how = "default settings" if flag is None else "--processes"
            name = f"gamerec serve, {n} process(es) ({how})"
            results.append(measure(name, server.host, server.port, server.process.pid, args))
        finally:
            exit_codes.append(server.stop())
    python = None if args.no_fastapi else fastapi_python()
    if python is None and not args.no_fastapi:
        print("FastAPI/uvicorn could not be installed: comparison skipped")
    for n in counts if python is not None else []:
        process, port = start_fastapi(python, data_dir, n)
        try:
            name = f"FastAPI+uvicorn, {n} worker(s)"
            results.append(measure(name, "127.0.0.1", port, process.pid, args))
        finally:
            process.terminate()
            process.wait(30)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "\n| server | req/s | p50 ms | p99 ms | server CPU ms/request | errors |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for r in results:
        print(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_ms:.2f} "
            f"| {r.errors + r.non2xx} |"
        )
    for ours in (r for r in results if r.name.startswith("gamerec serve")):
        n = int(ours.name.split(", ")[1].split()[0])
        theirs = [r for r in results if r.name.startswith(f"FastAPI+uvicorn, {n} ")]
        ratio = ours.rps / theirs[0].rps if theirs and theirs[0].rps else float("nan")
        if theirs:
            print(
                f"{ours.name} / FastAPI+uvicorn, {n} worker(s): {ratio:.2f}x the requests/s, "
                f"{theirs[0].cpu_ms / ours.cpu_ms:.2f}x less CPU per request"
            )
        met = ours.rps >= TARGET_RPS and ours.p99_ms < TARGET_P99_MS
        met = met and not ours.errors + ours.non2xx and (not theirs or ratio >= TARGET_RATIO)
        print(
            f"target for {ours.name} (>= {TARGET_RPS} req/s, p99 < {TARGET_P99_MS:g} ms, "
            f"no errors, >= {TARGET_RATIO:g}x FastAPI): {'met' if met else 'NOT met'}"
        )
    print(f"server exit codes after SIGTERM: {exit_codes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
