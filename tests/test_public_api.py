"""`import gamerec` and every module's `__all__` name what really exists."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import subprocess
import sys

import pytest

import gamerec
import gamerec.errors
import gamerec.settings


def test_top_level_all_names_exist_once() -> None:
    assert len(gamerec.__all__) == len(set(gamerec.__all__))
    for name in gamerec.__all__:
        assert hasattr(gamerec, name), name
    namespace: dict[str, object] = {}
    exec("from gamerec import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(gamerec.__all__)


def test_settings_and_every_error_are_importable_from_the_top() -> None:
    assert gamerec.Settings is gamerec.settings.Settings
    for name in gamerec.errors.__all__:
        assert name in gamerec.__all__, f"gamerec.{name} is not exported"
        assert getattr(gamerec, name) is getattr(gamerec.errors, name)
    for name in (
        "GamerecError",
        "ConfigError",
        "DataError",
        "ArtifactError",
        "FetchError",
        "RateLimitError",
        "TrainingError",
        "NotFoundError",
        "AmbiguousNameError",
        "InvalidRequestError",
    ):
        cls = getattr(gamerec, name)
        assert inspect.isclass(cls) and issubclass(cls, gamerec.GamerecError), name


def test_version_matches_the_installed_distribution() -> None:
    assert gamerec.__version__ == importlib.metadata.version("gamerec")


def test_import_gamerec_stays_light() -> None:
    child = (
        "import sys, gamerec\n"
        "print(sorted(m for m in ('torch', 'faiss', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def all_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(gamerec.__path__, prefix="gamerec.")
        if info.name != "gamerec.__main__"
    )


@pytest.mark.slow
def test_every_module_all_names_exist() -> None:
    checked = []
    for module_name in all_modules():
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:
            continue
        assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{module_name}.__all__ names missing objects: {missing}"
        checked.append(module_name)
    for name in ("gamerec.errors", "gamerec.settings", "gamerec.dataio.preprocess", "gamerec.cli"):
        assert name in checked


def test_the_library_api_is_exported_lazily() -> None:
    from gamerec import pipeline
    from gamerec.runtime.recommender import Recommender

    assert gamerec.Recommender is Recommender
    for name in ("preprocess", "train", "build_index", "evaluate", "demo", "recommend_all"):
        assert name in gamerec.__all__
        assert getattr(gamerec, name) is getattr(pipeline, name)
    with pytest.raises(AttributeError):
        _ = gamerec.no_such_thing  # type: ignore[attr-defined]
