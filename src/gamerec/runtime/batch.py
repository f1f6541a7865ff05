"""Answers for every known user, streamed into a Parquet or JSON-lines file.

Each batch of users is written (a Parquet row group, or its JSON lines) as soon as it is
ranked, with columnar arrays rather than Python rows, so memory stays flat however many users
there are. The file appears atomically: complete, or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.atomic import atomic_path
from gamerec.errors import InvalidRequestError
from gamerec.runtime.recommender import Recommender

__all__ = ["BatchSummary", "write_recommendations"]

#: where the rows go, by the file's suffix
SUFFIXES = (".parquet", ".jsonl")


@dataclass(frozen=True)
class BatchSummary:
    users: int
    rows: int
    k: int
    out: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_recommendations(
    recommender: Recommender,
    out: str | Path,
    k: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Top-``k`` for every known user into ``out`` (.parquet or .jsonl): one row per
    (user_id, rank, appid, name, score). ``on_batch(done, total)`` after each batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise InvalidRequestError(f"--out must end in .parquet or .jsonl, got {out}")
    started = time.perf_counter()
    catalog = recommender.catalog
    names = pa.array(list(catalog.names), type=pa.string())
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("rank", pa.int64()),
            ("appid", pa.int64()),
            ("name", pa.string()),
            ("score", pa.float64()),
        ]
    )
    total = len(recommender.known_users)
    done = rows = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, schema) if out.suffix.lower() == ".parquet" else None
        handle = None if writer is not None else tmp.open("w")
        try:
            for user_ids, items, scores in recommender.recommend_all(k=k):
                keep = np.logical_and.accumulate(items >= 0, axis=1)  # a user's list ends at -1
                user_of = np.repeat(np.arange(len(user_ids)), keep.sum(1))
                chosen = items[keep]
                appids = catalog.appids[chosen]
                table = pa.table(
                    {
                        "user_id": pa.array(user_ids, type=pa.string()).take(pa.array(user_of)),
                        "rank": pa.array(np.nonzero(keep)[1].astype(np.int64) + 1),
                        "appid": pa.array(appids, type=pa.int64(), mask=appids < 0),
                        "name": names.take(pa.array(chosen)),
                        "score": pa.array(scores[keep].astype(np.float64)),
                    },
                    schema=schema,
                )
                if writer is not None:
                    writer.write_table(table)
                elif handle is not None:
                    columns = table.to_pydict()
                    for row in zip(*columns.values(), strict=True):
                        handle.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
                rows += table.num_rows
                done += len(user_ids)
                if on_batch is not None:
                    on_batch(done, total)
        finally:
            if writer is not None:
                writer.close()
            if handle is not None:
                handle.close()
    return BatchSummary(total, rows, k, str(out), time.perf_counter() - started)
