"""Cold-start games: a mapping from what the catalog says about a game to the trained vectors.

The two-tower learns an ID embedding per game with players. A game nobody in the play data owns
has no such row, so after training a :class:`ContentMapper` is fit by ridge regression from
content features that every catalog game has (tags, genres, developer, publisher, SteamSpy
owners, reviews, price, release year; never a count from the play data) to (a) the trained item
embedding and (b) the user tower's ``history`` row of the game (Gantner et al., "Learning
Attribute-to-Feature Mappings for Cold-Start Recommendations", ICDM 2010). ``gamerec index``
then embeds every catalog game: a trained game keeps its vectors, any other gets the mapped
ones, so a grown catalog needs no retraining.

A new game's ``history`` row, what it brings to a player's vector when the player owns it, is
half the mapping's and half its nearest trained games' rows by genres, tags, studios and name
(:func:`neighbour_history`): the ridge mapping regresses towards the average game, and a
player whose library is mostly new games was then described by the few old ones it holds.

numpy only (training fits it in closed form; indexing applies it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gamerec.dataio.content import TokenTable, content_tokens
from gamerec.errors import ArtifactError
from gamerec.ranking.stages import ContentSimilarity, release_years

if TYPE_CHECKING:
    import pandas as pd

    from gamerec.artifacts.index import CatalogVectors
    from gamerec.artifacts.model import ModelArtifacts, ModelDescription

__all__ = [
    "CONTENT_LAYOUT",
    "ContentMapper",
    "ContentVocabulary",
    "HeldOutGames",
    "catalog_release_years",
    "catalog_tokens",
    "content_features",
    "embed_catalog",
    "embed_items",
    "fit_content_mapper",
    "neighbour_history",
    "ridge_path",
    "token_rows",
    "token_table",
]

#: the layout of the content features; a model written with another one must be retrained
CONTENT_LAYOUT = 1
#: ridge penalties tried on the held-out games (the features are multi-hot and standardised)
DEFAULT_LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
_NUMERIC = ("log_owners", "review_share", "log_reviews", "log_price", "release_year")
_RETRAIN = "run `gamerec train` again (then `gamerec index`)"
#: a new game's history row: the mean of its NEIGHBOURS closest trained games' rows, each
#: weighted by its closeness to the power NEIGHBOUR_POWER, as NEIGHBOUR_SHARE of the row (the
#: mapping's is the rest). With every validation user's input given a row made without it (ten
#: folds, bundled data), the towers alone score NDCG@20 0.321 from the mapping's rows, 0.407
#: from the neighbours' and 0.394 from both; with a tenth of the trained games held out as new,
#: both rank the validation users as well as the neighbours alone on a random tenth and better
#: on the newest tenth (benchmarks/new_inputs.py; docs/model.md)
NEIGHBOURS = 5
NEIGHBOUR_POWER = 3.0
NEIGHBOUR_SHARE = 0.5
#: new games compared with every trained game at once: a (chunk, trained) matrix, and the
#: trained games as dense rows over the chunk's own tokens (twice as fast as 1,024 here)
_NEIGHBOUR_CHUNK = 256


def _names(value: Any) -> list[str]:
    """A developer/publisher cell as a list of normalised names ("A, B" names two studios)."""
    parts: Iterable[Any]
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple | np.ndarray):
        parts = value
    else:  # None, NaN, pandas' NA
        return []
    return [p for p in (str(part).strip().lower() for part in parts) if p]


def _lists(values: Iterable[Any]) -> list[list[str]]:
    return [[str(v) for v in (cell if cell is not None else [])] for cell in values]


def _numeric_raw(items: pd.DataFrame) -> np.ndarray:
    import pandas as pd

    def column(name: str) -> np.ndarray:
        if name not in items:
            return np.full(len(items), np.nan)
        return pd.to_numeric(items[name], errors="coerce").astype("float64").to_numpy()

    owners = (column("owners_low") + column("owners_high")) / 2
    positive, negative = column("positive"), column("negative")
    reviews = positive + negative
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = {
            "log_owners": np.log1p(np.where(owners >= 0, owners, np.nan)),
            "review_share": np.where(reviews > 0, positive / np.maximum(reviews, 1), np.nan),
            "log_reviews": np.log1p(np.where(reviews >= 0, reviews, np.nan)),
            "log_price": np.log1p(
                np.where(column("price_cents") >= 0, column("price_cents"), np.nan)
            ),
            "release_year": np.where(column("release_year") > 0, column("release_year"), np.nan),
        }
    return np.stack([raw[name] for name in _NUMERIC], axis=1)


@dataclass(frozen=True)
class ContentVocabulary:
    """What the content features are: vocabularies and numeric standardisation (JSON-able)."""

    tags: list[str]
    genres: list[str]
    developers: list[str]
    publishers: list[str]
    numeric_mean: list[float]
    numeric_std: list[float]

    @property
    def n_features(self) -> int:
        sizes = (self.tags, self.genres, self.developers, self.publishers)
        return sum(len(s) for s in sizes) + 2 * len(_NUMERIC)

    @classmethod
    def build(
        cls,
        items: pd.DataFrame,
        *,
        max_tags: int = 300,
        max_names: int = 200,
        min_games: int = 2,
    ) -> ContentVocabulary:
        """The most frequent tags, genres, developers and publishers (on ``min_games``+ games)."""

        def top(lists: Iterable[Iterable[str]], limit: int) -> list[str]:
            counts = Counter(token for cell in lists for token in set(cell))
            ranked = sorted(
                (t for t, c in counts.items() if c >= min_games), key=lambda t: (-counts[t], t)
            )
            return ranked[:limit]

        raw = _numeric_raw(items)
        known = np.isfinite(raw)
        mean = [
            float(raw[known[:, j], j].mean()) if known[:, j].any() else 0.0
            for j in range(raw.shape[1])
        ]
        std = [
            float(raw[known[:, j], j].std()) if known[:, j].sum() > 1 else 1.0
            for j in range(raw.shape[1])
        ]
        return cls(
            tags=top(_lists(items["tags"]), max_tags),
            genres=top(_lists(items["genres"]), max_tags),
            developers=top(map(_names, items["developer"]), max_names),
            publishers=top(map(_names, items["publisher"]), max_names),
            numeric_mean=mean,
            numeric_std=[s if s > 0 else 1.0 for s in std],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": CONTENT_LAYOUT,
            "numeric": list(_NUMERIC),
            "tags": self.tags,
            "genres": self.genres,
            "developers": self.developers,
            "publishers": self.publishers,
            "numeric_mean": self.numeric_mean,
            "numeric_std": self.numeric_std,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> ContentVocabulary:
        if not isinstance(value, Mapping):
            raise ArtifactError(f"the model has no content mapping for new games; {_RETRAIN}")
        if value.get("layout") != CONTENT_LAYOUT or list(value.get("numeric") or []) != list(
            _NUMERIC
        ):
            raise ArtifactError(
                f"the model's content features have layout {value.get('layout')!r}, this gamerec "
                f"uses layout {CONTENT_LAYOUT}; {_RETRAIN}"
            )
        try:
            return cls(
                tags=[str(t) for t in value["tags"]],
                genres=[str(g) for g in value["genres"]],
                developers=[str(d) for d in value["developers"]],
                publishers=[str(p) for p in value["publishers"]],
                numeric_mean=[float(m) for m in value["numeric_mean"]],
                numeric_std=[float(s) for s in value["numeric_std"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"the model's content vocabulary is unreadable ({exc}); {_RETRAIN}"
            ) from None


def content_features(items: pd.DataFrame, vocabulary: ContentVocabulary) -> np.ndarray:
    """(n_items, n_features) float32: multi-hot tags, genres, developers, publishers (each
    block scaled to unit norm per game), then standardised numbers and whether each was known."""
    blocks: list[np.ndarray] = []
    for lists, names in (
        (_lists(items["tags"]), vocabulary.tags),
        (_lists(items["genres"]), vocabulary.genres),
        ([_names(v) for v in items["developer"]], vocabulary.developers),
        ([_names(v) for v in items["publisher"]], vocabulary.publishers),
    ):
        position = {name: i for i, name in enumerate(names)}
        block = np.zeros((len(items), len(names)), dtype=np.float32)
        for row, cell in enumerate(lists):
            for token in cell:
                column = position.get(token)
                if column is not None:
                    block[row, column] = 1.0
        norms = np.sqrt(block.sum(1, keepdims=True))
        blocks.append(np.divide(block, norms, out=block, where=norms > 0))
    raw = _numeric_raw(items)
    known = np.isfinite(raw)
    standard = (raw - np.asarray(vocabulary.numeric_mean)) / np.asarray(vocabulary.numeric_std)
    blocks.append(np.where(known, standard, 0.0).astype(np.float32))
    blocks.append(known.astype(np.float32))
    return np.concatenate(blocks, axis=1)


def token_rows(
    genres: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], tokens: Sequence[str]
) -> np.ndarray:
    """(n, n_tokens) genre/tag profiles over the model's ``tokens``, as the user tower reads
    them (:func:`gamerec.towers.features.build_item_features`: multi-hot, rows summing to 1)."""
    position = {t: i for i, t in enumerate(tokens)}
    matrix = np.zeros((len(genres), len(tokens)), dtype=np.float32)
    for row, (gs, ts) in enumerate(zip(genres, tags, strict=True)):
        for token in [f"genre:{g}" for g in gs] + [f"tag:{t}" for t in ts]:
            column = position.get(token)
            if column is not None:
                matrix[row, column] = 1.0
    totals = matrix.sum(1, keepdims=True)
    return np.divide(matrix, totals, out=matrix, where=totals > 0)


def ridge_path(
    features: np.ndarray, targets: np.ndarray, lambdas: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ridge regression with an unpenalised intercept, for every penalty in ``lambdas``:
    ``W = (Xc'Xc + lambda I)^-1 Xc'Yc`` on centred data, ``b = mean(Y) - mean(X) W``.

    One eigendecomposition of the Gram matrix serves every penalty.
    """
    x = features.astype(np.float64)
    y = targets.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    values, vectors = np.linalg.eigh(xc.T @ xc)
    projected = vectors.T @ (xc.T @ yc)
    path = []
    for penalty in lambdas:
        weight = vectors @ (projected / (np.maximum(values, 0.0) + penalty)[:, None])
        path.append((weight, y_mean - x_mean @ weight))
    return path


