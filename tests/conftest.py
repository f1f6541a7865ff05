"""Shared fixtures. Tests never touch the network and read only fixtures inside this repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        }
    )
    pipeline.train(settings)
    pipeline.build_index(settings)
    return root
