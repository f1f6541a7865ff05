"""Take the screenshots of the page that `gamerec serve` shows, for docs/page.md.

    python scripts/page_screenshots.py --data-dir gamerec-data

Starts `gamerec serve` on the workspace (which needs processed/, model/ and index/: run
`gamerec demo` first), opens the page in headless Chromium three times, driven by its URL, and
saves into docs/screenshots/:

    search.png         the search for "portal"
    library.png        the 129-game Steam library of tests/fixtures/steam-webapi
    known-user.png     the recommendations for the known user with the most games

Needs a `chromium` (or `chromium-browser`) binary on PATH, or --chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gamerec.dataio.history import History  # noqa: E402
from gamerec.runtime.recommender import Recommender  # noqa: E402

LIBRARY = ROOT / "tests" / "fixtures" / "steam-webapi" / "GetOwnedGames_include_appinfo.json"
WINDOW = "1280,1280"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GAMEREC_SERVE__PROCESSES": "1"}
    command = [sys.executable, "-m", "gamerec", "--data-dir", str(data_dir), "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = server.stderr.read().decode() if server.stderr else ""
            sys.exit(f"gamerec serve stopped: {error.strip()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if json.load(answer)["status"] == "ok":
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("gamerec serve did not answer /health within 120 s")


def screenshot(browser: str, url: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                "--virtual-time-budget=15000",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
        f"{path.stat().st_size // 1024} KB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("gamerec-data"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=None, help="the Chromium binary")
    args = parser.parse_args()
    browser = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on PATH; install it or pass --chromium")
    data_dir = args.data_dir.resolve()
    (user, _), *_ = Recommender.from_dir(data_dir).users(limit=1)
    played = History.from_library(LIBRARY).minutes()
    library = ",".join(f"{appid}:{minutes:.0f}" for appid, minutes in played.items())
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(data_dir, port)
    try:
        page = f"http://127.0.0.1:{port}/"
        screenshot(browser, page + "?q=portal", args.out / "search.png")
        screenshot(browser, page + f"?played={library}&k=15", args.out / "library.png")
        screenshot(browser, page + f"?user={user}&k=15", args.out / "known-user.png")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
