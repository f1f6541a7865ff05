"""The workspace's folders: model files checked against their manifest, stage locks, stale
staging, permissions that follow the umask, and one search contract for every index."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamerec.artifacts import Workspace, atomic_write_json, stage_lock, staged_dir
from gamerec.artifacts.model import (
    COPLAY_FILE,
    EMBEDDINGS_FILE,
    USER_TOWER_FILE,
    read_model,
    write_model,
)
from gamerec.errors import ArtifactError, InvalidRequestError
from gamerec.index import ExactIndex, FaissIndex, build_index, clustered_embeddings

PROCESSED_MANIFEST = {"files": {"items.parquet": "aaaa", "split.parquet": "bbbb"}}


def small_model(directory: Path, n_items: int = 12, with_coplay: bool = True) -> Path:
    rng = np.random.default_rng(0)
    embeddings = clustered_embeddings(n_items, 4, seed=1)
    tower = {
        "history": rng.standard_normal((n_items, 3)).astype(np.float32),
        "output_bias": np.zeros(4, np.float32),
    }
    coplay = rng.random((n_items, n_items)).astype(np.float32) if with_coplay else None
    directory.mkdir(parents=True, exist_ok=True)
    write_model(
        directory,
        write_checkpoint=lambda path: path.write_bytes(b"checkpoint"),
        item_embeddings=embeddings,
        user_tower=tower,
        coplay=coplay,
        processed_manifest=PROCESSED_MANIFEST,
        settings={},
        counts={"items": n_items},
        extra={},
    )
    return directory


def test_a_written_model_reads_back(tmp_path: Path) -> None:
    model = read_model(small_model(tmp_path / "model"))
    assert model.item_embeddings.shape == (12, 4)
    assert sorted(model.user_tower) == ["history", "output_bias"]
    assert model.coplay is not None and model.coplay.shape == (12, 12)
    assert model.manifest["inputs"] == {
        "processed/items.parquet": "aaaa",
        "processed/split.parquet": "bbbb",
    }


def test_a_truncated_user_tower_is_an_artifact_error(tmp_path: Path) -> None:
    directory = small_model(tmp_path / "model")
    path = directory / USER_TOWER_FILE
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match=r"user_tower.npz is unreadable.*run `gamerec train`"):
        read_model(directory)


def test_a_wrong_shape_coplay_is_refused_at_load(tmp_path: Path) -> None:
    directory = small_model(tmp_path / "model")
    np.save(directory / COPLAY_FILE, np.zeros((12, 5), np.float32))
    with pytest.raises(ArtifactError, match=r"coplay.npy holds a float32 array of shape \(12, 5\)"):
        read_model(directory)
    # the same for the embeddings, in another type
    np.save(directory / COPLAY_FILE, np.zeros((12, 12), np.float32))
    np.save(directory / EMBEDDINGS_FILE, np.zeros((12, 4), np.float64))
    with pytest.raises(ArtifactError, match=r"item_embeddings.npy holds a float64"):
        read_model(directory)


def test_coplay_read_into_memory_survives_the_file_being_truncated(tmp_path: Path) -> None:
    directory = small_model(tmp_path / "model")
    mapped = read_model(directory, coplay="map").coplay
    copied = read_model(directory, coplay="copy").coplay
    assert mapped is not None and copied is not None
    assert isinstance(mapped.base, np.memmap)
    assert copied.base is None or not isinstance(copied.base, np.memmap)
    expected = copied.sum()
    del mapped  # a mapping of a truncated file would die of SIGBUS on the next read
    (directory / COPLAY_FILE).write_bytes(b"")
    assert copied.sum() == expected
    assert read_model(directory, coplay="skip").coplay is None


def test_a_second_writer_of_a_stage_is_refused(tmp_path: Path) -> None:
    final = tmp_path / "model"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from gamerec.artifacts import stage_lock
                with stage_lock({str(final)!r}):
                    print("held", flush=True)
                    time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(ArtifactError, match=r"another gamerec is writing .*model"),
            staged_dir(final),
        ):
            pass
        assert not final.exists()
    finally:
        holder.kill()
        holder.wait()
    # once the other process is gone, the lock is free again
    with staged_dir(final) as staging:
        (staging / "a").write_text("x")
    assert (final / "a").read_text() == "x"


def test_the_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    final = tmp_path / "model"
    with stage_lock(final), staged_dir(final) as staging:
        (staging / "a").write_text("x")
    assert (final / "a").is_file()


def test_staging_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    final = tmp_path / "processed"
    stale = tmp_path / ".processed.k1ll3d.staging"
    stale.mkdir()
    (stale / "items.parquet").write_text("half")
    with staged_dir(final) as staging:
        (staging / "items.parquet").write_text("whole")
    assert not stale.exists()
    assert (final / "items.parquet").read_text() == "whole"


def test_stage_folders_and_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with staged_dir(tmp_path / "index") as staging:
            atomic_write_json(staging / "manifest.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "index" / "manifest.json").stat().st_mode) == 0o644


def test_workspace_names_every_folder_once() -> None:
    workspace = Workspace.at("/data")
    assert workspace.processed == Path("/data/processed")
    assert workspace.owned == Path("/data/raw/steam/owned")
    assert workspace.quota_file == Path("/data/raw/steam/_quota.json")
    assert workspace.eval_report == Path("/data/eval/report.json")


# --- one search contract for every index ---------------------------------------------------


def brute_force(
    items: np.ndarray, queries: np.ndarray, k: int, exclude: list, allowed: np.ndarray | None
) -> list[list[int]]:
    out = []
    for query, excluded in zip(queries, exclude, strict=True):
        scores = items @ query
        order = [
            int(i)
            for i in np.argsort(-scores, kind="stable")
            if int(i) not in set(excluded) and (allowed is None or allowed[i])
        ]
        out.append(order[:k])
    return out


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivf"])
def test_every_index_excludes_and_filters_alike(kind: str) -> None:
    items = clustered_embeddings(2000, 16, seed=3)
    index = ExactIndex(items) if kind == "exact" else FaissIndex(build_index(items, kind)[0])
    rng = np.random.default_rng(5)
    queries = items[rng.integers(0, 2000, 6)]
    exclude = [rng.integers(0, 2000, size=n).tolist() for n in (0, 3, 40, 1, 0, 200)]
    allowed = rng.random(2000) < 0.05  # a selective filter, like a rare genre
    scores, ids = index.search(queries, 10, exclude, allowed)
    expected = brute_force(items, queries, 10, exclude, allowed)
    for row, want in enumerate(expected):
        got = [int(i) for i in ids[row] if i >= 0]
        overlap = len(set(got) & set(want)) / len(want)
        assert overlap >= (1.0 if kind in ("exact", "flat") else 0.9), (row, got, want)
        assert all(allowed[i] and i not in exclude[row] for i in got)
        assert np.all(np.diff(scores[row][: len(got)]) <= 1e-6)  # best first


def test_a_row_with_too_few_eligible_items_is_padded() -> None:
    items = clustered_embeddings(50, 8, seed=2)
    allowed = np.zeros(50, dtype=bool)
    allowed[[3, 7, 9]] = True
    for index in (ExactIndex(items), FaissIndex(build_index(items, "hnsw")[0])):
        scores, ids = index.search(items[:2], 5, [[7], []], allowed)
        assert sorted(ids[0][:2].tolist()) == [3, 9] and ids[0][2:].tolist() == [-1, -1, -1]
        assert sorted(ids[1][:3].tolist()) == [3, 7, 9] and ids[1][3:].tolist() == [-1, -1]
        assert np.isneginf(scores[0][2:]).all()


def test_a_filter_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="one flag per indexed item"):
        ExactIndex(clustered_embeddings(10, 4)).search(np.ones((1, 4)), 3, None, np.ones(9, bool))


@settings(deadline=None)  # the first example pays for importing pyarrow
@given(
    st.lists(st.one_of(st.booleans(), st.none()), max_size=40),
    st.integers(min_value=0, max_value=10),
)
def test_bool_columns_read_without_pandas_match_pyarrow(values: list, offset: int) -> None:
    import pyarrow as pa

    from gamerec.artifacts.processed import column_to_numpy

    array = pa.array(values, type=pa.bool_()).slice(min(offset, len(values)))
    expected = [False if v is None else v for v in array.to_pylist()]
    assert column_to_numpy(pa.chunked_array([array]), fill=False).tolist() == expected


# a stage swapped in by a child that is killed (SIGKILL, no cleanup) just before one of its
# renames: os.replace, or the one-step exchange where the system has it
_KILLED_SWAP = """
import os, signal, sys
from gamerec.artifacts import store

