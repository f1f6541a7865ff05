"""The ``index/`` stage on disk: reading the model's item embeddings, and loading an index
only when it was built from exactly those embeddings.

``index/manifest.json`` records the index kind, its parameters, the item count and dimension,
and the fingerprint of the ``model/item_embeddings.npy`` it was built from. The model's own
manifest lists the fingerprint of that file under ``files``; the two must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from gamerec.artifacts import fingerprint, read_manifest
from gamerec.errors import ArtifactError
from gamerec.index.faiss_index import load_index

__all__ = [
    "EMBEDDINGS_FILE",
    "INDEX_FILE",
    "index_manifest_extra",
    "load_index_for_model",
    "read_item_embeddings",
]

EMBEDDINGS_FILE = "item_embeddings.npy"
INDEX_FILE = "items.faiss"
#: how far from 1 an embedding's norm may be before it is not "L2-normalised"
_NORM_TOLERANCE = 1e-3
_RETRAIN = "run `gamerec train` again"


def _model_embeddings_fingerprint(model_dir: Path) -> str:
    manifest = read_manifest(model_dir, "model")
    files = manifest.get("files")
    expected = files.get(EMBEDDINGS_FILE) if isinstance(files, dict) else None
    if not isinstance(expected, str):
        raise ArtifactError(f"{model_dir}/manifest.json lists no {EMBEDDINGS_FILE}; {_RETRAIN}")
    return expected


def read_item_embeddings(model_dir: str | Path) -> tuple[npt.NDArray[np.float32], str]:
    """The model's item embeddings, checked, and the fingerprint of their file.

    Refuses (ArtifactError naming the command) a model directory without a valid manifest, an
    embeddings file that changed since training, that is not an ``(n_items, d)`` float32 array,
    or whose rows are not unit vectors.
    """
    model_dir = Path(model_dir)
    expected = _model_embeddings_fingerprint(model_dir)
    path = model_dir / EMBEDDINGS_FILE
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


def index_manifest_extra(
    params: dict[str, Any], n_items: int, dim: int, embeddings_fingerprint: str
) -> dict[str, Any]:
    """The fields of ``index/manifest.json`` that :func:`load_index_for_model` checks."""
    return {
        "index": {"kind": params["kind"], "params": params, "n_items": n_items, "dim": dim},
        "model_embeddings": embeddings_fingerprint,
    }


def load_index_for_model(
    index_dir: str | Path,
    model_dir: str | Path,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    verify: bool = True,
) -> faiss.Index:
    """Load ``index/items.faiss``, refusing it unless it was built from this model's embeddings.

    Checks, each failing with ArtifactError that names the command to run: both manifests
    exist; (with ``verify``) the index file is byte-for-byte what was written; the index was
    built from the embeddings file the model's manifest lists; and the index's dimension and
    item count equal the embeddings' shape. ``ef_search`` / ``nprobe`` override the search
    settings the index was built with.
    """
    index_dir = Path(index_dir)
    model_dir = Path(model_dir)
    manifest = read_manifest(index_dir, "index", verify=verify)
    model_fingerprint = _model_embeddings_fingerprint(model_dir)
    if manifest.get("model_embeddings") != model_fingerprint:
        raise ArtifactError(
            f"the index in {index_dir} was built for another model; run `gamerec index`"
        )
    embeddings_path = model_dir / EMBEDDINGS_FILE
    try:
        # reads only the header: the shape the index must match
        shape = np.load(embeddings_path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{embeddings_path} cannot be read ({exc}); {_RETRAIN}") from None
    if len(shape) != 2:
        raise ArtifactError(f"{embeddings_path} is not an (n_items, d) array; {_RETRAIN}")
    info = manifest.get("index")
    stored = dict(info.get("params", {})) if isinstance(info, dict) else {}
    if ef_search is not None:
        stored["ef_search"] = ef_search
    if nprobe is not None:
        stored["nprobe"] = nprobe
    return load_index(index_dir / INDEX_FILE, dim=shape[1], n_items=shape[0], params=stored)
