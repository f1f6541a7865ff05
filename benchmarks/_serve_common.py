"""What bench_serve.py and robustness_serve.py share: a workspace and a server subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: built once and reused: the bundled data, the default model size, a short training
DEFAULT_WORKSPACE = Path(tempfile.gettempdir()) / "gamerec-bench-serve" / "gamerec-data"


#: the test suite's model size: 64-d embeddings, a 128-wide user tower
COMPACT_MODEL = {"train.hidden_dim": 128, "train.embedding_dim": 64, "train.batch_size": 128}


def ensure_workspace(data_dir: Path | None, compact: bool = False, rerank: bool = True) -> Path:
    """``data_dir`` if given, else a cached workspace built from the bundled data.

    The cached one has the default model size (``compact``: the test suite's smaller one),
    with or without the co-play re-ranker, trained for a few epochs: serving speed depends on
    the model's shape, not on its quality.
    """
    if data_dir is not None:
        if not (data_dir / "index" / "manifest.json").is_file():
            sys.exit(f"{data_dir} has no index/; run `gamerec demo` or pass another --data-dir")
        return data_dir
    name = "gamerec-bench-serve" + ("-compact" if compact else "") + ("" if rerank else "-norerank")
    root = DEFAULT_WORKSPACE.parent.parent / name / "gamerec-data"
    if (root / "index" / "manifest.json").is_file():
        return root
    from gamerec import pipeline
    from gamerec.settings import Settings

    print(f"building a workspace in {root} (bundled data; once, a minute or two)", flush=True)
    overrides: dict[str, object] = {
        "data_dir": root,
        "train.epochs": 3 if compact else 2,
        "train.rerank": rerank,
    }
    if compact:
        overrides.update(COMPACT_MODEL)
    settings = Settings.load(overrides=overrides)
    pipeline.preprocess(settings)
    pipeline.train(settings)
    pipeline.build_index(settings)
    return root


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then the exit code (it drains what is in flight first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
    processes: int | None = 1,
) -> ServerProcess:
    """``gamerec serve`` on a free loopback port; returns once it is listening.

    ``processes`` None: the default (``serve.processes``, "auto": one per available core).
    """
    log = Path(tempfile.mkstemp(prefix="gamerec-serve-", suffix=".log")[1])
    command = [
        sys.executable,
        "-m",
        "gamerec",
        "--data-dir",
        str(data_dir),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        log_level,
    ]
    if processes is not None:
        command += ["--processes", str(processes)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=sink, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if match:
            return ServerProcess(process, match.group(1), log)
        if process.poll() is not None:
            sys.exit(f"gamerec serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    process.kill()
    sys.exit(f"gamerec serve did not start within 120 s:\n{log.read_text()}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux).

    Steadier than requests per second on a machine shared with other work: what a server
    spends per request does not depend much on how often it gets a core.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, up in parents.items() if up == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(used.get(member, 0.0) for member in tree)


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def post_json(url: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def machine() -> str:
    """CPU model and core count, for the record."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
