"""A client of `gamerec serve`: start the server, ask it for recommendations, stop it.

    python examples/serve_client.py [DATA_DIR]

DATA_DIR is a workspace with a trained model and index (default: ./gamerec-data). The server
is started as `gamerec serve --port 0` (any free port) and says where it listens on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """`gamerec serve` in a child process, and the URL it reports once it listens."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gamerec", "--data-dir", str(data_dir), "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    for line in server.stderr:  # "serve: listening on http://127.0.0.1:PORT"
        if "listening on " in line:
            return server, line.split("listening on ", 1)[1].strip()
    server.wait()
    sys.exit(f"gamerec serve exited with code {server.returncode} before listening")


def main(data_dir: Path) -> None:
    server, url = start_server(data_dir)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            print(f"health: {client.get('/health').json()['status']}")
            request = {"time_played": {"620": 1200, "400": 300}, "top_k": 5}
            answer = client.post("/recommend", json=request)
            answer.raise_for_status()
            print(json.dumps(answer.json(), indent=2))
    finally:
        server.terminate()  # SIGTERM: the server finishes what is in flight, then exits
        server.communicate(timeout=30)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gamerec-data"))
