"""The evaluation protocols, batched full ranking and bootstrap CIs.

The protocols are built (:func:`gamerec.dataio.splits.split_matrices`) from the split
``gamerec preprocess`` wrote (``split.parquet``): the same training users, validation users and
test users, so every method is compared on the same footing. Models are fit on the **training
users only**; validation users tune hyper-parameters (EASE's lambda, the two-tower's early
stopping); quality is reported on the **test users**.

**P-SG** (strong generalisation, Liang et al. 2018): an evaluated user's ``foldin`` rows are the
input history, the ``target`` rows (a seeded 20% of their games) are what must be found.

**P-LOO** (the original game-recommender protocol): an evaluated user's most-played game (highest
``playtime_min``, ties to the lowest ``item_idx``) is the single target and everything else they
own is the history. Users who never played anything (every playtime 0) have no most-played game
and are skipped; the count is reported.

**P-COLD** (new games): a seeded 20% of the games with players and metadata (an appid and a
tag or genre) become new games (``new_items``): their rows are removed from the training and
validation users, so nothing is fit or tuned on them; the test users and their 80/20 split are
P-SG's, new games included, and metrics are also reported over the new-game targets alone.

Every method ranks what ``recommend`` may answer: the recommendable games (no DLC, title-only
row, soundtrack, ...), never a history game. A target that may not be recommended is dropped
(its count is reported): no method could rank it. The two-tower ranks through the one ranking
engine (:class:`~gamerec.ranking.RankingEngine`, a :class:`~gamerec.ranking.Ranker`), so its
lists are what ``recommend`` answers; a baseline's scores are masked the same way. Users are
ranked in batches, so memory stays at ``batch_size x n_items`` floats.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gamerec.artifacts.processed import games_with_players, read_processed
from gamerec.dataio.matrix import UserItems
from gamerec.dataio.splits import HeldOutUsers, split_matrices
from gamerec.errors import ArtifactError, InvalidRequestError
from gamerec.evaluation.metrics import (
    DEFAULT_KS,
    check_ks,
    coverage,
    hit_matrix,
    metric_key,
    popularity_bias,
    popularity_percentiles,
    ranking_metrics,
    top_k,
)
from gamerec.ranking import Ranker
from gamerec.ranking.scorer import Scorer
from gamerec.ranking.stages import Editions

__all__ = [
    "COLD_FRACTION",
    "PROTOCOLS",
    "HeldOutUsers",
    "ItemMetadata",
    "Method",
    "ProtocolData",
    "Ranker",
    "Scorer",
    "UserMetrics",
    "ValidationUsers",
    "bootstrap_ci",
    "build_protocol",
    "cold_items",
    "evaluate_scorer",
    "load_protocol",
    "mean_ndcg",
    "only_items",
    "ranked_items",
    "summarise",
    "without_items",
]

#: protocol code -> display name
PROTOCOLS = {"sg": "P-SG", "loo": "P-LOO", "cold": "P-COLD"}

#: share of the eligible games P-COLD turns into new games
COLD_FRACTION = 0.2

SKIP_REASONS = {
    "sg": "no fold-in game or no target game",
    "cold": "no fold-in game or no target game",
    "loo": "never played any game (every playtime is 0), so no most-played game",
}


@dataclass(frozen=True)
class ItemMetadata:
    """What the catalog says about each game (index = ``item_idx``), for content and owners."""

    genres: list[list[str]]
    tags: list[list[str]]
    developer: list[str]  # "" when unknown; several separated by "," or ";"
    publisher: list[str]
    owners: np.ndarray  # (n_items,) float64 SteamSpy owners (mid-range), NaN when unknown
    #: (n_items,) int64: which games are editions of one game (see dataio.families); None: none
    family: np.ndarray | None = None
    players: np.ndarray | None = None  # (n_items,) training players
    names: list[str] | None = None  # None: no name is known

    def tokens(self) -> list[list[str]]:
        """Each game's content tokens (:func:`~gamerec.dataio.content.content_tokens`)."""
        from gamerec.dataio.content import content_tokens

        return content_tokens(self.genres, self.tags, self.developer, self.publisher, self.names)

    def editions(self) -> Editions | None:
        """The editions of the protocol's games, as the ranking engine groups them."""
        if self.family is None or self.players is None:
            return None
        return Editions(self.family, self.players > 0, self.players)


