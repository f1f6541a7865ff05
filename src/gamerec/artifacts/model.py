"""``model/``: the checkpoint, the item embeddings, the numpy user tower, the co-play weights
and the content mapping that embeds games the model was not trained on.

The manifest records the shape and type of every array written, and :func:`read_model` checks
each array against it, so a truncated or swapped file is an :class:`ArtifactError` that says to
retrain, never a traceback or a model that fails on every request. Nothing here imports torch:
the checkpoint is written by a function the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gamerec.artifacts.processed import ITEMS_FILE, SPLIT_FILE
from gamerec.artifacts.store import (
    check_array,
    fingerprint,
    load_npz,
    read_manifest,
    write_manifest,
)
from gamerec.errors import ArtifactError

__all__ = [
    "CHECKPOINT_FILE",
    "CONTENT_FILE",
    "COPLAY_FILE",
    "EMBEDDINGS_FILE",
    "ModelArtifacts",
    "ModelDescription",
    "NewGamePolicy",
    "RerankPolicy",
    "check_model_matches_processed",
    "read_item_embeddings",
    "read_model",
    "read_model_manifest",
    "write_model",
]

CHECKPOINT_FILE = "model.pt"
EMBEDDINGS_FILE = "item_embeddings.npy"
USER_TOWER_FILE = "user_tower.npz"
COPLAY_FILE = "coplay.npy"
#: the content mapper's weights (:mod:`gamerec.towers.cold`); its vocabulary is in the manifest
CONTENT_FILE = "content.npz"
#: the processed/ files a model depends on (their fingerprints go into the model's manifest)
TRAINED_ON = (ITEMS_FILE, SPLIT_FILE)
#: how far from 1 an embedding's norm may be before it is not "L2-normalised"
_NORM_TOLERANCE = 1e-3
_RETRAIN = "run `gamerec train` again"


@dataclass(frozen=True)
class RerankPolicy:
    """The co-play second stage as ``gamerec train`` chose it on the validation users: the
    co-play model's regularisation, the two-tower's weight in the blend, and how many
    candidates each stage contributes."""

    alpha: float
    regularisation: float
    candidates: int = 200
    coplay_candidates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "lambda": self.regularisation,
            "candidates": self.candidates,
            "coplay_candidates": self.coplay_candidates,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> RerankPolicy:
        return cls(
            alpha=float(value["alpha"]),
            regularisation=float(value["lambda"]),
            candidates=int(value.get("candidates", 200)),
            coplay_candidates=int(value.get("coplay_candidates", 0)),
        )


@dataclass(frozen=True)
class NewGamePolicy:
    """How games nobody in the play data owns compete with the games the model was trained on,
    as ``gamerec train`` chose it on the validation users (trained games held out of the content
    mapping stand in for new ones): a new game's score is ``scale`` times its first-stage score
    and ``content`` times its genre/tag closeness, each standardised as the trained candidates'
    are, plus ``offset``, plus ``history_weight`` times the share of the history's games that
    are new themselves (a player of new games is one for new games), less ``older`` times the
    years the game was released before the history's games on average; it is then on the
    scale of the trained games' final scores. A mapped vector says little more than how
    popular a game is (it points where the average game does), so closeness in genres and tags
    is what tells new games apart for a player. That closeness does not know which way time
    runs: The Elder Scrolls III is as close to Skyrim as a game made after it, and the play
    data's co-play, which knows what players went on to own, knows none of these games."""

    scale: float
    offset: float
    history_weight: float = 0.0
    content: float = 0.0
    older: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> NewGamePolicy:
        return cls(
            scale=float(value["scale"]),
            offset=float(value["offset"]),
            history_weight=float(value.get("history_weight", 0.0)),
            content=float(value.get("content", 0.0)),
            older=float(value.get("older", 0.0)),
        )


