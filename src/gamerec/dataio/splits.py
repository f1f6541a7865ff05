"""The P-SG split as matrices: training histories, and fold-in/targets of evaluated users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gamerec.dataio.matrix import UserItems

__all__ = ["HeldOutUsers", "split_histories", "train_histories"]


@dataclass(frozen=True)
class HeldOutUsers:
    user_idx: np.ndarray  # (n,) the users, in row order
    histories: UserItems  # their fold-in games (the input)
    targets: UserItems  # their held-out games


def _rows(user_idx: np.ndarray, users: np.ndarray) -> np.ndarray:
    return np.searchsorted(users, user_idx)


def train_histories(
    split: pd.DataFrame, interactions: pd.DataFrame, n_items: int
) -> tuple[np.ndarray, UserItems]:
    """(user_idx of the training users, their whole histories with playtime)."""
    mask = (split["group"] == "train").to_numpy()
    user_idx = split["user_idx"].to_numpy()[mask]
    users = np.unique(user_idx)
    matrix = UserItems.from_pairs(
        _rows(user_idx, users),
        split["item_idx"].to_numpy()[mask],
        interactions["playtime_min"].to_numpy()[mask],
        len(users),
        n_items,
    )
    return users, matrix


def split_histories(
    split: pd.DataFrame, interactions: pd.DataFrame, n_items: int, group: str
) -> HeldOutUsers:
    """Fold-in histories and targets of the ``valid`` or ``test`` users (P-SG)."""
    in_group = (split["group"] == group).to_numpy()
    user_idx = split["user_idx"].to_numpy()
    users = np.unique(user_idx[in_group])
    role = split["role"].to_numpy()
    playtime = interactions["playtime_min"].to_numpy()
    items = split["item_idx"].to_numpy()

    def matrix(mask: np.ndarray) -> UserItems:
        return UserItems.from_pairs(
            _rows(user_idx[mask], users), items[mask], playtime[mask], len(users), n_items
        )

    return HeldOutUsers(
        users, matrix(in_group & (role == "foldin")), matrix(in_group & (role == "target"))
    )
