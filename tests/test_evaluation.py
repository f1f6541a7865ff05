"""The protocols, ``pipeline.evaluate`` and ``gamerec eval``: on a hand-made split and the
bundled steam-200k data."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import settings_for
from gamerec import pipeline
from gamerec.artifacts import read_manifest, write_manifest
from gamerec.cli import app
from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError, ConfigError, DataError, InvalidRequestError
from gamerec.evaluation.protocol import build_protocol, load_protocol

# --- the protocols on a hand-made split ------------------------------------------------------

#: (user, item, playtime, group, role)
TINY = [
    (0, 0, 10.0, "train", "train"),
    (0, 1, 20.0, "train", "train"),
    (0, 2, 0.0, "train", "train"),
    (1, 1, 5.0, "train", "train"),
    (1, 2, 5.0, "train", "train"),
    (1, 3, 5.0, "train", "train"),
    (2, 0, 10.0, "valid", "foldin"),
    (2, 4, 5.0, "valid", "target"),
    (3, 1, 100.0, "test", "foldin"),
    (3, 2, 300.0, "test", "foldin"),
    (3, 5, 300.0, "test", "target"),  # ties item 2 for most played
    (4, 0, 0.0, "test", "foldin"),  # user 4 never played anything
    (4, 3, 0.0, "test", "target"),
    (5, 2, 50.0, "test", "foldin"),  # user 5 has no target row
    (5, 3, 20.0, "test", "foldin"),
]


def tiny(protocol: str):
    users, items, playtime, group, role = (np.array(column) for column in zip(*TINY, strict=True))
    return build_protocol(users, items, playtime, group, role, n_items=6, protocol=protocol)


def rows(matrix: UserItems) -> list[list[int]]:
    return [matrix.row(r).tolist() for r in range(matrix.n_rows)]


def test_sg_histories_are_fold_in_and_targets_are_held_out() -> None:
    data = tiny("sg")
    assert data.train_users.tolist() == [0, 1]
    assert rows(data.train) == [[0, 1, 2], [1, 2, 3]]
    assert data.valid.user_idx.tolist() == [2]
    assert (rows(data.valid.histories), rows(data.valid.targets)) == ([[0]], [[4]])
    # user 5 has no target: skipped and counted
    assert data.test.user_idx.tolist() == [3, 4]
    assert data.test.skipped == 1
    assert rows(data.test.histories) == [[1, 2], [0]]
    assert rows(data.test.targets) == [[5], [3]]
    # playtime travels with the history, for models that read it
    assert data.test.histories.values[:2].tolist() == [100.0, 300.0]


def test_loo_target_is_the_most_played_game() -> None:
    data = tiny("loo")
    # user 3: items 2 and 5 tie at 300 minutes -> the lower item_idx (2); history = the rest
    # user 4: never played -> skipped; user 5: 50 > 20 minutes -> item 2
    assert data.test.user_idx.tolist() == [3, 5]
    assert data.test.skipped == 1
    assert rows(data.test.targets) == [[2], [2]]
    assert rows(data.test.histories) == [[1, 5], [3]]
    assert rows(data.valid.targets) == [[0]] and rows(data.valid.histories) == [[4]]
    # training is the same in both protocols: the training users' whole histories
    assert rows(data.train) == rows(tiny("sg").train)


def test_popularity_counts_training_users_only() -> None:
    assert tiny("sg").popularity().tolist() == [1, 2, 2, 1, 0, 0]


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="sg, loo"):
        tiny("kfold")


def test_compare_runs_each_baseline_once_and_checks_its_settings() -> None:
    from gamerec.evaluation.report import EvalConfig, compare

    data = tiny("sg")
    report = compare(
        data, ["popularity", "itemknn", "popularity"], [1, 2], config=EvalConfig(bootstrap=10)
    )
    assert list(report["methods"]) == ["popularity", "itemknn"]
    assert report["users_evaluated"] == 2 and report["users_skipped"] == 1
    with pytest.raises(ConfigError, match="'svd'"):
        compare(data, ["svd"], [1])
    with pytest.raises(ConfigError, match="ease_lambdas"):
        compare(data, ["ease"], [1], config=EvalConfig(ease_lambdas=(0.0, 10.0)))


# --- the protocols on the bundled data -------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_split(bundled_workspace: Path) -> pd.DataFrame:
    processed = bundled_workspace / "processed"
    split = pd.read_parquet(processed / "split.parquet")
    split["playtime_min"] = pd.read_parquet(processed / "interactions.parquet")["playtime_min"]
    return split


def recommendable_items(bundled_workspace: Path) -> np.ndarray:
    items = pd.read_parquet(bundled_workspace / "processed" / "items.parquet")
    return items["recommendable"].to_numpy(bool)


def test_bundled_sg_matches_the_split(bundled_workspace: Path, bundled_split) -> None:
    """P-SG ranks what may be recommended: the split's targets that are DLC, title-only rows
    and other non-games are dropped (counted), and a user left with none is skipped."""
    data = load_protocol(bundled_workspace / "processed", "sg")
    recommendable = recommendable_items(bundled_workspace)
    assert data.n_items == 3956  # the games with players
    assert data.allowed.sum() == recommendable[:3956].sum() < 3956
    test_rows = bundled_split[bundled_split["group"] == "test"]
    targets = test_rows[test_rows["role"] == "target"]
    usable = recommendable[targets["item_idx"].to_numpy()]
    assert data.test.dropped_targets == int((~usable).sum()) > 0
    with_target = targets[usable]["user_idx"].unique()
    groups = bundled_split.groupby("group", observed=True)["user_idx"].nunique()
    assert data.train.n_rows == groups["train"]
    assert data.test.n_users == len(with_target)
    assert data.test.n_users + data.test.skipped == groups["test"]
    assert data.test.targets.nnz == int(usable.sum())
    kept = test_rows[test_rows["user_idx"].isin(with_target)]
    assert data.test.histories.nnz == (kept["role"] == "foldin").sum()
    assert data.allowed[data.test.targets.indices].all()
    # no target is in its own history, and no test user is a training user
    for r in range(0, data.test.n_users, 7):
        assert not set(data.test.histories.row(r)) & set(data.test.targets.row(r))
    assert not set(data.test.user_idx) & set(data.train_users)


def test_bundled_loo_holds_out_each_users_most_played_game(
    bundled_workspace: Path, bundled_split
) -> None:
    data = load_protocol(bundled_workspace / "processed", "loo")
    recommendable = recommendable_items(bundled_workspace)
    test_rows = bundled_split[bundled_split["group"] == "test"]
    by_user = test_rows.groupby("user_idx")
    assert data.test.n_users + data.test.skipped == by_user.ngroups
    firsts = test_rows.sort_values(
        ["user_idx", "playtime_min", "item_idx"], ascending=[True, False, True]
    )
    firsts = firsts.groupby("user_idx").head(1).set_index("user_idx")
    never_played = firsts["playtime_min"] == 0
    not_a_game = ~recommendable[firsts["item_idx"].to_numpy()] & ~never_played
    assert data.test.skipped == never_played.sum() + not_a_game.sum()
    assert never_played.sum() > 0 and data.test.dropped_targets == not_a_game.sum()
    assert not set(data.test.user_idx) & set(firsts.index[never_played | not_a_game])
    assert (data.test.targets.row_lengths() == 1).all()
    for r in range(0, data.test.n_users, 11):
        user = test_rows[test_rows["user_idx"] == data.test.user_idx[r]]
        best = user.sort_values(["playtime_min", "item_idx"], ascending=[False, True]).iloc[0]
        assert data.test.targets.row(r).tolist() == [best["item_idx"]]
        owned = [*data.test.histories.row(r).tolist(), best["item_idx"]]
        assert sorted(owned) == sorted(user["item_idx"].tolist())


# --- pipeline.evaluate -----------------------------------------------------------------------


@pytest.fixture
def workspace(bundled_workspace: Path, workdir: Path) -> Path:
    """A writable copy of the bundled workspace's processed/."""
    data_dir = workdir / "gamerec-data"
    shutil.copytree(bundled_workspace / "processed", data_dir / "processed")
    return data_dir


