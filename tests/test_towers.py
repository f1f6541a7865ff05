"""The two-tower model: known answers on checkerboard data, numpy export, determinism, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import (
    N_ITEMS,
    checkerboard,
    checkerboard_items,
    rank_of_target,
    train_checkerboard,
)
from gamerec.dataio.matrix import UserItems
from gamerec.errors import ArtifactError, GamerecError, TrainingError
from gamerec.ranking.user_tower import NumpyUserTower
from gamerec.towers.checkpoint import (
    export_item_embeddings,
    export_user_tower,
    load_checkpoint,
    save_checkpoint,
)
from gamerec.towers.ease import check_ease_size, ease_weights, gram_matrix
from gamerec.towers.features import build_item_features
from gamerec.towers.fit import FitConfig, FitRun, ModelShape, RerankSearch, fit_towers
from gamerec.towers.model import TwoTowerConfig
from gamerec.towers.train import TrainConfig, TrainRun, train_two_tower, user_inputs


@pytest.fixture(scope="module")
def checkerboard_model():
    return train_checkerboard()


def test_withheld_item_ranks_top3_for_nearly_every_user(checkerboard_model):
    result, features = checkerboard_model
    histories, targets = checkerboard(60, offset=5000)  # users never seen in training
    tower = NumpyUserTower(export_user_tower(result.model, features))
    items = export_item_embeddings(result.model, features)
    ranks = rank_of_target(tower.embed(histories) @ items.T, histories, targets)
    assert (ranks < 3).mean() >= 0.95, np.bincount(ranks)


def test_a_history_of_even_games_gets_even_recommendations(checkerboard_model):
    result, features = checkerboard_model
    tower = NumpyUserTower(export_user_tower(result.model, features))
    items = export_item_embeddings(result.model, features)
    history = UserItems.from_pairs(np.zeros(3), np.array([0, 4, 8]), None, 1, N_ITEMS)
    scores = tower.embed(history)[0] @ items.T
    scores[[0, 4, 8]] = -np.inf
    top5 = np.argsort(-scores)[:5]
    assert all(item % 2 == 0 for item in top5), top5


def test_numpy_user_tower_matches_torch(checkerboard_model):
    result, features = checkerboard_model
    histories, _ = checkerboard(50, offset=77)
    with torch.no_grad():
        expected = result.model.user_tower(
            *user_inputs(histories, features.token_matrix, torch.device("cpu"), 0.0)
        ).numpy()
    tower = NumpyUserTower(export_user_tower(result.model, features))
    got = tower.embed(histories)
    assert np.abs(got - expected).max() < 1e-5
    # one history at a time (the request path) gives the same vectors
    one_by_one = np.concatenate(
        [tower.embed(histories.take_rows(np.array([r]))) for r in range(50)]
    )
    assert np.abs(one_by_one - expected).max() < 1e-5


def test_same_seed_same_model_and_metrics():
    first, _ = train_checkerboard(epochs=3)
    second, _ = train_checkerboard(epochs=3)
    assert [r.valid_metric for r in first.history] == [r.valid_metric for r in second.history]
    assert [r.loss for r in first.history] == [r.loss for r in second.history]
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_interrupted_training_resumes_where_it_stopped(tmp_path):
    state = tmp_path / "state.pt"

    def stop_after_second_epoch(report):
        if report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_checkerboard(
            epochs=4, resume_path=state, resume_key="k", on_epoch=stop_after_second_epoch
        )
    assert state.is_file()
    resumed, _ = train_checkerboard(epochs=4, resume_path=state, resume_key="k")
    straight, _ = train_checkerboard(epochs=4)
    assert resumed.resumed_from_epoch == 2
    assert [r.loss for r in resumed.history] == [r.loss for r in straight.history]
    for (name, a), (_, b) in zip(
        resumed.model.state_dict().items(), straight.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_state_for_other_data_is_not_resumed(tmp_path):
    state = tmp_path / "state.pt"
    train_checkerboard(epochs=2, resume_path=state, resume_key="old data")
    fresh, _ = train_checkerboard(epochs=2, resume_path=state, resume_key="new data")
    assert fresh.resumed_from_epoch is None


def test_sampled_softmax_with_logq_also_learns_the_checkerboard():
    result, features = train_checkerboard(max_full_softmax_items=5, sampled_negatives=8)
    assert result.sampled_softmax
    histories, targets = checkerboard(60, offset=5000)
    tower = NumpyUserTower(export_user_tower(result.model, features))
    items = export_item_embeddings(result.model, features)
    ranks = rank_of_target(tower.embed(histories) @ items.T, histories, targets)
    assert (ranks < 3).mean() >= 0.9, np.bincount(ranks)


def _top5_of_even_history(result, features) -> np.ndarray:
    tower = NumpyUserTower(export_user_tower(result.model, features))
    items = export_item_embeddings(result.model, features)
    history = UserItems.from_pairs(np.zeros(3), np.array([0, 4, 8]), None, 1, N_ITEMS)
    scores = tower.embed(history)[0] @ items.T
    scores[[0, 4, 8]] = -np.inf
    return np.argsort(-scores)[:5]


@pytest.mark.parametrize("sampled", [False, True])
def test_the_towers_learn_what_their_teacher_ranks(sampled):
    # the play data pairs even games with even games; this teacher says each game's player
    # goes on to the next game, of the other parity: weighed above the data, it must win
    teacher = np.zeros((N_ITEMS, N_ITEMS), dtype=np.float32)
    teacher[np.arange(N_ITEMS), (np.arange(N_ITEMS) + 1) % N_ITEMS] = 1.0
    options: dict = dict(max_full_softmax_items=5, sampled_negatives=12) if sampled else {}
    epochs = iter(range(100))
    options["validate"] = lambda scorer: next(epochs)  # every epoch better: keep the last
    taught, features = train_checkerboard(
        teacher=teacher, distill_weight=20.0, distill_temperature=0.1, epochs=15, **options
    )
    assert taught.sampled_softmax == sampled
    top5 = _top5_of_even_history(taught, features)
    assert all(item % 2 == 1 for item in top5), top5
    # the same teacher at weight 0 teaches nothing
    epochs = iter(range(100))
    untaught, _ = train_checkerboard(teacher=teacher, distill_weight=0.0, epochs=15, **options)
    assert all(item % 2 == 0 for item in _top5_of_even_history(untaught, features))


def test_a_teacher_from_the_play_data_keeps_the_checkerboard_answers():
    histories, _ = checkerboard(200)
    result, features = train_checkerboard(teacher=ease_weights(gram_matrix(histories), 5.0))
    unseen, targets = checkerboard(60, offset=5000)
    tower = NumpyUserTower(export_user_tower(result.model, features))
    items = export_item_embeddings(result.model, features)
    ranks = rank_of_target(tower.embed(unseen) @ items.T, unseen, targets)
    assert (ranks < 3).mean() >= 0.95, np.bincount(ranks)


def test_a_teacher_of_another_catalog_is_refused():
    with pytest.raises(ValueError, match="teacher"):
        train_checkerboard(teacher=np.zeros((3, 3), dtype=np.float32), epochs=1)


def test_the_kept_model_is_the_moving_average_of_the_weights():
    # an average over a billion epochs stays where it started, the weights after the first
    # step (an Adam step moves each weight by at most the learning rate, 0.01): the model
    # validated and kept is that average, not the weights the optimiser reached
    frozen, _ = train_checkerboard(average_epochs=1e9, epochs=3)
    moved, _ = train_checkerboard(average_epochs=0.0, epochs=3)
    torch.manual_seed(0)
    untrained = type(frozen.model)(frozen.model.config).state_dict()

    def farthest(model) -> float:
        state = model.state_dict()
        return max(float((state[name] - value).abs().max()) for name, value in untrained.items())

    assert farthest(frozen.model) <= 0.0101
    assert farthest(moved.model) > 0.05
    assert moved.history[-1].valid_metric > frozen.history[-1].valid_metric


def test_training_split_without_usable_users_is_a_clear_error():
    features = build_item_features(checkerboard_items())
    lonely = UserItems.from_pairs(np.arange(5), np.arange(5), None, 5, N_ITEMS)  # 1 game each
    config = TwoTowerConfig(N_ITEMS, features.n_tokens, features.numeric.shape[1])
    with pytest.raises(TrainingError, match="no user with 2\\+ games"):
        train_two_tower(
            lonely,
            features,
            config,
            TrainConfig(epochs=1, patience=1, batch_size=4, max_full_softmax_items=100),
            TrainRun(validate=lambda scorer: 0.0),
        )


def test_checkpoint_rebuilds_itself_and_refuses_other_versions(checkerboard_model, tmp_path):
    result, _ = checkerboard_model
    path = tmp_path / "model.pt"
    save_checkpoint(path, result.model, {"note": "x"})
    model, extra = load_checkpoint(path)
    assert extra == {"note": "x"}
    assert model.config == result.model.config
    for (name, a), (_, b) in zip(
        model.state_dict().items(), result.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name

    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 999
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="incompatible"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="gamerec train"):
        load_checkpoint(path)


def test_learning_rate_halves_after_each_epoch_without_gain() -> None:
    metrics = iter([0.5, 0.4, 0.6, 0.3])
    result, _ = train_checkerboard(
        validate=lambda scorer: next(metrics), epochs=4, patience=4, lr_decay=0.5
    )
    assert [report.best for report in result.history] == [True, False, True, False]
    assert [report.learning_rate for report in result.history] == [0.01, 0.005, 0.005, 0.0025]
    assert result.best_epoch == 2


def test_the_reranker_size_error_names_the_setting_to_change() -> None:
    with pytest.raises(GamerecError, match=r"train\.rerank_max_items = 10") as caught:
        check_ease_size(
            12, 10, setting="train.rerank_max_items", otherwise="set train.rerank = false"
        )
    assert "train.rerank = false" in str(caught.value)
    assert ease_weights(np.eye(12), 1.0).shape == (12, 12)


def test_a_non_finite_loss_stops_training_with_advice(tmp_path):
    """One NaN playtime that slipped past the loaders must not train to NaN embeddings."""
    train, _ = checkerboard(200)
    train.values[::7] = np.nan
    state = tmp_path / "state.pt"
    with pytest.raises(TrainingError) as raised:
        train_checkerboard(
            train,
            validate=lambda scorer: 0.0,
            epochs=2,
            patience=2,
            resume_path=state,
            resume_key="k",
        )
    assert "training loss became nan in epoch 1" in raised.value.message
    assert "last good model/ is kept" in raised.value.message
    assert "train.learning_rate" in raised.value.message
    assert not state.exists()  # no state of a broken epoch to resume from


class _NoValidation:
    def ndcg(self, method) -> float:
        return 0.0

    def ndcg_part(self, method, part: int, parts: int) -> tuple[float, int]:
        return 0.0, 1


@pytest.mark.parametrize(
    ("weight", "rerank", "expected"),
    [
        (1.0, True, {"used": True, "lambda": 5.0, "weight": 1.0, "temperature": 0.02}),
        (0.0, True, {"used": False, "why": "train.distill_weight is 0"}),
        (1.0, False, {"used": False, "why": "train.rerank is off"}),
    ],
)
def test_the_fit_says_whether_the_towers_had_a_teacher(weight, rerank, expected):
    config = FitConfig(
        shape=ModelShape(embedding_dim=8, hidden_dim=16),
        train=TrainConfig(epochs=1, distill_weight=weight, distill_lambda=5.0),
        rerank=RerankSearch(enabled=rerank),
    )
    histories, _ = checkerboard(200)
    fitted = fit_towers(config, checkerboard_items(), histories, _NoValidation(), FitRun())
    assert fitted.summary["teacher"] == expected
    # the re-ranker reuses the teacher's XᵀX rather than counting the pairs again
    assert (fitted.gram is not None) == expected["used"]


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_a_users_loss_counts_their_targets_to_the_power(power: float) -> None:
    """Two users, 1 and 4 held-out targets: the batch's loss is minus the mean over users of
    (mean log-probability of their targets) x (their targets) ** power. At 1 every target
    counts alike (the sum over a user's targets); at 0 every user does."""
    from gamerec.towers import train as training

    features = build_item_features(checkerboard_items())
    shape = TwoTowerConfig(
        n_items=N_ITEMS,
        n_tokens=len(features.tokens),
        n_numeric=features.numeric.shape[1],
        embedding_dim=8,
        hidden_dim=8,
        dropout=0.0,
    )
    config = TrainConfig(user_weight_power=power, holdout_fraction=0.2)
    batch = UserItems.from_pairs(
        np.array([0] * 5 + [1] * 20),
        np.r_[np.arange(5), np.arange(20)],
        np.ones(25),
        n_rows=2,
        n_items=N_ITEMS,
    )
    run = TrainRun(validate=lambda scorer: 0.0, threads=1)
    setup = training._set_up(batch, features, shape, config, run, None, None, 1)
    setup.model.eval()
    loss, _ = training._batch_loss(batch, features, setup, config, np.random.default_rng(3), None)
    # the same split and the same log-probabilities, by hand
    inputs, rows, items = training.holdout_split(
        batch, config.holdout_fraction, np.random.default_rng(3)
    )
    assert np.bincount(rows).tolist() == [1, 4]
    with torch.no_grad():
        users = setup.model.user_tower(
            *user_inputs(inputs, features.token_matrix, torch.device("cpu"), 0.0)
        )
        logits = setup.model.logits(users, setup.model.item_tower(*setup.item_inputs))
        logits[np.repeat([0, 1], inputs.row_lengths()), inputs.indices] = -1e9
        log_probs = torch.log_softmax(logits, dim=1)[rows, items].numpy()
    per_user = [log_probs[rows == u].mean() * (rows == u).sum() ** power for u in range(2)]
    assert float(loss.detach()) == pytest.approx(-np.mean(per_user), rel=1e-5)
