"""The one split builder: known users, groups and roles give exactly known matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gamerec.dataio.matrix import UserItems
from gamerec.dataio.splits import split_histories, split_matrices, train_histories

# (user, item, playtime, group, role)
ROWS = [
    (0, 0, 10.0, "train", "train"),
    (0, 2, 0.0, "train", "train"),
    (3, 1, 5.0, "train", "train"),
    (1, 0, 30.0, "valid", "foldin"),
    (1, 3, 60.0, "valid", "target"),
    (1, 4, 0.0, "valid", "foldin"),
    (2, 2, 0.0, "valid", "foldin"),  # no target: skipped under sg; never played: skipped by loo
    (4, 1, 7.0, "test", "target"),
    (4, 4, 90.0, "test", "foldin"),
    (5, 3, 20.0, "test", "foldin"),
    (5, 0, 20.0, "test", "target"),  # a tie of most-played: the lower item_idx is the target
]
N_ITEMS = 5


def columns() -> tuple[np.ndarray, ...]:
    user, item, playtime, group, role = (np.array(c) for c in zip(*ROWS, strict=True))
    return user, item, playtime, group, role


def as_lists(matrix: UserItems) -> list[list[tuple[int, float]]]:
    return [
        [
            (int(i), float(v))
            for i, v in zip(
                matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]],
                matrix.values[matrix.indptr[r] : matrix.indptr[r + 1]],
                strict=True,
            )
        ]
        for r in range(matrix.n_rows)
    ]


def test_sg_matrices_are_exact() -> None:
    split = split_matrices(*columns(), n_items=N_ITEMS, holdout="sg")
    assert split.train_users.tolist() == [0, 3]
    assert as_lists(split.train) == [[(0, 10.0), (2, 0.0)], [(1, 5.0)]]
    assert split.valid.user_idx.tolist() == [1] and split.valid.skipped == 1
    assert as_lists(split.valid.histories) == [[(0, 30.0), (4, 0.0)]]
    assert as_lists(split.valid.targets) == [[(3, 60.0)]]
    assert split.test.user_idx.tolist() == [4, 5] and split.test.skipped == 0
    assert as_lists(split.test.histories) == [[(4, 90.0)], [(3, 20.0)]]
    assert as_lists(split.test.targets) == [[(1, 7.0)], [(0, 20.0)]]
    assert {m.n_items for m in (split.train, split.valid.histories, split.test.targets)} == {5}


def test_loo_holds_out_the_most_played_game() -> None:
    split = split_matrices(*columns(), n_items=N_ITEMS, holdout="loo")
    assert as_lists(split.train) == [[(0, 10.0), (2, 0.0)], [(1, 5.0)]]
    # user 1's most played is game 3 (60 min); user 2 never played: skipped
    assert split.valid.user_idx.tolist() == [1] and split.valid.skipped == 1
    assert as_lists(split.valid.histories) == [[(0, 30.0), (4, 0.0)]]
    assert as_lists(split.valid.targets) == [[(3, 60.0)]]
    # fold-in/target roles do not matter: user 4's most played is game 4, user 5's tie -> game 0
    assert as_lists(split.test.histories) == [[(1, 7.0)], [(3, 20.0)]]
    assert as_lists(split.test.targets) == [[(4, 90.0)], [(0, 20.0)]]


def test_an_empty_group_gives_empty_matrices() -> None:
    user, item, playtime, group, role = columns()
    split = split_matrices(user, item, playtime, np.where(group == "test", "train", group), role, 5)
    assert split.test.n_users == 0 and split.test.histories.n_rows == 0
    assert split.train_users.tolist() == [0, 3, 4, 5]


def test_the_dataframe_readers_are_the_same_builder() -> None:
    user, item, playtime, group, role = columns()
    frame = pd.DataFrame(
        {
            "user_idx": user,
            "item_idx": item,
            "group": pd.Categorical(group),
            "role": pd.Categorical(role),
        }
    )
    interactions = pd.DataFrame({"user_idx": user, "item_idx": item, "playtime_min": playtime})
    built = split_matrices(user, item, playtime, group, role, N_ITEMS)
    users, train = train_histories(frame, interactions, N_ITEMS)
    assert users.tolist() == [0, 3] and as_lists(train) == as_lists(built.train)
    test = split_histories(frame, interactions, N_ITEMS, "test")
    assert as_lists(test.histories) == as_lists(built.test.histories)
    assert as_lists(test.targets) == as_lists(built.test.targets)


def test_an_unknown_holdout_is_refused() -> None:
    with pytest.raises(ValueError, match="holdout"):
        split_matrices(*columns(), n_items=N_ITEMS, holdout="cold")
