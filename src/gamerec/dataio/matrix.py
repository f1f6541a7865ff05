"""A minimal compressed-sparse-row user x item matrix (numpy only).

Evaluation, baselines and the two-tower model all read play histories as :class:`UserItems`:
row ``u`` holds the games of the u-th user of the batch (``indices``) and their playtime in
minutes (``values``; 0 = owned, never played).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UserItems"]


@dataclass(frozen=True)
class UserItems:
    indptr: np.ndarray  # (n_rows + 1,) int64
    indices: np.ndarray  # (nnz,) int32 item_idx, sorted within each row
    values: np.ndarray  # (nnz,) float32 playtime minutes
    n_items: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, r: int) -> np.ndarray:
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    @classmethod
    def from_pairs(
        cls,
        rows: np.ndarray,
        items: np.ndarray,
        values: np.ndarray | None,
        n_rows: int,
        n_items: int,
    ) -> UserItems:
        """Build from (row, item[, value]) triples; duplicates are kept as given."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int32)
        vals = (
            np.zeros(len(items), np.float32)
            if values is None
            else np.asarray(values, dtype=np.float32)
        )
        order = np.lexsort((items, rows))
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, items[order], vals[order], n_items)

    def take_rows(self, rows: np.ndarray) -> UserItems:
        """A new matrix made of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        gather = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return UserItems(indptr, self.indices[gather], self.values[gather], self.n_items)

    def row_sums(self, per_entry: np.ndarray) -> np.ndarray:
        """Sum ``per_entry`` (nnz, ...) within each row -> (n_rows, ...); empty rows give 0."""
        out = np.zeros((self.n_rows, *per_entry.shape[1:]), dtype=per_entry.dtype)
        filled = np.flatnonzero(self.row_lengths() > 0)
        if len(filled):
            # reduceat over the starts of non-empty rows: rows are contiguous in CSR order
            out[filled] = np.add.reduceat(per_entry, self.indptr[filled], axis=0)
        return out

    def to_dense(self, dtype: type = np.float32, binary: bool = True) -> np.ndarray:
        """(n_rows, n_items); 1 for every owned game if ``binary`` else the playtime."""
        dense: np.ndarray = np.zeros((self.n_rows, self.n_items), dtype=dtype)
        row_of = np.repeat(np.arange(self.n_rows), self.row_lengths())
        dense[row_of, self.indices] = 1 if binary else self.values
        return dense