@dataclass(frozen=True)
class ProtocolData:
    """Everything a protocol needs: training matrix, validation users, test users."""

    protocol: str
    n_items: int
    train_users: np.ndarray  # (n_train,) global user_idx of the training rows
    train: UserItems  # the training users' whole histories with playtime
    valid: HeldOutUsers
    test: HeldOutUsers
    #: P-COLD's new games (sorted item_idx): in no training or validation row; else empty
    new_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    metadata: ItemMetadata | None = None
    #: (n_items,) bool: the games ``recommend`` may answer; every method ranks these alone
    recommendable: np.ndarray | None = None

    @functools.cached_property
    def allowed(self) -> np.ndarray:
        """(n_items,) bool, read-only: what every method ranks."""
        mask = (
            np.ones(self.n_items, dtype=bool)
            if self.recommendable is None
            else np.array(self.recommendable, dtype=bool)
        )
        mask.setflags(write=False)
        return mask

    @property
    def name(self) -> str:
        return PROTOCOLS[self.protocol]

    @property
    def skip_reason(self) -> str:
        return SKIP_REASONS[self.protocol]

    def popularity(self) -> np.ndarray:
        """How many training users own each item."""
        return np.bincount(self.train.indices, minlength=self.n_items)


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InvalidRequestError(
            f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}"
        )
    return protocol


def _keep_items(matrix: UserItems, keep: np.ndarray) -> UserItems:
    rows = np.repeat(np.arange(matrix.n_rows), matrix.row_lengths())
    return UserItems.from_pairs(
        rows[keep], matrix.indices[keep], matrix.values[keep], matrix.n_rows, matrix.n_items
    )


def without_items(matrix: UserItems, items: np.ndarray) -> UserItems:
    """``matrix`` without its entries for ``items`` (rows kept, possibly empty)."""
    return _keep_items(matrix, ~np.isin(matrix.indices, items))


def only_items(matrix: UserItems, items: np.ndarray) -> UserItems:
    """``matrix`` with only its entries for ``items`` (rows kept, possibly empty)."""
    return _keep_items(matrix, np.isin(matrix.indices, items))


def cold_items(eligible: np.ndarray, seed: int, fraction: float = COLD_FRACTION) -> np.ndarray:
    """Sorted item_idx of a seeded ``fraction`` (rounded) of the ``eligible`` (bool mask) games."""
    candidates = np.flatnonzero(eligible)
    size = round(fraction * len(candidates))
    chosen = np.random.default_rng(seed).choice(candidates, size=size, replace=False)
    return np.sort(chosen).astype(np.int64)


def build_protocol(
    *columns: np.ndarray,
    n_items: int,
    protocol: str = "sg",
    new_items: np.ndarray | None = None,
    metadata: ItemMetadata | None = None,
    recommendable: np.ndarray | None = None,
) -> ProtocolData:
    """Build a protocol from the split's columns, those of :func:`split_matrices`.

    ``columns``: ``user_idx``, ``item_idx``, ``playtime``, ``group``, ``role`` (one entry per
    interaction). ``new_items`` (P-COLD only, e.g. from :func:`cold_items`): the games whose
    rows are taken out of the training and validation users. ``recommendable``: what may be
    ranked (targets outside it are dropped and counted).
    """
    _check_protocol(protocol)
    user_idx, item_idx, playtime, group, role = columns
    holdout = "sg" if protocol == "cold" else protocol
    matrices = split_matrices(
        user_idx,
        item_idx,
        playtime,
        group,
        role,
        n_items=n_items,
        holdout=holdout,
        recommendable=recommendable,
    )
    hidden = np.zeros(0, dtype=np.int64)
    train, valid = matrices.train, matrices.valid
    if protocol == "cold":
        hidden = np.unique(np.asarray(new_items if new_items is not None else [], np.int64))
        train = without_items(train, hidden)
        valid = HeldOutUsers(
            valid.user_idx,
            without_items(valid.histories, hidden),
            without_items(valid.targets, hidden),
            valid.skipped,
            valid.dropped_targets,
        )
    return ProtocolData(
        protocol=protocol,
        n_items=n_items,
        train_users=matrices.train_users,
        train=train,
        valid=valid,
        test=matrices.test,
        new_items=hidden,
        metadata=metadata,
        recommendable=None if recommendable is None else np.asarray(recommendable, bool),
    )