def test_evaluate_writes_a_reproducible_report(workspace: Path) -> None:
    settings = settings_for(workspace, **{"eval.baselines": ["popularity"], "eval.bootstrap": 200})
    messages: list[str] = []
    report = pipeline.evaluate(settings, ks=[5, 20], progress=lambda s, m, f: messages.append(m))
    written = json.loads((workspace / "eval" / "report.json").read_text())
    assert report.output == str(workspace / "eval" / "report.json")
    assert written == {k: v for k, v in report.to_dict().items() if k != "output"}
    assert (written["protocol"], written["ks"], written["split_seed"]) == ("sg", [5, 20], 0)
    assert written["users_evaluated"] == 695 and written["users_skipped"] == 55
    assert written["targets_dropped"] == 1058 and written["ranked_games"] == 2824
    assert written["bootstrap"] == {"resamples": 200, "seed": 0, "confidence": 0.95}
    popularity = written["methods"]["popularity"]
    assert popularity["fit_seconds"] >= 0 and popularity["users"] == 695
    for name in ["recall", "ndcg", "precision", "map", "hit_rate", "pop_pct"]:
        for k in (5, 20):
            entry = popularity["metrics"][f"{name}@{k}"]
            assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
    assert popularity["metrics"]["coverage@20"]["ci"] is None
    assert any(m.startswith("popularity: recall@20") for m in messages)
    manifest = read_manifest(workspace / "eval", "eval", verify=True)
    assert manifest["settings"]["k"] == [5, 20]
    again = pipeline.evaluate(settings, ks=[5, 20])
    assert again.methods["popularity"]["metrics"] == popularity["metrics"]


