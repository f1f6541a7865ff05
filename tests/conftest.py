"""Shared fixtures. Tests never touch the network and read only fixtures inside this repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from gamerec.dataio.matrix import UserItems

if TYPE_CHECKING:
    import pandas as pd

    from gamerec.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"

# No GAMEREC_* variable of the machine reaches a test or a session fixture; tests set their own.
for _name in [name for name in os.environ if name.upper().startswith("GAMEREC_")]:
    del os.environ[_name]


@pytest.fixture(scope="session", autouse=True)
def _no_gamerec_toml_of_the_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test and session fixture starts in an empty folder, so a ``gamerec.toml`` (or a
    ``gamerec-data/``) where pytest was launched is never read or written."""
    session = pytest.MonkeyPatch()
    session.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    session.undo()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no gamerec.toml and no GAMEREC_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("GAMEREC_"):
            monkeypatch.delenv(name)
    return tmp_path


#: one choice for each of the searches `gamerec train` runs on the validation users (the
#: re-ranker, genre/tag closeness, the new-game policy): a test of something else trains in
#: seconds less than a minute; the default workspace keeps the whole search
QUICK_SEARCH: dict[str, list[float]] = {
    "train.rerank_lambdas": [50.0],
    "train.rerank_alphas": [0.25],
    "train.content_weights": [0.15],
    "train.new_game_offsets": [-0.5],
    "train.new_game_contents": [1.0],
    "train.new_game_history_weights": [2.0],
    "train.new_game_older_weights": [0.1],
}
#: the same as GAMEREC_* environment variables, for commands run as a user runs them
QUICK_SEARCH_ENV = {
    "GAMEREC_" + name.upper().replace(".", "__"): str(value) for name, value in QUICK_SEARCH.items()
}


@pytest.fixture(scope="session")
def bundled_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with processed/ built once from the bundled demo data (read-only for tests)."""
    from gamerec import pipeline
    from gamerec.settings import Settings

    root = tmp_path_factory.mktemp("bundled")
    settings = Settings.load(overrides={"data_dir": root / "gamerec-data"})
    pipeline.preprocess(settings)
    return root / "gamerec-data"


@pytest.fixture(scope="session")
def trained_workspace(bundled_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled workspace plus a small, quickly trained model/ and its index/ (read-only).

    Trained for 3 epochs at reduced width: enough to be a real model, not a good one.
    """
    import shutil

    from gamerec import pipeline
    from gamerec.settings import Settings

    root = tmp_path_factory.mktemp("trained") / "gamerec-data"
    shutil.copytree(bundled_workspace / "processed", root / "processed")
    settings = Settings.load(
        overrides={
            "data_dir": root,
            "train.epochs": 3,
            "train.hidden_dim": 128,
            "train.embedding_dim": 64,
            "train.batch_size": 128,
            **QUICK_SEARCH,
        }
    )
    pipeline.train(settings)
    pipeline.build_index(settings)
    return root


