"""Item and user features for the two towers, built from ``processed/`` tables only.

No torch here: these are numpy arrays the model (training) and the numpy user tower
(recommending) share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # recommending imports this module and must not pay for pandas
    import pandas as pd

__all__ = ["ItemFeatures", "build_item_features"]

_YEAR = re.compile(r"(19[7-9]\d|20[0-4]\d)")


@dataclass(frozen=True)
class ItemFeatures:
    """Per-item side information.

    ``token_matrix`` is a dense (n_items, n_tokens) multi-hot of genres and tags (row-normalised
    to sum 1 where an item has any); ``numeric`` holds standardised metadata.
    """

    tokens: list[str]  # "genre:RPG", "tag:Open World"
    token_matrix: np.ndarray  # (n_items, n_tokens) float32
    numeric_names: list[str]
    numeric: np.ndarray  # (n_items, n_numeric) float32, standardised
    genres: list[str]  # genre vocabulary, for request-time preferences

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def _column(items: pd.DataFrame, name: str) -> np.ndarray:
    import pandas as pd

    if name not in items:
        return np.full(len(items), np.nan)
    return pd.to_numeric(items[name], errors="coerce").astype("float64").to_numpy()


def build_item_features(items: pd.DataFrame, min_token_items: int = 3) -> ItemFeatures:
    """Genres and tags seen on at least ``min_token_items`` games, plus numeric metadata."""
    import pandas as pd

    genre_lists = items["genres"].map(list)
    tag_lists = items["tags"].map(list)
    counts: dict[str, int] = {}
    for genres, tags in zip(genre_lists, tag_lists, strict=True):
        for token in {f"genre:{g}" for g in genres} | {f"tag:{t}" for t in tags}:
            counts[token] = counts.get(token, 0) + 1
    tokens = sorted(t for t, c in counts.items() if c >= min_token_items)
    if not tokens:
        tokens = ["none"]  # a catalog without genres or tags: one silent column keeps shapes valid
    position = {t: i for i, t in enumerate(tokens)}
    token_matrix = np.zeros((len(items), len(tokens)), dtype=np.float32)
    for row, (genres, tags) in enumerate(zip(genre_lists, tag_lists, strict=True)):
        for token in [f"genre:{g}" for g in genres] + [f"tag:{t}" for t in tags]:
            if token in position:
                token_matrix[row, position[token]] = 1.0
    totals = token_matrix.sum(1, keepdims=True)
    token_matrix = np.divide(token_matrix, totals, out=token_matrix, where=totals > 0)

    owners = (_column(items, "owners_low") + _column(items, "owners_high")) / 2
    positive, negative = _column(items, "positive"), _column(items, "negative")
    reviews = positive + negative
    years = items.get("release_date", pd.Series([None] * len(items))).map(
        lambda v: float(m.group(1)) if isinstance(v, str) and (m := _YEAR.search(v)) else np.nan
    )
    raw = {
        "log_owners": np.log1p(owners),
        "log_price": np.log1p(_column(items, "price_cents")),
        "review_ratio": np.where(reviews > 0, positive / np.maximum(reviews, 1), np.nan),
        "log_reviews": np.log1p(reviews),
        "release_year": years.to_numpy(dtype="float64"),
        "log_players": np.log1p(_column(items, "n_users")),
    }
    columns = []
    names = []
    for name, values in raw.items():
        known = np.isfinite(values)
        mean = values[known].mean() if known.any() else 0.0
        std = values[known].std() if known.sum() > 1 else 1.0
        standard = np.where(known, (values - mean) / (std or 1.0), 0.0)
        columns += [standard, known.astype("float64")]  # value, and whether it was known
        names += [name, f"{name}_known"]
    numeric = np.stack(columns, axis=1).astype(np.float32)
    genres = sorted(t.split(":", 1)[1] for t in tokens if t.startswith("genre:"))
    return ItemFeatures(tokens, token_matrix, names, numeric, genres)