def test_evaluate_refuses_a_split_without_test_users(workspace: Path) -> None:
    processed = workspace / "processed"
    split = pd.read_parquet(processed / "split.parquet")
    group = split["group"].astype(str)
    split["group"] = group.where(group != "test", "valid")
    split.to_parquet(processed / "split.parquet", index=False)
    manifest = read_manifest(processed, "processed")
    write_manifest(processed, "processed", settings=manifest["settings"], counts=manifest["counts"])
    with pytest.raises(DataError, match="no test users"):
        pipeline.evaluate(settings_for(workspace))


def test_evaluate_refuses_k_beyond_the_catalog(workspace: Path) -> None:
    with pytest.raises(InvalidRequestError, match="larger than the catalog"):
        pipeline.evaluate(settings_for(workspace), ks=[10, 4000])


def test_evaluate_refuses_ease_above_its_limit_before_any_work(workspace: Path) -> None:
    settings = settings_for(workspace, **{"eval.ease_max_items": 1000})
    with pytest.raises(ConfigError, match=r"eval\.ease_max_items = 1,000"):
        pipeline.evaluate(settings)
    assert not (workspace / "eval").exists()


@pytest.fixture
def trained(trained_workspace: Path, workdir: Path) -> Path:
    """A writable copy of the trained workspace (processed/, model/, index/)."""
    data_dir = workdir / "trained"
    shutil.copytree(trained_workspace, data_dir)
    return data_dir