def load_protocol(processed_dir: str | Path, protocol: str = "sg", seed: int = 0) -> ProtocolData:
    """Read ``split.parquet``, ``interactions.parquet`` and ``items.parquet`` of ``processed/``.

    Check the directory's manifest first (``artifacts.read_manifest``); this only reads.
    ``seed`` draws P-COLD's new games among those with players, an appid and a tag or genre.
    """
    _check_protocol(protocol)
    directory = Path(processed_dir)
    processed = read_processed(directory, tables=("items", "interactions", "split"))
    split, interactions, items = processed.split, processed.interactions, processed.items
    n_items = games_with_players(items["has_players"])
    same_rows = len(split) == len(interactions) and bool(
        np.array_equal(split["user_idx"].to_numpy(), interactions["user_idx"].to_numpy())
        and np.array_equal(split["item_idx"].to_numpy(), interactions["item_idx"].to_numpy())
    )
    if not same_rows:
        raise ArtifactError(
            f"{directory}: the split and the interactions do not list the same interactions "
            "in the same order; run `gamerec preprocess` again"
        )
    item_idx = split["item_idx"].to_numpy()
    if len(item_idx) and (item_idx.min() < 0 or item_idx.max() >= n_items):
        raise ArtifactError(
            f"{directory}: the split refers to games outside the catalog ({n_items} games); "
            "run `gamerec preprocess` again"
        )
    # every protocol ranks the games with players (P-COLD's new games are among them), those
    # that may be recommended
    metadata = _metadata(items.iloc[:n_items])
    recommendable = items["recommendable"].to_numpy(dtype=bool)[:n_items]
    new_items = None
    if protocol == "cold":
        has_players = np.bincount(item_idx, minlength=n_items) > 0
        has_content = np.array(
            [len(g) + len(t) > 0 for g, t in zip(metadata.genres, metadata.tags, strict=True)],
            dtype=bool,
        )
        has_appid = items["appid"].notna().to_numpy()[:n_items]
        eligible = has_players & has_appid & has_content & recommendable
        new_items = cold_items(eligible, seed)
    return build_protocol(
        split["user_idx"].to_numpy(),
        item_idx,
        interactions["playtime_min"].to_numpy(),
        split["group"].astype(str).to_numpy(),
        split["role"].astype(str).to_numpy(),
        n_items=n_items,
        protocol=protocol,
        new_items=new_items,
        metadata=metadata,
        recommendable=recommendable,
    )


def _metadata(items: Any) -> ItemMetadata:
    """The catalog's content fields, in ``item_idx`` order (items.parquet is sorted by it)."""
    import pandas as pd

    def lists(name: str) -> list[list[str]]:
        return [[str(v) for v in value] if value is not None else [] for value in items[name]]

    def texts(name: str) -> list[str]:
        return ["" if pd.isna(value) else str(value) for value in items[name]]

    low = pd.to_numeric(items["owners_low"], errors="coerce").astype("float64").to_numpy()
    high = pd.to_numeric(items["owners_high"], errors="coerce").astype("float64").to_numpy()
    return ItemMetadata(
        genres=lists("genres"),
        tags=lists("tags"),
        developer=texts("developer"),
        publisher=texts("publisher"),
        owners=(low + high) / 2,
        family=items["family"].to_numpy(dtype=np.int64) if "family" in items else None,
        players=items["n_users"].to_numpy(dtype=np.float64),
        names=texts("name") if "name" in items else None,
    )


