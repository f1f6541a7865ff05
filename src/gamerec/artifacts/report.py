"""``eval/``: the evaluation report and its manifest."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gamerec.artifacts.store import staged_dir, write_manifest
from gamerec.atomic import atomic_write_json

__all__ = ["REPORT_FILE", "write_report"]

REPORT_FILE = "report.json"


def write_report(
    directory: str | Path,
    report: Mapping[str, Any],
    settings: Mapping[str, Any],
    processed_manifest: Mapping[str, Any],
) -> Path:
    """Replace ``eval/`` (``directory``) with ``report`` and its manifest, atomically; the
    report's path."""
    with staged_dir(directory) as staging:
        atomic_write_json(staging / REPORT_FILE, report)
        write_manifest(
            staging,
            "eval",
            settings=settings,
            inputs={
                f"processed/{name}": digest
                for name, digest in processed_manifest.get("files", {}).items()
            },
            counts={"users": report["users_evaluated"], "methods": len(report["methods"])},
        )
    return Path(directory) / REPORT_FILE