def _mean_cosine(predicted: np.ndarray, actual: np.ndarray) -> float:
    num = (predicted * actual).sum(1)
    den = np.linalg.norm(predicted, axis=1) * np.linalg.norm(actual, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


@dataclass
class ContentMapper:
    """Content features -> (item embedding, user-tower history row).

    A mapped embedding keeps the norm the regression gives it: ridge pulls a game it knows
    little about toward the average game, and a short vector is one the mapping is unsure of.
    Games nobody plays are ranked among themselves (:func:`interleave`), where that norm
    ranks better than unit vectors do (P-COLD new-game Recall@20 0.399 against 0.372 with unit
    vectors and 0.281 with unit vectors moved to the trained games' mean cosine).
    """

    vocabulary: ContentVocabulary
    embedding_weight: np.ndarray  # (n_features, D)
    embedding_bias: np.ndarray  # (D,)
    history_weight: np.ndarray  # (n_features, H)
    history_bias: np.ndarray  # (H,)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "embedding_weight": self.embedding_weight,
            "embedding_bias": self.embedding_bias,
            "history_weight": self.history_weight,
            "history_bias": self.history_bias,
        }

    @classmethod
    def from_arrays(
        cls, vocabulary: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray] | None
    ) -> ContentMapper:
        """The mapper a model stored; ArtifactError (retrain) on another layout or shapes."""
        vocab = ContentVocabulary.from_dict(vocabulary)
        if arrays is None or any(
            name not in arrays
            for name in ("embedding_weight", "embedding_bias", "history_weight", "history_bias")
        ):
            raise ArtifactError(f"the model has no content mapping for new games; {_RETRAIN}")
        mapper = cls(
            vocab,
            np.asarray(arrays["embedding_weight"], dtype=np.float32),
            np.asarray(arrays["embedding_bias"], dtype=np.float32),
            np.asarray(arrays["history_weight"], dtype=np.float32),
            np.asarray(arrays["history_bias"], dtype=np.float32),
        )
        if (
            mapper.embedding_weight.shape[0] != vocab.n_features
            or mapper.history_weight.shape[0] != vocab.n_features
            or mapper.embedding_bias.shape != mapper.embedding_weight.shape[1:]
            or mapper.history_bias.shape != mapper.history_weight.shape[1:]
        ):
            raise ArtifactError(
                f"the model's content mapping does not fit its vocabulary "
                f"({vocab.n_features} features); {_RETRAIN}"
            )
        return mapper

    def map_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item embeddings (n, D), history rows (n, H)), float32."""
        embeddings = features @ self.embedding_weight + self.embedding_bias
        history = features @ self.history_weight + self.history_bias
        return embeddings.astype(np.float32), history.astype(np.float32)

    def map_items(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.map_features(content_features(items, self.vocabulary))


@dataclass(frozen=True)
class HeldOutGames:
    """The trained games the mapping was chosen on, as the mapping fit without them embeds
    them: games the model knows, standing in for new ones (to tune how new games compete)."""

    rows: np.ndarray  # (m,) rows of the trained games
    embeddings: np.ndarray  # (m, D) their mapped item embeddings
    history: np.ndarray  # (m, H) their mapped rows of the user tower's history table


def fit_content_mapper(
    items: pd.DataFrame,
    item_embeddings: np.ndarray,
    history: np.ndarray,
    *,
    seed: int = 0,
    holdout_fraction: float = 0.1,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
) -> tuple[ContentMapper, dict[str, Any], HeldOutGames]:
    """Fit the mapper on the trained games (``items`` row i has ``item_embeddings[i]`` and
    ``history[i]``). Each target's penalty is the one with the best mean cosine on a seeded
    held-out ``holdout_fraction`` of the games; the mapper is then refit on every game.

    Returns the mapper, its fit quality (held-out mean cosine of mapped vs trained vectors) and
    the held-out games as the mapping fit without them embeds them.
    """
    if len(items) != len(item_embeddings) or len(items) != len(history):
        raise ValueError("items, item_embeddings and history must have one row per game")
    vocabulary = ContentVocabulary.build(items)
    features = content_features(items, vocabulary)
    order = np.random.default_rng(seed).permutation(len(items))
    n_held = max(1, round(holdout_fraction * len(items))) if len(items) >= 10 else 0
    held, fit = order[:n_held], order[n_held:]
    chosen: dict[str, float] = {}
    quality: dict[str, Any] = {"games": len(items), "held_out_games": int(n_held)}
    final: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    held_out: dict[str, np.ndarray] = {
        "embedding": np.zeros((0, item_embeddings.shape[1]), np.float32),
        "history": np.zeros((0, history.shape[1]), np.float32),
    }
    for name, targets in (("embedding", item_embeddings), ("history", history)):
        best = float(lambdas[len(lambdas) // 2])
        if n_held:
            predictions = [
                features[held] @ w + b for w, b in ridge_path(features[fit], targets[fit], lambdas)
            ]
            scores = [_mean_cosine(predicted, targets[held]) for predicted in predictions]
            best_at = int(np.argmax(scores))
            best = float(lambdas[best_at])
            held_out[name] = predictions[best_at].astype(np.float32)
            quality[f"{name}_held_out_cosine"] = round(scores[best_at], 4)
            # what a game's mean vector alone would score: the bar the mapping must clear
            mean_only = np.broadcast_to(targets[fit].mean(0), targets[held].shape)
            quality[f"{name}_mean_vector_cosine"] = round(_mean_cosine(mean_only, targets[held]), 4)
        chosen[name] = best
        final[name] = ridge_path(features, targets, [best])[0]
    quality["lambda"] = chosen
    quality["features"] = vocabulary.n_features
    mapper = ContentMapper(
        vocabulary,
        final["embedding"][0].astype(np.float32),
        final["embedding"][1].astype(np.float32),
        final["history"][0].astype(np.float32),
        final["history"][1].astype(np.float32),
    )
    return mapper, quality, HeldOutGames(held, held_out["embedding"], held_out["history"])


def neighbour_history(
    content: ContentSimilarity,
    new_rows: np.ndarray,
    trained_rows: np.ndarray,
    history: np.ndarray,
    mapped_history: np.ndarray,
) -> np.ndarray:
    """(m, H) the history rows of the games ``new_rows``: :data:`NEIGHBOUR_SHARE` of the mean
    of the rows of their :data:`NEIGHBOURS` closest ``trained_rows`` (``content`` knows both,
    :meth:`ContentSimilarity.pairwise`), weighted by closeness to the power
    :data:`NEIGHBOUR_POWER`, and the rest of ``mapped_history`` ((m, H), the mapping's rows).
    ``history`` ((len(trained_rows), H)) is the trained games' rows. A game close to no trained
    game keeps the mapping's row."""
    new_rows = np.asarray(new_rows, dtype=np.int64)
    trained_rows = np.asarray(trained_rows, dtype=np.int64)
    out = np.array(mapped_history, dtype=np.float32, copy=True)
    k = min(NEIGHBOURS, len(trained_rows))
    if k == 0 or len(new_rows) == 0:
        return out
    for start in range(0, len(new_rows), _NEIGHBOUR_CHUNK):
        rows = slice(start, start + _NEIGHBOUR_CHUNK)
        closeness = content.pairwise(new_rows[rows], trained_rows)  # (chunk, trained)
        nearest = np.argpartition(-closeness, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(closeness, nearest, 1).clip(0).astype(np.float64)
        weights **= NEIGHBOUR_POWER
        totals = weights.sum(1)
        close = totals > 0
        neighbours = np.einsum("mk,mkh->mh", weights[close], history[nearest[close]])
        part = out[rows]  # a view: written through
        part[close] = (
            NEIGHBOUR_SHARE * neighbours / totals[close, None]
            + (1.0 - NEIGHBOUR_SHARE) * part[close]
        ).astype(np.float32)
    return out


def embed_catalog(model: ModelArtifacts, items: pd.DataFrame) -> CatalogVectors:
    """Every row of ``items``: a game the model was trained on (found by ``item_key``, so a
    catalog re-preprocessed, reordered or grown since training needs no retraining) keeps its
    trained vectors; any other is embedded by the model's content mapping. Each game's content
    tokens come along, numbered by the model's token table, when the model has one."""
    vectors = embed_items(
        ContentMapper.from_arrays(model.content_vocabulary, model.content),
        model.item_keys,
        model.item_embeddings,
        model.user_tower,
        [str(t) for t in model.manifest.get("tokens", [])],
        items,
        source=str(model.directory),
    )
    table = token_table(model.description)
    if table is None:
        return vectors
    rows = table.rows(catalog_tokens(items))
    trained = np.asarray(vectors.model_rows) >= 0
    mapped = np.flatnonzero(~trained)
    history = vectors.history.copy()
    history[mapped] = neighbour_history(
        ContentSimilarity.of_table(rows, table),
        mapped,
        np.flatnonzero(trained),
        history[trained],
        history[mapped],
    )
    return replace(vectors, history=history, content=(rows.indptr, rows.indices))


def token_table(description: ModelDescription) -> TokenTable | None:
    """The content token table a model stored, if any."""
    if not description.content_tokens or len(description.content_tokens) != len(
        description.content_idf
    ):
        return None
    return TokenTable(description.content_tokens, np.asarray(description.content_idf, np.float32))


def catalog_tokens(items: pd.DataFrame) -> list[list[str]]:
    """Each catalog row's content tokens (genres, tags, studios, the start of its name)."""
    return content_tokens(
        [list(g) if g is not None else [] for g in items["genres"]],
        [list(t) if t is not None else [] for t in items["tags"]],
        list(items["developer"]),
        list(items["publisher"]),
        list(items["name"]) if "name" in items else None,
    )


def catalog_release_years(items: pd.DataFrame) -> np.ndarray:
    """(n,) float32 each catalog row's release year, estimated from its appid where the
    catalog has none (:func:`~gamerec.ranking.stages.release_years`)."""
    return release_years(
        items["appid"].to_numpy(dtype=np.float64, na_value=-1).astype(np.int64),
        items["release_year"].to_numpy(dtype=np.float64, na_value=-1),
    )


def embed_items(
    mapper: ContentMapper,
    item_keys: Sequence[str],
    item_embeddings: np.ndarray,
    user_tower: Mapping[str, np.ndarray],
    tokens: Sequence[str],
    items: pd.DataFrame,
    *,
    source: str = "the model",
) -> CatalogVectors:
    """:func:`embed_catalog` from the parts of a model: ``item_keys`` names the rows of
    ``item_embeddings`` and of the user tower's ``history`` and ``token_matrix``."""
    from gamerec.artifacts.index import CatalogVectors

    position = {key: row for row, key in enumerate(item_keys)}
    model_rows = np.array([position.get(str(key), -1) for key in items["item_key"]], np.int32)
    trained = model_rows >= 0
    mapped = np.flatnonzero(~trained)

    def known_rows(array: np.ndarray) -> np.ndarray:
        out = np.empty((len(items), array.shape[1]), dtype=np.float32)
        out[trained] = array[model_rows[trained]]
        return out

    item_vectors = known_rows(item_embeddings)
    history = known_rows(user_tower["history"])
    token_matrix = known_rows(user_tower["token_matrix"])
    if len(mapped):
        new_items = items.iloc[mapped]
        item_vectors[mapped], history[mapped] = mapper.map_items(new_items)
        token_matrix[mapped] = token_rows(
            [list(g) for g in new_items["genres"]],
            [list(t) for t in new_items["tags"]],
            tokens,
        )
    if not (np.isfinite(item_vectors).all() and np.isfinite(history).all()):
        raise ArtifactError(
            f"the content mapping of {source} gives non-finite vectors; run `gamerec train` again"
        )
    return CatalogVectors(item_vectors, history, token_matrix, model_rows)
