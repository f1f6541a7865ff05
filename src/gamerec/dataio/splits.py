"""The split as matrices: training histories, and fold-in/targets of evaluated users.

One builder (:func:`split_matrices`) serves training (early stopping, the re-ranker) and every
evaluation protocol, from the split ``gamerec preprocess`` wrote (one row per interaction:
``group`` ``train``/``valid``/``test``, ``role`` ``train``/``foldin``/``target``).

- ``sg`` (P-SG): an evaluated user's ``foldin`` rows are the input, the ``target`` rows what
  must be found; users without both are skipped.
- ``loo`` (P-LOO): an evaluated user's most-played game (highest playtime, ties to the lowest
  ``item_idx``) is the single target, everything else they own the input; users who never
  played anything are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gamerec.dataio.matrix import UserItems

__all__ = [
    "HOLDOUTS",
    "HeldOutUsers",
    "SplitMatrices",
    "split_histories",
    "split_matrices",
    "train_histories",
    "training_matrices",
]

#: how an evaluated user's games are split into input and targets
HOLDOUTS = ("sg", "loo")


@dataclass(frozen=True)
class HeldOutUsers:
    """The evaluated users of one group: their input histories and their targets."""

    user_idx: np.ndarray  # (n,) global user_idx, in row order
    histories: UserItems  # input games with playtime
    targets: UserItems  # held-out games with playtime
    skipped: int = 0  # users of the group left out (no input or no target)
    #: target games left out because they may not be recommended (DLC, title-only rows, ...)
    dropped_targets: int = 0

    @property
    def n_users(self) -> int:
        return len(self.user_idx)


@dataclass(frozen=True)
class SplitMatrices:
    """Training histories and the validation and test users of one split."""

    n_items: int
    train_users: np.ndarray  # (n_train,) global user_idx of the training rows
    train: UserItems  # the training users' whole histories with playtime
    valid: HeldOutUsers
    test: HeldOutUsers


def _matrix(
    user_idx: np.ndarray, items: np.ndarray, values: np.ndarray, users: np.ndarray, n_items: int
) -> UserItems:
    rows = np.searchsorted(users, user_idx)
    return UserItems.from_pairs(rows, items, values, len(users), n_items)


def _held_out(
    holdout: str,
    user_idx: np.ndarray,
    items: np.ndarray,
    playtime: np.ndarray,
    role: np.ndarray,
    n_items: int,
    recommendable: np.ndarray | None,
) -> HeldOutUsers:
    """Histories and targets of one group's rows (all arrays already restricted to the group).

    A target that may not be recommended is dropped (it stays out of the input, as the other
    targets do): no method could ever rank it, and ``recommend`` never would."""
    users = np.unique(user_idx)
    usable = np.ones(len(items), dtype=bool) if recommendable is None else recommendable[items]
    if len(users) == 0:
        is_target = np.zeros(0, dtype=bool)
    elif holdout == "sg":
        is_target = role == "target"
    else:
        # most-played game per user: sort by user, playtime descending, item ascending
        order = np.lexsort((items, -playtime, user_idx))
        first = order[np.r_[True, user_idx[order][1:] != user_idx[order][:-1]]]
        is_target = np.zeros(len(user_idx), dtype=bool)
        is_target[first[playtime[first] > 0]] = True
    target = is_target & usable
    kept = users[np.isin(users, user_idx[target]) & np.isin(users, user_idx[~is_target])]
    in_kept = np.isin(user_idx, kept)
    history = in_kept & ~is_target
    target &= in_kept
    return HeldOutUsers(
        user_idx=kept.astype(np.int64),
        histories=_matrix(user_idx[history], items[history], playtime[history], kept, n_items),
        targets=_matrix(user_idx[target], items[target], playtime[target], kept, n_items),
        skipped=len(users) - len(kept),
        dropped_targets=int((is_target & ~usable).sum()),
    )


def split_matrices(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    playtime: np.ndarray,
    group: np.ndarray,
    role: np.ndarray,
    n_items: int,
    holdout: str = "sg",
    recommendable: np.ndarray | None = None,
) -> SplitMatrices:
    """The split's matrices from its columns (one entry per interaction).

    ``group`` holds ``train``/``valid``/``test`` and ``role`` ``train``/``foldin``/``target``
    (strings or a categorical); ``playtime`` is ``playtime_min`` of the same interaction;
    ``holdout`` one of :data:`HOLDOUTS`. ``recommendable`` ((n_items,) bool) keeps only the
    targets that may be recommended.
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    playtime = np.asarray(playtime, dtype=np.float32)
    group = np.asarray(group, dtype=object)
    role = np.asarray(role, dtype=object)
    in_train = group == "train"
    train_users = np.unique(user_idx[in_train])
    train = _matrix(
        user_idx[in_train], item_idx[in_train], playtime[in_train], train_users, n_items
    )

    def users_of(name: str) -> HeldOutUsers:
        mask = group == name
        return _held_out(
            holdout,
            user_idx[mask],
            item_idx[mask],
            playtime[mask],
            role[mask],
            n_items,
            recommendable,
        )

    return SplitMatrices(n_items, train_users, train, users_of("valid"), users_of("test"))


def _from_frames(
    split: pd.DataFrame,
    interactions: pd.DataFrame,
    n_items: int,
    holdout: str = "sg",
    recommendable: np.ndarray | None = None,
) -> SplitMatrices:
    return split_matrices(
        split["user_idx"].to_numpy(),
        split["item_idx"].to_numpy(),
        interactions["playtime_min"].to_numpy(),
        split["group"].astype(str).to_numpy(),
        split["role"].astype(str).to_numpy(),
        n_items,
        holdout,
        recommendable,
    )


def train_histories(
    split: pd.DataFrame, interactions: pd.DataFrame, n_items: int
) -> tuple[np.ndarray, UserItems]:
    """(user_idx of the training users, their whole histories with playtime)."""
    matrices = _from_frames(split, interactions, n_items)
    return matrices.train_users, matrices.train


def split_histories(
    split: pd.DataFrame,
    interactions: pd.DataFrame,
    n_items: int,
    group: str,
    recommendable: np.ndarray | None = None,
) -> HeldOutUsers:
    """Fold-in histories and targets of the ``valid`` or ``test`` users (P-SG); with
    ``recommendable``, only the targets that may be recommended."""
    matrices = _from_frames(split, interactions, n_items, "sg", recommendable)
    return matrices.valid if group == "valid" else matrices.test


def training_matrices(
    split: pd.DataFrame,
    interactions: pd.DataFrame,
    n_items: int,
    recommendable: np.ndarray | None = None,
) -> SplitMatrices:
    """What training reads, built once: the training users' histories and the validation
    users' fold-ins and targets (P-SG; with ``recommendable``, only the targets that may be
    recommended, as the evaluation ranks)."""
    return _from_frames(split, interactions, n_items, "sg", recommendable)