def test_a_trained_model_is_evaluated_beside_the_baselines_without_torch(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P-SG ranks with the numpy engine: evaluating a trained model never needs PyTorch."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    settings = settings_for(trained, **{"eval.baselines": ["popularity"], "eval.bootstrap": 50})
    report = pipeline.evaluate(settings, ks=[20])
    assert list(report.methods) == ["popularity", "two-tower", "two-tower + re-rank"]
    model = report.methods["two-tower"]
    assert (model["kind"], model["fit_seconds"], report.model) == ("model", None, "evaluated")
    assert (
        model["metrics"]["recall@20"]["mean"]
        > report.methods["popularity"]["metrics"]["recall@20"]["mean"]
    )
    assert set(model["versus"]) == {"popularity"}


def test_evaluation_ranks_what_the_recommender_answers(trained: Path) -> None:
    """One engine: the lists P-SG measures for the default model are those the Recommender's
    engine gives the same fold-in histories among the same games (P-SG ranks the games with
    players), and a ``recommend`` answer keeps their order once its new games are set aside."""
    from dataclasses import replace

    from gamerec.artifacts.model import read_model
    from gamerec.evaluation.protocol import model_engines, ranked_items
    from gamerec.runtime.recommender import Recommender

    data = load_protocol(trained / "processed", "sg")
    engine = model_engines(read_model(trained / "model"), data.metadata)[-1]
    assert engine.reranks
    recommender = Recommender.from_dir(trained, new_games_share=0.0)
    test = data.test
    rows = np.arange(0, test.n_users, max(1, test.n_users // 40))
    histories = test.histories.take_rows(rows)
    lists = ranked_items(engine, histories, 20, data.allowed)
    catalog_size = recommender.engine.n_items
    allowed = np.zeros(catalog_size, dtype=bool)
    allowed[: len(data.allowed)] = data.allowed
    same = recommender.engine.rank(replace(histories, n_items=catalog_size), 20, allowed)
    np.testing.assert_array_equal(lists, same.items)
    # through recommend: the answers that are not new games, in the evaluation's order
    appids = recommender.catalog.appids
    anchor = recommender.engine.editions.anchor
    compared = 0
    for row in range(histories.n_rows):
        known = [i for i in histories.row(row) if appids[i] >= 0]
        if len(known) != histories.row_lengths()[row]:
            continue  # a title-only game cannot be given by appid: compare the others
        values = histories.values[histories.indptr[row] : histories.indptr[row + 1]]
        played = {int(appids[i]): float(m) for i, m in zip(known, values, strict=True)}
        answer = recommender.recommend(played=played, k=100)
        # an answer names the edition to buy, the evaluation the edition the model knows
        games = [anchor[a.item_idx] for a in answer if not a.reason.startswith("new to")]
        top = [int(i) for i in lists[row][:5]]
        assert [int(g) for g in games if allowed[g]][:5] == top
        compared += 1
    assert compared >= 10


def test_a_model_from_other_data_is_refused(workspace: Path) -> None:
    model_dir = workspace / "model"
    model_dir.mkdir()
    write_manifest(model_dir, "model", inputs={"processed/items.parquet": "0123456789abcdef"})
    with pytest.raises(ArtifactError, match="run `gamerec train` again"):
        pipeline.evaluate(settings_for(workspace, **{"eval.baselines": ["popularity"]}))


#: (protocol, method) -> (Recall@20 range, NDCG@20 range): sanity bands around the reference
#: numbers measured independently on a smaller test set and the numbers this split gives
REFERENCE_BANDS = {
    # ranking the recommendable games only lifts popularity most (its head held DLC-free
    # multiplayer components no one can be recommended): 0.356 / 0.199 on this split
    ("sg", "popularity"): ((0.25, 0.40), (0.14, 0.22)),  # reference 0.30 / 0.18
    ("sg", "itemknn"): ((0.42, 0.58), (0.34, 0.50)),  # reference 0.46 / 0.38
    ("sg", "ease"): ((0.54, 0.66), (0.47, 0.59)),  # reference 0.61 / 0.53
    ("loo", "popularity"): ((0.47, 0.66), (0.27, 0.40)),  # reference 0.52 / 0.31
    ("loo", "itemknn"): ((0.55, 0.72), (0.38, 0.52)),  # no reference
    ("loo", "ease"): ((0.66, 0.84), (0.45, 0.65)),  # reference 0.69 / 0.48
}


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "lam"), [("sg", 30.0), ("loo", 300.0)])
def test_bundled_numbers_are_in_the_reference_bands(
    workspace: Path, protocol: str, lam: float
) -> None:
    # one lambda (the one the full grid search picks) keeps this test to a single inversion
    settings = settings_for(workspace, **{"eval.ease_lambdas": [lam], "eval.bootstrap": 200})
    report = pipeline.evaluate(settings, protocol=protocol, ks=[20])
    methods = report.methods
    for name in ["popularity", "itemknn", "ease"]:
        (recall_low, recall_high), (ndcg_low, ndcg_high) = REFERENCE_BANDS[(protocol, name)]
        metrics = methods[name]["metrics"]
        assert recall_low <= metrics["recall@20"]["mean"] <= recall_high, name
        assert ndcg_low <= metrics["ndcg@20"]["mean"] <= ndcg_high, name
    ndcg = {name: methods[name]["metrics"]["ndcg@20"]["mean"] for name in methods}
    assert ndcg["ease"] > ndcg["itemknn"] > ndcg["popularity"]
    # popularity recommends the head of the catalog; the personalised methods reach further
    pop = {name: methods[name]["metrics"]["pop_pct@20"]["mean"] for name in methods}
    cov = {name: methods[name]["metrics"]["coverage@20"]["mean"] for name in methods}
    assert pop["popularity"] > max(pop["itemknn"], pop["ease"])
    assert cov["popularity"] < min(cov["itemknn"], cov["ease"])
    assert report.ease_lambda == lam


# --- gamerec eval ----------------------------------------------------------------------------


def test_cli_eval_without_processed_says_to_preprocess(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(workdir / "nothing"), "eval"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    assert "run `gamerec preprocess` first" in result.stderr
    assert "Traceback" not in result.output


def test_cli_eval_without_test_users(workspace: Path) -> None:
    processed = workspace / "processed"
    split = pd.read_parquet(processed / "split.parquet")
    split = split[split["group"] != "test"]
    interactions = pd.read_parquet(processed / "interactions.parquet")
    interactions.loc[split.index].to_parquet(processed / "interactions.parquet", index=False)
    split.to_parquet(processed / "split.parquet", index=False)
    manifest = read_manifest(processed, "processed")
    write_manifest(processed, "processed", settings=manifest["settings"], counts=manifest["counts"])
    result = CliRunner().invoke(app, ["--data-dir", str(workspace), "eval"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "no test users" in result.stderr
    assert "Traceback" not in result.output


def test_cli_eval_with_k_beyond_the_catalog(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(workspace), "eval", "--k", "99999"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "larger than the catalog (3,956 games)" in result.stderr
    assert "Traceback" not in result.output


def test_cli_eval_with_a_stale_processed_dir(workspace: Path) -> None:
    (workspace / "processed" / "split.parquet").write_bytes(b"not parquet")
    result = CliRunner().invoke(app, ["--data-dir", str(workspace), "eval"])
    assert result.exit_code == 1
    assert "gamerec preprocess" in result.stderr
    assert "Traceback" not in result.output


def test_cli_eval_json(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEREC_EVAL__BASELINES", '["popularity"]')
    args = ["--data-dir", str(workspace), "eval", "-p", "loo", "--k", "10", "--k", "20"]
    result = CliRunner().invoke(app, [*args, "--bootstrap", "100", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["protocol"], report["ks"]) == ("loo", [10, 20])
    assert report["users_skipped"] > 0
    assert report["bootstrap"]["resamples"] == 100
    assert "popularity: recall@20" in result.stderr  # progress goes to stderr
    assert Path(report["output"]).is_file()


def test_cli_eval_table(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEREC_EVAL__BASELINES", '["popularity"]')
    result = CliRunner().invoke(app, ["--data-dir", str(workspace), "eval", "--k", "20"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "P-SG" in out and "695 test users" in out
    assert "2,824 games ranked" in out and "1,058 held-out targets that are not games" in out
    for column in ["Recall@20", "NDCG@20", "Coverage@20", "Pop%@20"]:
        assert column in out
    row = next(line for line in out.splitlines() if "popularity" in line)
    assert "0.356 ±" in row  # Recall@20 of popularity on this split, with its CI
    assert "95% bootstrap CI" in out


def test_cli_eval_rejects_an_unknown_protocol(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(workspace), "eval", "-p", "kfold"])
    assert result.exit_code == 2
    assert "kfold" in result.output


def test_paired_differences_see_a_small_steady_lead_that_overlapping_intervals_hide() -> None:
    from gamerec.evaluation.protocol import bootstrap_ci
    from gamerec.evaluation.report import paired_differences

    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 1, 500)  # users differ a lot ...
    method = reference + 0.03 + rng.normal(0, 0.02, 500)  # ... the method is a bit better on each
    own = bootstrap_ci({"a": method, "b": reference}, 1000, 0)
    assert own["a"][0] < own["b"][1]  # the two methods' own intervals overlap
    paired = paired_differences({"ndcg@20": method}, {"ndcg@20": reference}, 1000, 0)
    assert paired["ndcg@20"]["mean"] == pytest.approx(0.03, abs=0.005)
    assert paired["ndcg@20"]["ci"][0] > 0  # but user by user it is clearly ahead
    same = paired_differences({"ndcg@20": reference}, {"ndcg@20": reference}, 200, 0)
    assert same["ndcg@20"] == {"mean": 0.0, "ci": [0.0, 0.0]}


def test_engines_of_one_model_share_a_trained_stage_without_changing_a_list(
    trained: Path,
) -> None:
    """Trying new-game policies ranks a batch's trained games once (``with_policy``): each
    policy's lists are those of a batch ranked afresh, whatever was ranked before."""
    import copy
    from dataclasses import replace

    from gamerec.artifacts.model import NewGamePolicy
    from gamerec.runtime.recommender import Recommender

    data = load_protocol(trained / "processed", "sg")
    base = Recommender.from_dir(trained).engine  # the whole catalog: games nobody plays too
    assert not base.trained.all()
    histories = data.test.histories.take_rows(np.arange(min(60, data.test.n_users)))
    allowed = np.ones(base.n_items, dtype=bool)
    lists = {}
    # offsets, then the weight of closeness, of the history's new games and of a game older
    # than the history's: the new-game candidates and their closeness are found once for the
    # batch and weighed by each policy
    policies = [(1.0, offset, 0.0, 1.0, 0.0) for offset in (-1.0, 0.0, 2.0)]
    policies += [(1.0, 0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 2.0, 2.0, 0.0), (1.0, 0.0, 2.0, 2.0, 0.5)]
    alone = Recommender.from_dir(trained).engine  # ranks each batch afresh
    for policy in policies:
        new_games = NewGamePolicy(*policy)
        engine = base.with_policy(replace(base.policy, new_games=new_games))
        # the stage of the first policy, found again for a batch of the same histories
        shared = engine.rank(histories.take_rows(np.arange(histories.n_rows)), 20, allowed)
        fresh = copy.copy(alone)
        fresh.policy = replace(alone.policy, new_games=new_games)
        fresh = fresh.rank(histories, 20, allowed)
        np.testing.assert_array_equal(shared.items, fresh.items)
        np.testing.assert_allclose(shared.scores, fresh.scores, rtol=1e-6)
        lists[policy] = shared.items
    # the policies differ where it matters
    assert not np.array_equal(lists[policies[0]], lists[policies[2]])
    assert not np.array_equal(lists[policies[1]], lists[policies[3]])
    assert not np.array_equal(lists[policies[4]], lists[policies[5]])