@dataclass(frozen=True)
class ModelDescription:
    """What ``model/manifest.json`` says about how the model ranks, read once and typed.

    ``tokens`` are the genre/tag columns the user tower reads (``"genre:RPG"``), ``genres``
    the genres a request may ask for, ``rerank`` the second stage (None: the model has
    none), ``new_games`` how games nobody in the play data owns compete (None: a model from
    before that was tuned, which gives them fixed places), ``playtime_weight`` how much
    playtime counts in a history.
    """

    tokens: tuple[str, ...]
    genres: tuple[str, ...]
    playtime_weight: float
    rerank: RerankPolicy | None
    new_games: NewGamePolicy | None = None
    #: the weight of genre/tag/studio closeness in the final score; the content tokens it
    #: compares (:mod:`gamerec.dataio.content`) and their inverse document frequency
    content_weight: float = 0.0
    content_tokens: tuple[str, ...] = ()
    content_idf: tuple[float, ...] = ()

    @classmethod
    def from_manifest(
        cls, manifest: Mapping[str, Any], where: str | Path = "model/"
    ) -> ModelDescription:
        try:
            rerank = manifest.get("rerank")
            new_games = manifest.get("new_games")
            content = manifest.get("content_similarity") or {}
            return cls(
                tokens=tuple(str(t) for t in manifest.get("tokens", [])),
                genres=tuple(str(g) for g in manifest.get("genres", [])),
                playtime_weight=float((manifest.get("config") or {}).get("playtime_weight", 0.0)),
                rerank=RerankPolicy.from_dict(rerank) if isinstance(rerank, Mapping) else None,
                new_games=(
                    NewGamePolicy.from_dict(new_games) if isinstance(new_games, Mapping) else None
                ),
                content_weight=float(content.get("weight", 0.0)),
                content_tokens=tuple(str(t) for t in content.get("tokens", [])),
                content_idf=tuple(float(v) for v in content.get("idf", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{where}/manifest.json does not describe the model ({exc!r}); {_RETRAIN}"
            ) from None


@dataclass
class ModelArtifacts:
    """A trained model as the runtime and evaluation use it (no torch)."""

    directory: Path
    manifest: dict[str, Any]
    user_tower: dict[str, np.ndarray]
    item_embeddings: np.ndarray  # (n_items, D) float32, unit rows
    coplay: np.ndarray | None  # (n_items, n_items) float32, or None
    content: dict[str, np.ndarray] | None = None  # the content mapper's arrays, when asked for

    @property
    def embeddings_fingerprint(self) -> str:
        return str(self.manifest["files"][EMBEDDINGS_FILE])

    @property
    def content_vocabulary(self) -> dict[str, Any] | None:
        """The content mapper's vocabulary (:class:`gamerec.towers.cold.ContentVocabulary`)."""
        value = self.manifest.get("content")
        return dict(value) if isinstance(value, dict) else None

    @property
    def item_keys(self) -> list[str]:
        """``item_key`` of each trained game, in row order: how ``gamerec index`` finds a game
        of the model in a catalog that was re-preprocessed, reordered or grown since."""
        keys = self.manifest.get("item_keys")
        if not isinstance(keys, list) or len(keys) != self.item_embeddings.shape[0]:
            raise ArtifactError(
                f"{self.directory}/manifest.json lists no item key per trained game; {_RETRAIN}"
            )
        return [str(k) for k in keys]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config") or {})

    @property
    def description(self) -> ModelDescription:
        return ModelDescription.from_manifest(self.manifest, self.directory)


def _describe(array: np.ndarray) -> dict[str, Any]:
    return {"shape": list(array.shape), "dtype": str(array.dtype)}


def write_model(
    directory: str | Path,
    *,
    write_checkpoint: Callable[[Path], None],
    item_embeddings: np.ndarray,
    user_tower: Mapping[str, np.ndarray],
    coplay: np.ndarray | None,
    content: Mapping[str, np.ndarray] | None = None,
    content_vocabulary: Mapping[str, Any] | None = None,
    item_keys: list[str] | None = None,
    processed_manifest: Mapping[str, Any],
    settings: Mapping[str, Any],
    counts: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Write every file of ``model/`` and its manifest into ``directory`` (a staging folder)."""
    directory = Path(directory)
    write_checkpoint(directory / CHECKPOINT_FILE)
    np.save(directory / EMBEDDINGS_FILE, item_embeddings)
    np.savez(directory / USER_TOWER_FILE, **user_tower)  # type: ignore[arg-type]
    arrays: dict[str, Any] = {
        EMBEDDINGS_FILE: _describe(item_embeddings),
        USER_TOWER_FILE: {name: _describe(value) for name, value in user_tower.items()},
    }
    if coplay is not None:
        np.save(directory / COPLAY_FILE, coplay)
        arrays[COPLAY_FILE] = _describe(coplay)
    described: dict[str, Any] = {}
    if content is not None:
        np.savez(directory / CONTENT_FILE, **content)  # type: ignore[arg-type]
        arrays[CONTENT_FILE] = {name: _describe(value) for name, value in content.items()}
        described["content"] = dict(content_vocabulary or {})
    if item_keys is not None:
        described["item_keys"] = list(item_keys)
    files = processed_manifest.get("files", {})
    return write_manifest(
        directory,
        "model",
        settings=settings,
        inputs={f"processed/{name}": files[name] for name in TRAINED_ON},
        counts=counts,
        extra={**extra, **described, "arrays": arrays},
    )


def read_model_manifest(model_dir: str | Path) -> dict[str, Any]:
    return read_manifest(model_dir, "model")


def check_model_matches_processed(
    model_manifest: Mapping[str, Any], processed_manifest: Mapping[str, Any], model_dir: Path
) -> None:
    """The one check of a model against ``processed/``: it was trained on this catalog and split.

    Training, evaluation and indexing-free scoring (:class:`~gamerec.towers.inference.
    TwoTowerScorer`) rank the games with players in ``processed/``'s order, so they need this
    very ``processed/``. Recommending does not: it reads ``index/``, which ``gamerec index``
    builds for any catalog by matching the model's games by item key, and
    :func:`gamerec.artifacts.index.check_index_matches` checks the index against both.
    """
    listed = processed_manifest.get("files", {})
    for key, expected in (model_manifest.get("inputs") or {}).items():
        name = key.removeprefix("processed/")
        if key.startswith("processed/") and listed.get(name) != expected:
            raise ArtifactError(
                f"the model in {model_dir} was trained on another catalog or split "
                f"(processed/{name} changed since); "
                "run `gamerec train` again, then `gamerec index`"
            )


def _check_shape(path: Path, array: np.ndarray, expected: Any) -> None:
    check_array(path, array, expected, owner="model", remedy=_RETRAIN)


def _load_npy(path: Path, expected: Any, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; {_RETRAIN}")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a readable .npy array ({exc}); {_RETRAIN}") from None
    _check_shape(path, array, expected)
    # a plain ndarray over a mapping: np.memmap's own indexing costs ~0.2 ms a request
    return array.view(np.ndarray) if mmap else array


def _load_npz(
    path: Path, expected: Any, skip: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    return load_npz(path, expected, owner="model", remedy=_RETRAIN, skip=skip)


#: the user tower's arrays with a row per trained game
TOWER_ITEM_ARRAYS = frozenset({"history", "token_matrix"})


def read_model(
    model_dir: str | Path,
    *,
    coplay: Literal["skip", "map", "copy"] = "map",
    content: bool = False,
    tower_item_arrays: bool = True,
) -> ModelArtifacts:
    """Read and check ``model/``.

    ``coplay``: ``map`` memory-maps the co-play weights (a one-shot command reads only the
    rows it needs), ``copy`` reads them into memory (a long-running server: a file changed
    under a mapping would kill the process), ``skip`` leaves them out. ``content`` reads the
    content mapper's arrays (``gamerec index``); a model without them is an ArtifactError.
    Without ``tower_item_arrays`` the user tower's per-game rows (``history``,
    ``token_matrix``: 14 MB of the bundled model) are left out: an engine over the catalog
    takes every game's rows from the index instead.
    """
    model_dir = Path(model_dir)
    manifest = read_model_manifest(model_dir)
    arrays = manifest.get("arrays")
    if not isinstance(arrays, dict):
        raise ArtifactError(f"{model_dir}'s manifest lists no arrays; {_RETRAIN}")
    item_embeddings = _load_npy(model_dir / EMBEDDINGS_FILE, arrays.get(EMBEDDINGS_FILE))
    user_tower = _load_npz(
        model_dir / USER_TOWER_FILE,
        arrays.get(USER_TOWER_FILE),
        skip=frozenset() if tower_item_arrays else TOWER_ITEM_ARRAYS,
    )
    coplay_weights = None
    if coplay != "skip" and COPLAY_FILE in arrays:
        coplay_weights = _load_npy(
            model_dir / COPLAY_FILE, arrays[COPLAY_FILE], mmap=coplay == "map"
        )
    content_arrays = None
    if content:
        if CONTENT_FILE not in arrays:
            raise ArtifactError(
                f"{model_dir} has no content mapping to embed games it was not trained on; "
                f"{_RETRAIN}"
            )
        content_arrays = _load_npz(model_dir / CONTENT_FILE, arrays[CONTENT_FILE])
    return ModelArtifacts(
        model_dir, manifest, user_tower, item_embeddings, coplay_weights, content_arrays
    )


def read_item_embeddings(model_dir: str | Path) -> tuple[np.ndarray, str]:
    """The model's item embeddings, checked for indexing, and the fingerprint of their file.

    Refuses an embeddings file that changed since training, that is not an ``(n_items, d)``
    float32 array, or whose rows are not finite unit vectors.
    """
    model_dir = Path(model_dir)
    manifest = read_model_manifest(model_dir)
    path = model_dir / EMBEDDINGS_FILE
    expected = (manifest.get("files") or {}).get(EMBEDDINGS_FILE)
    if not isinstance(expected, str):
        raise ArtifactError(f"{model_dir}'s manifest lists no {EMBEDDINGS_FILE}; {_RETRAIN}")
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; {_RETRAIN}")
    actual = fingerprint(path)
    if actual != expected:
        raise ArtifactError(f"{path} changed since the model was trained; {_RETRAIN}")
    try:
        embeddings = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a readable .npy array ({exc}); {_RETRAIN}") from None
    if embeddings.ndim != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] < 1:
        raise ArtifactError(
            f"{path} must hold an (n_items, d) array, not shape {embeddings.shape}; {_RETRAIN}"
        )
    if embeddings.dtype != np.float32:
        raise ArtifactError(f"{path} holds {embeddings.dtype}, not float32; {_RETRAIN}")
    if not np.isfinite(embeddings).all():
        raise ArtifactError(f"{path} contains NaN or infinite values; {_RETRAIN}")
    norms = np.linalg.norm(embeddings, axis=1)
    off = int(np.sum(np.abs(norms - 1.0) > _NORM_TOLERANCE))
    if off:
        raise ArtifactError(
            f"{path}: {off} of {len(norms)} item embeddings are not L2-normalised, so inner "
            f"product would not be cosine; {_RETRAIN}"
        )
    return np.ascontiguousarray(embeddings), actual