@pytest.fixture(scope="session")
def default_workspace(bundled_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled workspace with a model trained at the default settings and its index
    (read-only): what `gamerec demo` leaves a new user with, for known-answer tests."""
    import shutil

    from gamerec import pipeline
    from gamerec.settings import Settings

    root = tmp_path_factory.mktemp("default") / "gamerec-data"
    shutil.copytree(bundled_workspace / "processed", root / "processed")
    settings = Settings.load(overrides={"data_dir": root})
    pipeline.train(settings)
    pipeline.build_index(settings)
    return root


# --- helpers shared by several test files (import them: `from conftest import free_port`) ---


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """The settings of workspace ``data_dir`` plus dotted ``overrides`` (``train.epochs``)."""
    from gamerec.settings import Settings

    return Settings.load(overrides={"data_dir": data_dir, **overrides})


#: games of the two-tower checkerboard (even users play even games, odd users odd ones)
N_ITEMS = 20


def checkerboard(n_users: int, offset: int = 0) -> tuple[UserItems, UserItems]:
    """User u likes every item of its parity but one (withheld): the one answer that is certain.

    Returns (histories, withheld targets).
    """
    rows, items, target_rows, target_items = [], [], [], []
    for row in range(n_users):
        user = row + offset
        parity = user % 2
        withheld = 2 * ((user // 2) % (N_ITEMS // 2)) + parity
        for item in range(parity, N_ITEMS, 2):
            if item == withheld:
                target_rows.append(row)
                target_items.append(item)
            else:
                rows.append(row)
                items.append(item)
    minutes = np.random.default_rng(offset).uniform(0, 600, len(items))
    histories = UserItems.from_pairs(np.array(rows), np.array(items), minutes, n_users, N_ITEMS)
    targets = UserItems.from_pairs(
        np.array(target_rows), np.array(target_items), None, n_users, N_ITEMS
    )
    return histories, targets


def checkerboard_items() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "item_idx": np.arange(N_ITEMS),
            "name": [f"game {i}" for i in range(N_ITEMS)],
            "genres": [["Indie"] for _ in range(N_ITEMS)],
            "tags": [[] for _ in range(N_ITEMS)],
            "n_users": np.full(N_ITEMS, 10),
        }
    )


def rank_of_target(scores: np.ndarray, histories: UserItems, targets: UserItems) -> np.ndarray:
    scores = scores.copy()
    rows = np.repeat(np.arange(histories.n_rows), histories.row_lengths())
    scores[rows, histories.indices] = -np.inf
    target = targets.indices  # one per row
    better = scores > scores[np.arange(len(target)), target][:, None]
    return better.sum(1)  # 0 = ranked first


def train_checkerboard(train: Any = None, teacher: Any = None, **overrides: Any) -> tuple[Any, Any]:
    """The small two-tower model of the checkerboard, trained (``train``: other training
    histories; ``teacher``: item-to-item weights to learn from; ``overrides``: train options)."""
    from gamerec.towers.features import build_item_features
    from gamerec.towers.model import TwoTowerConfig
    from gamerec.towers.train import TrainConfig, TrainRun, train_two_tower

    if train is None:
        train, _ = checkerboard(200)
    valid_histories, valid_targets = checkerboard(40, offset=1000)
    features = build_item_features(checkerboard_items())
    config = TwoTowerConfig(
        n_items=N_ITEMS,
        n_tokens=features.n_tokens,
        n_numeric=features.numeric.shape[1],
        embedding_dim=16,
        hidden_dim=32,
        dropout=0.0,
        temperature=0.1,
    )

    def validate(scorer) -> float:
        ranks = rank_of_target(scorer.score(valid_histories), valid_histories, valid_targets)
        return float((ranks < 3).mean())

    options: dict[str, Any] = dict(
        epochs=30,
        patience=30,
        batch_size=32,
        learning_rate=0.01,
        weight_decay=0.0,
        holdout_fraction=0.2,
        max_full_softmax_items=1000,
        sampled_negatives=8,
        seed=0,
    )
    run: dict[str, Any] = {"validate": validate, "threads": 1}
    for name, value in overrides.items():
        (options if name in TrainConfig.__dataclass_fields__ else run)[name] = value
    trained = train_two_tower(
        train, features, config, TrainConfig(**options), TrainRun(**run), teacher=teacher
    )
    return trained, features


def terminal_screen(output: str, width: int = 100) -> list[str]:
    """The lines a terminal ``width`` columns wide shows after ``output`` (a recording with its
    control codes): carriage returns, erased lines, the cursor moved up or to a column, long
    lines wrapped at the edge. Colours and other codes are dropped. Enough of a terminal for
    what rich's live displays write."""
    import re

    token = re.compile(
        r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|(.)",
        re.S,
    )
    lines: list[list[str]] = [[]]
    row = col = 0

    def line(at: int) -> list[str]:
        while len(lines) <= at:
            lines.append([])
        return lines[at]

    for match in token.finditer(output):
        params, final, char = match.groups()
        if char is not None:
            if char == "\r":
                col = 0
            elif char == "\n":
                row, col = row + 1, 0
                line(row)
            elif char >= " ":
                if col >= width:
                    row, col = row + 1, 0
                cells = line(row)
                cells.extend(" " * (col + 1 - len(cells)))
                cells[col] = char
                col += 1
            continue
        count = int(params) if params and params.isdigit() else None
        if final == "A":
            row = max(0, row - (count or 1))
        elif final == "B":
            row += count or 1
        elif final == "G":
            col = (count or 1) - 1
        elif final == "K":
            cells = line(row)
            if count == 2:
                cells.clear()
            else:
                del cells[col:]
    return ["".join(cells).rstrip() for cells in lines]


def run_in_terminal(
    args: list[str], cwd: Path, width: int = 100, timeout: float = 900, **env: str
) -> tuple[int, list[str]]:
    """Run ``args`` with a pseudo-terminal ``width`` columns wide as its stdout and stderr, as
    from a user's shell; returns its exit code and the screen it leaves (see
    :func:`terminal_screen`). GAMEREC_* variables of the machine are left out."""
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, width, 0, 0))
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("GAMEREC_")}
    clean.update({"COLUMNS": str(width), "LINES": "60", "TERM": "xterm-256color", **env})
    process = subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=clean
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1.0)[0]:
                continue
            try:
                data = os.read(leader, 1 << 16)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            process.kill()
            raise TimeoutError(f"{args} ran past {timeout} s")
    except BaseException:  # a timeout of the test itself: leave no process behind
        process.kill()
        raise
    finally:
        os.close(leader)
    code = process.wait(timeout=60)
    return code, terminal_screen(b"".join(chunks).decode("utf-8", "replace"), width)