final, kill_at, exchange = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
renames = 0


def killed_before(rename):
    def counted(*arguments, **options):
        global renames
        renames += 1
        if renames == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return rename(*arguments, **options)

    return counted


os.replace = killed_before(os.replace)
if hasattr(store, "exchange_paths"):
    store.exchange_paths = (
        killed_before(store.exchange_paths) if exchange else (lambda first, second: False)
    )
with store.staged_dir(final) as staging:
    (staging / "items.parquet").write_text("new")
    store.write_manifest(staging, "processed")
print(renames)
"""


def _stage_version(final: Path) -> str:
    from gamerec.artifacts.store import read_manifest

    read_manifest(final, "processed", verify=True)  # readable, whole, as its manifest says
    return (final / "items.parquet").read_text()


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_swap_killed_at_any_rename_leaves_a_readable_stage(
    tmp_path: Path, exchange: bool
) -> None:
    from gamerec.artifacts.store import write_manifest

    final = tmp_path / "processed"

    def swap(kill_at: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _KILLED_SWAP, str(final), str(kill_at), str(int(exchange))],
            capture_output=True,
            text=True,
            timeout=60,
        )

    with staged_dir(final) as staging:
        (staging / "items.parquet").write_text("old")
        write_manifest(staging, "processed")
    finished = swap(0)  # never killed: how many renames a swap makes
    assert finished.returncode == 0, finished.stderr
    renames = int(finished.stdout)
    assert renames >= 2
    for kill_at in range(1, renames + 1):
        with staged_dir(final) as staging:  # back to the old version
            (staging / "items.parquet").write_text("old")
            write_manifest(staging, "processed")
        killed = swap(kill_at)
        assert killed.returncode == -9, killed.stderr
        # a reader finds a whole stage, the old one or the new one, never none
        assert _stage_version(final) in ("old", "new"), f"killed at rename {kill_at}"
        # and the next run swaps its output in
        assert swap(0).returncode == 0
        assert _stage_version(final) == "new"
        assert not final.with_name("processed.old").exists()
        assert not list(tmp_path.glob(".processed.*.staging"))


@given(st.lists(st.text(max_size=40), max_size=30))
def test_a_text_column_gives_back_every_string_it_was_given(values: list[str]) -> None:
    from gamerec.runtime.catalog import TextColumn

    column = TextColumn.encode(values)
    assert len(column) == len(values)
    assert list(column) == values  # NULs, surrogate-free Unicode, empty strings alike
    assert [column[i] for i in reversed(range(len(values)))] == values[::-1]
    assert column[:] == values
    if values:
        assert column[-1] == values[-1]
    again = TextColumn(column.offsets.copy(), column.data.copy())  # as read back from a file
    assert list(again) == values


def test_a_list_column_reads_rows_by_offsets_from_either_end() -> None:
    from gamerec.runtime.catalog import ListColumn

    column = ListColumn(np.array([0, 2, 2, 3]), np.array([1, 0, 1]), ["Action", "RPG"])
    assert len(column) == 3
    assert [column[0], column[1], column[2]] == [["RPG", "Action"], [], ["RPG"]]
    assert column[-1] == ["RPG"] and column[-3] == ["RPG", "Action"]
    assert column[1:] == [[], ["RPG"]]
    with pytest.raises(IndexError):
        column[3]
    assert column.mask("RPG", 3).tolist() == [True, False, True]