@dataclass
class UserMetrics:
    """Per-user metrics of one scorer on one set of users.

    ``per_user[key]`` is aligned with ``rows``: the input rows that had at least one target
    (rows without targets have nothing to find and are not evaluated).
    """

    rows: np.ndarray
    per_user: dict[str, np.ndarray]
    aggregate: dict[str, float] = field(default_factory=dict)  # coverage@K
    top_items: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.int64))
    seconds: float = 0.0

    @property
    def n_users(self) -> int:
        return len(self.rows)

    def mean(self, key: str) -> float:
        if key in self.aggregate:
            return self.aggregate[key]
        return float(self.per_user[key].mean()) if self.n_users else float("nan")


#: a ranking method: a baseline's scores, or a ranker that makes its own lists (the engine)
Method = Scorer | Ranker


def model_engines(model: Any, metadata: ItemMetadata | None) -> list[Any]:
    """The trained model's :class:`~gamerec.ranking.RankingEngine` s as ``recommend`` ranks
    with them (editions folded, genre/tag/studio closeness from the catalog): the first stage
    alone, then with the co-play re-ranker when the model has one."""
    from gamerec.ranking import RankingEngine
    from gamerec.towers.cold import token_table

    table = token_table(model.description)
    parts: dict[str, Any] = {}
    if metadata is not None:
        parts["editions"] = metadata.editions()
        if table is not None:
            parts["content_rows"] = table.rows(metadata.tokens())
    engines = [RankingEngine.from_model(model, rerank=False, **parts)]
    if model.coplay is not None and model.description.rerank is not None:
        engines.append(RankingEngine.from_model(model, rerank=True, **parts))
    return engines


def ranked_items(
    method: Method, histories: UserItems, k: int, allowed: np.ndarray | None
) -> np.ndarray:
    """(n_rows, k) each row's best games among ``allowed``, never a history game."""
    n_items = histories.n_items
    if hasattr(method, "rank_lists"):
        mask = np.ones(n_items, dtype=bool) if allowed is None else allowed
        top = np.asarray(method.rank_lists(histories, k, mask))
        if top.shape != (histories.n_rows, k):
            raise ArtifactError(
                f"{method.name} ranked {top.shape} games for {histories.n_rows} users at K = {k}"
            )
        return top
    raw = method.score(histories)
    if getattr(raw, "shape", None) != (histories.n_rows, n_items):
        raise ArtifactError(
            f"{getattr(method, 'name', 'the scorer')} returned scores of shape "
            f"{getattr(raw, 'shape', None)} for {histories.n_rows} users and {n_items} games; "
            "it was built for another catalog: run `gamerec train` again"
        )
    scores = np.array(raw, dtype=np.float32)
    scores[
        np.repeat(np.arange(histories.n_rows), histories.row_lengths()), histories.indices
    ] = -np.inf
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return top_k(scores, k)


def evaluate_scorer(
    scorer: Method,
    histories: UserItems,
    targets: UserItems,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    allowed: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    batch_size: int = 1024,
    on_batch: Callable[[int, int], None] | None = None,
) -> UserMetrics:
    """Rank the catalog (``allowed`` games only, when given) for every row with targets;
    return per-user metric arrays.

    History items never come back. ``popularity`` (training owners per item) adds
    ``pop_pct@K``; coverage counts the share of ``allowed`` games recommended to anyone.
    ``on_batch(done, total)`` is called after each batch of ``batch_size`` rows.
    """
    if histories.n_rows != targets.n_rows or histories.n_items != targets.n_items:
        raise ValueError(
            f"histories ({histories.n_rows} x {histories.n_items}) and targets "
            f"({targets.n_rows} x {targets.n_items}) do not match"
        )
    if batch_size < 1:
        raise InvalidRequestError(f"batch_size must be at least 1, got {batch_size}")
    n_items = histories.n_items
    ks = check_ks(ks, n_items)
    k_max = ks[-1]
    percentiles = None if popularity is None else popularity_percentiles(popularity)
    rows = np.flatnonzero(targets.row_lengths() > 0)
    hist, targ = histories.take_rows(rows), targets.take_rows(rows)
    started = time.perf_counter()
    parts: dict[str, list[np.ndarray]] = {}
    tops: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        batch = np.arange(start, min(start + batch_size, len(rows)))
        h, t = hist.take_rows(batch), targ.take_rows(batch)
        top = ranked_items(scorer, h, k_max, allowed)
        values = ranking_metrics(hit_matrix(top, t), t.row_lengths(), ks)
        if percentiles is not None:
            values.update(popularity_bias(top, percentiles, ks))
        for key, array in values.items():
            parts.setdefault(key, []).append(array)
        tops.append(top)
        if on_batch is not None:
            on_batch(int(batch[-1]) + 1, len(rows))
    top_items = np.concatenate(tops) if tops else np.empty((0, k_max), dtype=np.int64)
    per_user = {key: np.concatenate(arrays) for key, arrays in parts.items()}
    return UserMetrics(
        rows=rows,
        per_user=per_user,
        aggregate=coverage(top_items, ks, n_items if allowed is None else int(allowed.sum())),
        top_items=top_items,
        seconds=time.perf_counter() - started,
    )


