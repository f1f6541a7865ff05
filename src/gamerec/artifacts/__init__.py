"""The workspace on disk: one owner per folder.

- :mod:`gamerec.artifacts.store`: staged stage folders, manifests, stage locks (atomic file
  writes are :mod:`gamerec.atomic`, a leaf every layer may use).
- :mod:`gamerec.artifacts.workspace`: where every folder of a workspace is.
- :mod:`gamerec.artifacts.processed`: ``processed/`` (the catalog, users, interactions, split).
- :mod:`gamerec.artifacts.model`: ``model/`` (checkpoint, item embeddings, user tower, co-play).
- :mod:`gamerec.artifacts.index`: ``index/`` (the search index of the item embeddings).

Each file name is spelled in one of these modules and nowhere else; each folder has one
writer, one reader and one compatibility check, and every failure is an ``ArtifactError``
that names the command to run.
"""

from gamerec.artifacts.store import (
    FORMAT_VERSION,
    fingerprint,
    has_manifest,
    read_manifest,
    stage_lock,
    staged_dir,
    write_manifest,
)
from gamerec.artifacts.workspace import Workspace
from gamerec.atomic import atomic_path, atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "Workspace",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "fingerprint",
    "has_manifest",
    "read_manifest",
    "stage_lock",
    "staged_dir",
    "write_manifest",
]
