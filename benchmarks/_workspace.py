"""A benchmark workspace with the bundled data preprocessed, trained and indexed (built once)."""

from __future__ import annotations

from pathlib import Path

WORK = Path(__file__).parent / ".work"


def trained_workspace(threads: int = 2) -> Path:
    """``benchmarks/.work/gamerec-data`` with processed/, model/ and index/ at default settings."""
    from gamerec import pipeline
    from gamerec.settings import Settings

    root = WORK / "gamerec-data"
    settings = Settings.load(overrides={"data_dir": root, "train.threads": threads})
    if not (root / "processed" / "manifest.json").is_file():
        pipeline.preprocess(settings)
    if not (root / "model" / "manifest.json").is_file():
        pipeline.train(settings)
    if not (root / "index" / "manifest.json").is_file():
        pipeline.build_index(settings)
    return root