def mean_ndcg(
    scorer: Method,
    histories: UserItems,
    targets: UserItems,
    k: int = 20,
    batch_size: int = 1024,
    allowed: np.ndarray | None = None,
) -> float:
    """Mean NDCG@k over the rows with targets (K capped at the catalog size): for early stopping."""
    k = min(k, histories.n_items)
    result = evaluate_scorer(
        scorer, histories, targets, [k], batch_size=batch_size, allowed=allowed
    )
    if result.n_users == 0:
        raise InvalidRequestError("no user with a target game to evaluate on")
    return result.mean(metric_key("ndcg", k))


class ValidationUsers:
    """The validation users' NDCG@20, among ``allowed`` games: what early stopping and the
    re-ranker's choice go by (:class:`gamerec.towers.fit.Validation`)."""

    def __init__(self, users: HeldOutUsers, allowed: np.ndarray | None = None, k: int = 20):
        if users.histories.n_rows == 0:
            raise InvalidRequestError("no validation users to tune on")
        self.users = users
        self.allowed = allowed
        self.k = min(k, users.histories.n_items)
        self._rows = np.flatnonzero(users.targets.row_lengths() > 0)

    def ndcg(self, method: Method) -> float:
        return mean_ndcg(
            method, self.users.histories, self.users.targets, self.k, allowed=self.allowed
        )

    def ndcg_part(self, method: Method, part: int, parts: int) -> tuple[float, int]:
        mine = self._rows[part::parts]
        if len(mine) == 0:
            return 0.0, 0
        result = evaluate_scorer(
            method,
            self.users.histories.take_rows(mine),
            self.users.targets.take_rows(mine),
            [self.k],
            allowed=self.allowed,
        )
        return float(result.per_user[metric_key("ndcg", self.k)].sum()), result.n_users


def bootstrap_ci(
    per_user: Mapping[str, np.ndarray],
    resamples: int,
    seed: int,
    level: float = 0.95,
    chunk: int = 200,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of the mean of each per-user metric, resampling users.

    All metrics share the resamples, and the resamples depend only on ``seed`` and the number of
    users: methods evaluated on the same users get the same resamples (a paired bootstrap).
    """
    keys = list(per_user)
    if resamples < 1 or not keys:
        return {}
    values = np.column_stack([np.asarray(per_user[key], dtype=np.float64) for key in keys])
    n = values.shape[0]
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, len(keys)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)
        means[start : start + size] = counts @ values / n
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return {key: (float(low[i]), float(high[i])) for i, key in enumerate(keys)}


def summarise(
    metrics: UserMetrics, resamples: int, seed: int, level: float = 0.95
) -> dict[str, dict[str, float | list[float] | None]]:
    """``{key: {"mean": m, "ci": [low, high] or None}}`` for every metric, coverage included."""
    intervals = bootstrap_ci(metrics.per_user, resamples, seed, level)
    out: dict[str, dict[str, float | list[float] | None]] = {}
    for key in metrics.per_user:
        ci = intervals.get(key)
        out[key] = {"mean": metrics.mean(key), "ci": list(ci) if ci is not None else None}
    for key, value in metrics.aggregate.items():
        out[key] = {"mean": value, "ci": None}
    return out
