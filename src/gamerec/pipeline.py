"""One function per stage; the only module that unpacks :class:`Settings` into plain arguments.

Every CLI subcommand is one call here: ``gamerec preprocess`` is ``pipeline.preprocess(settings)``.
Each stage reads the previous stage's output from ``settings.data_dir``, checks its manifest, and
writes its own output directory atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gamerec.artifacts import fingerprint, staged_dir, write_manifest
from gamerec.settings import Settings

if TYPE_CHECKING:
    from gamerec.dataio.preprocess import Source

__all__ = ["Progress", "preprocess", "workspace"]

#: a progress callback: (stage, message, fraction done or None)
Progress = Callable[[str, str, float | None], None]


def _quiet(stage: str, message: str, fraction: float | None) -> None:
    return None


def workspace(settings: Settings) -> dict[str, Path]:
    """The paths of every stage's output under ``settings.data_dir``."""
    root = Path(settings.data_dir)
    return {
        "root": root,
        "raw": root / "raw",
        "steamspy": root / "raw" / "steamspy",
        "owned": root / "raw" / "steam" / "owned",
        "processed": root / "processed",
        "model": root / "model",
        "index": root / "index",
        "eval": root / "eval",
    }


def _sources(settings: Settings) -> list[Source]:
    from gamerec.dataio.datasets import bundled_sources
    from gamerec.dataio.preprocess import Source

    if not settings.preprocess.inputs:
        return bundled_sources()
    sources = []
    for spec in settings.preprocess.inputs:
        options: dict[str, Any] = {}
        if spec.kind == "csv":
            options = {
                "user_column": spec.user_column,
                "item_column": spec.item_column,
                "value_column": spec.value_column,
                "value_kind": spec.value_kind,
                "item_key": spec.item_key,
            }
        sources.append(Source(spec.kind, Path(spec.path), options))
    return sources


def _input_fingerprint(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        return f"{len(files)} files, {total} bytes"
    return fingerprint(path)


def preprocess(settings: Settings, progress: Progress = _quiet) -> dict[str, Any]:
    """Read the configured inputs (default: the bundled demo data) and write ``processed/``.

    Returns the summary (counts, density, title match rate, histograms). On any error the
    previous ``processed/`` is left untouched.
    """
    from gamerec.dataio.preprocess import build_processed, load_sources, write_processed

    sources = _sources(settings)
    progress("preprocess", f"reading {len(sources)} input(s)", None)
    interactions, metadata = load_sources(sources)
    progress("preprocess", "joining, filtering and splitting", None)
    options = settings.preprocess
    processed = build_processed(
        interactions,
        metadata,
        min_user_items=options.min_user_items,
        min_item_users=options.min_item_users,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
        target_fraction=options.target_fraction,
        seed=options.seed,
    )
    target = workspace(settings)["processed"]
    progress("preprocess", f"writing {target}", None)
    with staged_dir(target) as staging:
        write_processed(staging, processed)
        write_manifest(
            staging,
            "processed",
            settings=options.model_dump(mode="json"),
            inputs={f"{s.kind}:{s.path}": _input_fingerprint(s.path) for s in sources},
            counts={
                "users": processed.summary["users"],
                "items": processed.summary["items"],
                "interactions": processed.summary["interactions"],
            },
            extra={"summary": processed.summary},
        )
    return {**processed.summary, "output": str(target)}
