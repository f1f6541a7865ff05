"""Training the two-tower model with the hold-out-target objective.

Each epoch, every training user's games are split at random into an input part (what the user
tower sees) and held-out targets; the loss is the softmax cross-entropy of the targets over the
catalog with the input games masked out — the same task the evaluation protocol poses, and the
target never appears in the tower's input. Full softmax while the catalog is small enough,
sampled softmax with logQ correction beyond ``max_full_softmax_items``. A user's loss is the
mean over their targets times (number of targets) ** ``user_weight_power``: at 0 (the
default) every user counts alike, at 1 every target does. 0.5 lifts the towers alone on the
bundled data, but not the default recommender, and `similar Hades` then loses its studio's games
(benchmarks/README.md).

With a ``teacher`` (the co-play model's item-to-item weights, :mod:`gamerec.towers.ease`) the
loss also asks the towers to rank the catalog as the teacher ranks it from the same input games:
the cross-entropy of the towers' softmax against the teacher's softmax at ``distill_temperature``,
times ``distill_weight``. The held-out targets are a fifth of a history; the teacher speaks of
every game, so each user teaches more than their few targets.

With ``average_epochs``, the model validated and kept is an exponential moving average of the
weights over about that many epochs (``torch.optim.swa_utils.AveragedModel``): with a few
thousand users an epoch is a few dozen steps, and any one step's weights are noisy.

Both lift the towers alone on the bundled data's validation users, and both are off by default:
the towers then add less to the co-play stage they are blended with (``gamerec.settings``).

Seeded per epoch (``seed``, ``epoch``), so a resumed run continues exactly where it stopped.

Across processes (``workers``, see :mod:`gamerec.towers.distributed`) the model is wrapped in
DDP, which averages the gradients. ``batch_size`` stays the number of users per optimiser step:
every worker draws the same epoch permutation and the same hold-out split (same seeds) and
takes its contiguous share of each batch's users, so N workers take the same steps on the same
data as one process, each doing 1/N of the user-side work. With full softmax every worker
scores its users against the whole catalog, so nothing needs gathering; with sampled softmax
each worker embeds its own targets and its share of the sampled negatives, and the item
embeddings are all-gathered (with gradients) so every worker's users see the same candidates as
one process would: all the batch's targets (in-batch negatives) plus the sampled ones. The
validation users are split among the workers and their NDCG sums all-reduced, so every worker
takes the same early-stopping decision; only rank 0 writes the per-epoch resume state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gamerec.atomic import atomic_path
from gamerec.dataio.matrix import UserItems
from gamerec.errors import TrainingError
from gamerec.ranking.scorer import Scorer
from gamerec.ranking.user_tower import history_weights, token_preferences, unit_history_weights
from gamerec.towers.distributed import (
    Workers,
    all_reduce_sum,
    broadcast_from_rank0,
    collective_errors,
    gather_candidates,
    rank_slice,
)
from gamerec.towers.features import ItemFeatures
from gamerec.towers.model import TwoTower, TwoTowerConfig

__all__ = [
    "EpochReport",
    "TrainConfig",
    "TrainResult",
    "TrainRun",
    "resolve_device",
    "train_two_tower",
]


@dataclass
class EpochReport:
    epoch: int
    loss: float
    examples_per_s: float
    valid_metric: float
    best: bool
    seconds: float
    learning_rate: float = 0.0  # after this epoch (lowered on a setback with lr_decay < 1)


@dataclass
class TrainResult:
    model: TwoTower
    best_epoch: int
    best_metric: float
    history: list[EpochReport] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_epoch: int | None = None
    sampled_softmax: bool = False


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
    return torch.device(device)


def user_inputs(
    histories: UserItems,
    token_matrix: np.ndarray,
    device: torch.device,
    playtime_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The user tower's tensors for a batch of histories (indices, offsets, weights, prefs)."""
    raw_weights = history_weights(histories.values, playtime_weight)
    weights = unit_history_weights(histories, raw_weights)
    prefs = token_preferences(histories, token_matrix, raw_weights)
    return (
        torch.from_numpy(histories.indices.astype(np.int64)).to(device),
        torch.from_numpy(histories.indptr[:-1].astype(np.int64)).to(device),
        torch.from_numpy(weights.astype(np.float32)).to(device),
        torch.from_numpy(prefs).to(device),
    )


def holdout_split(
    histories: UserItems, fraction: float, rng: np.random.Generator
) -> tuple[UserItems, np.ndarray, np.ndarray]:
    """Split each history into inputs and targets; returns (inputs, target_rows, target_items)."""
    lengths = histories.row_lengths()
    n_targets = np.clip(np.rint(fraction * lengths), 1, np.maximum(lengths - 1, 1))
    row_of = np.repeat(np.arange(histories.n_rows), lengths)
    order = np.lexsort((rng.random(histories.nnz), row_of))
    position = np.empty(histories.nnz, dtype=np.int64)
    position[order] = np.arange(histories.nnz) - np.repeat(histories.indptr[:-1], lengths)
    is_target = position < n_targets[row_of]
    keep = ~is_target
    inputs = UserItems.from_pairs(
        row_of[keep],
        histories.indices[keep],
        histories.values[keep],
        histories.n_rows,
        histories.n_items,
    )
    return inputs, row_of[is_target], histories.indices[is_target]


class _Towers(nn.Module):
    """Both towers in one forward call: what DDP wraps (it syncs gradients of what forward used)."""

    def __init__(self, model: TwoTower):
        super().__init__()
        self.model = model

    def forward(
        self, user_args: tuple[torch.Tensor, ...], item_args: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.user_tower(*user_args), self.model.item_tower(*item_args)


def _wrap_ddp(model: TwoTower, workers: Workers) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [workers.device.index] if workers.device.type == "cuda" else None
    return DistributedDataParallel(_Towers(model), device_ids=device_ids)


def _epoch_seed(seed: int, epoch: int, workers: Workers | None) -> int:
    """torch's seed (dropout) for an epoch; each worker gets its own stream."""
    if workers is None:
        return seed * 100_003 + epoch
    return int(np.random.SeedSequence([seed, epoch, workers.rank]).generate_state(1)[0])


class _TorchScorer:
    """Scores with the model being trained (eval mode), for validation."""

    name = "two-tower"

    def __init__(self, model: TwoTower, features: ItemFeatures, item_inputs: tuple, device):
        self.model, self.features, self.item_inputs, self.device = (
            model,
            features,
            item_inputs,
            device,
        )
        with torch.no_grad():
            self.item_embeddings = model.item_tower(*item_inputs)

    def score(self, histories: UserItems) -> np.ndarray:
        with torch.no_grad():
            users = self.model.user_tower(
                *user_inputs(
                    histories,
                    self.features.token_matrix,
                    self.device,
                    self.model.config.playtime_weight,
                )
            )
            return (users @ self.item_embeddings.T).cpu().numpy()


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does. Every field changes the model it ends with, so all of them
    (and nothing else) go into the key a run resumes by (:meth:`resume_key`)."""

    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    lr_decay: float = 0.5  # learning rate x this after an epoch without a validation gain
    weight_decay: float = 0.0
    holdout_fraction: float = 0.2  # share of a user's games held out as targets each epoch
    user_weight_power: float = 0.0  # a user's loss counts (their targets) ** this
    max_full_softmax_items: int = 10_000  # above: sampled softmax with logQ correction
    sampled_negatives: int = 4096
    distill_weight: float = 0.0  # of the teacher's cross-entropy (0 or no teacher: none)
    distill_temperature: float = 0.02  # of the teacher's softmax over its scores
    distill_lambda: float = 50.0  # the teacher's regularisation (see gamerec.towers.ease)
    average_epochs: float = 0.0  # the weights' moving average spans about this many (0: none)
    seed: int = 0

    def resume_key(self, model: Mapping[str, Any], data: Any) -> str:
        """The key of a run of a model shaped by ``model`` on ``data`` (anything JSON-able
        naming the training data): a saved state resumes only a run with the same key.
        Threads, device and workers are not in it: they change how fast a run goes, not
        where it ends."""
        blob = json.dumps(
            {"train": asdict(self), "model": dict(model), "data": data},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrainRun:
    """How a run executes, none of which changes the model it ends with.

    ``validate(scorer)`` returns the early-stopping metric (higher is better; NDCG@20 on the
    validation users). ``resume_path`` holds a per-epoch training state, resumed when it was
    written under the same ``resume_key``. ``workers`` (from
    :func:`gamerec.towers.distributed.start_workers`) trains as one of several processes;
    ``device`` is then the workers' device. ``validate_part(scorer, part, parts)`` returns the
    metric's sum and the number of users over part ``part`` of ``parts`` of the validation
    users; without it rank 0 validates alone and broadcasts the result.
    """

    validate: Callable[[Scorer], float]
    device: str = "cpu"
    threads: int | None = None
    resume_path: Path | None = None
    resume_key: str = ""
    on_epoch: Callable[[EpochReport], None] | None = None
    on_batch: Callable[[int, int], None] | None = None
    workers: Workers | None = None
    validate_part: Callable[[Scorer, int, int], tuple[float, int]] | None = None


@dataclass
class _Progress:
    """Where a run stands after an epoch: what a resumed run reads back."""

    next_epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict[str, Any] = field(default_factory=dict)
    history: list[EpochReport] = field(default_factory=list)
    resumed_from: int | None = None


@dataclass
class _Setup:
    """Everything an epoch needs, built once per run."""

    model: TwoTower
    optimizer: _Optimizer
    device: torch.device
    item_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    sampling_probability: np.ndarray  # (n_items,) popularity^0.75, for sampled negatives
    log_q: torch.Tensor  # (n_items,) its log, the logQ correction
    sampled: bool
    step: nn.Module | None  # the DDP-wrapped towers, across workers
    teacher: torch.Tensor | None = None  # (n_items, n_items) item-to-item weights
    averaged: AveragedModel | None = None  # the weights' moving average: what is validated

    @property
    def kept(self) -> TwoTower:
        """The weights validated and kept: the moving average where there is one."""
        return self.model if self.averaged is None else cast(TwoTower, self.averaged.module)


def train_two_tower(
    train: UserItems,
    features: ItemFeatures,
    model_config: TwoTowerConfig,
    config: TrainConfig,
    run: TrainRun,
    teacher: np.ndarray | None = None,
) -> TrainResult:
    """Train on ``train``'s users and return the model at its best validation epoch.

    ``teacher``: (n_items, n_items) item-to-item weights whose scores the towers learn to rank
    by as well (see the module docstring); it changes the model, so name it in the resume key.
    """
    started = time.perf_counter()
    if run.threads:
        torch.set_num_threads(run.threads)
    workers = run.workers if run.workers is not None and run.workers.world_size >= 2 else None
    trainable = np.flatnonzero(train.row_lengths() >= 2)
    if len(trainable) == 0:
        raise TrainingError(
            "the training split has no user with 2+ games; run `gamerec preprocess` with more "
            "data or a smaller --min-user-items"
        )
    if teacher is not None and teacher.shape != (model_config.n_items, model_config.n_items):
        raise ValueError(f"teacher is {teacher.shape}, the catalog {model_config.n_items}")
    steps_per_epoch = math.ceil(len(trainable) / config.batch_size)
    setup = _set_up(train, features, model_config, config, run, workers, teacher, steps_per_epoch)
    progress = _resume(setup, run)
    if workers is not None:
        with collective_errors(workers):
            _check_same_start(progress.next_epoch, workers)
            setup.step = _wrap_ddp(setup.model, workers)
    with collective_errors(workers):
        for epoch in range(progress.next_epoch, config.epochs):
            if progress.bad_epochs >= config.patience:
                break
            report = _run_epoch(epoch, train, trainable, features, setup, config, run, workers)
            _after_epoch(report, setup, progress, run, workers, config.lr_decay)
    setup.model.load_state_dict(progress.best_state)
    setup.model.eval()
    return TrainResult(
        model=setup.model,
        best_epoch=progress.best_epoch,
        best_metric=progress.best_metric,
        history=progress.history,
        seconds=time.perf_counter() - started,
        resumed_from_epoch=progress.resumed_from,
        sampled_softmax=setup.sampled,
    )


def _set_up(
    train: UserItems,
    features: ItemFeatures,
    model_config: TwoTowerConfig,
    config: TrainConfig,
    run: TrainRun,
    workers: Workers | None,
    teacher: np.ndarray | None,
    steps_per_epoch: int,
) -> _Setup:
    device = workers.device if workers is not None else resolve_device(run.device)
    torch.manual_seed(config.seed)
    model = TwoTower(model_config).to(device)
    sampled = model_config.n_items > config.max_full_softmax_items
    optimizer = _Optimizer(
        model,
        config.learning_rate,
        config.weight_decay,
        # a sampled batch touches a few thousand rows of the two catalog-sized tables; dense
        # gradients and a dense Adam step would cost the whole catalog every batch, which made
        # an epoch grow with users x games. NCCL cannot all-reduce sparse gradients; gloo can.
        sparse_tables=sampled and not (workers is not None and device.type == "cuda"),
    )
    item_inputs = (
        torch.arange(model_config.n_items, device=device),
        torch.from_numpy(features.token_matrix).to(device),
        torch.from_numpy(features.numeric).to(device),
    )
    popularity = np.bincount(train.indices, minlength=model_config.n_items).astype(np.float64)
    popularity += 1.0
    sampling_probability = popularity**0.75 / (popularity**0.75).sum()
    log_q = torch.from_numpy(np.log(sampling_probability).astype(np.float32)).to(device)
    setup = _Setup(
        model, optimizer, device, item_inputs, sampling_probability, log_q, sampled, None
    )
    if teacher is not None and config.distill_weight > 0:
        setup.teacher = torch.from_numpy(np.asarray(teacher, dtype=np.float32)).to(device)
    if config.average_epochs > 0:
        span = max(config.average_epochs * steps_per_epoch, 1.0)  # in optimiser steps
        setup.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(1.0 - 1.0 / span))
    return setup


def _resume(setup: _Setup, run: TrainRun) -> _Progress:
    """The saved state of an interrupted run with the same key, else a fresh start."""
    progress = _Progress(best_state=copy.deepcopy(setup.model.state_dict()))
    if run.resume_path is None or not run.resume_path.is_file():
        return progress
    state = _load_state(run.resume_path)
    if state is None or state.get("resume_key") != run.resume_key:
        return progress
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    if setup.averaged is not None:
        setup.averaged.load_state_dict(state["averaged"])
    progress.best_state = state["best_model"]
    progress.next_epoch = int(state["epoch"]) + 1
    progress.best_metric, progress.best_epoch = (
        float(state["best_metric"]),
        int(state["best_epoch"]),
    )
    progress.bad_epochs = int(state["bad_epochs"])
    progress.history = [EpochReport(**report) for report in state["history"]]
    progress.resumed_from = progress.next_epoch
    return progress


def _run_epoch(
    epoch: int,
    train: UserItems,
    trainable: np.ndarray,
    features: ItemFeatures,
    setup: _Setup,
    config: TrainConfig,
    run: TrainRun,
    workers: Workers | None,
) -> EpochReport:
    """One pass over the training users, then validation; the report of the epoch."""
    epoch_started = time.perf_counter()
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(_epoch_seed(config.seed, epoch, workers))
    setup.model.train()
    order = rng.permutation(trainable)
    n_batches = math.ceil(len(trainable) / config.batch_size)
    total_loss, examples = 0.0, 0
    for batch_number, start in enumerate(range(0, len(order), config.batch_size)):
        batch = train.take_rows(order[start : start + config.batch_size])
        loss, batch_loss = _batch_loss(batch, features, setup, config, rng, workers)
        setup.optimizer.zero_grad()
        loss.backward()
        setup.optimizer.step()
        if setup.averaged is not None:
            setup.averaged.update_parameters(setup.model)
        total_loss += batch_loss
        examples += batch.n_rows
        if run.on_batch is not None:
            run.on_batch(batch_number + 1, n_batches)
    if workers is not None:
        total_loss = all_reduce_sum([total_loss], workers)[0]
    if not math.isfinite(total_loss):  # the same sum on every worker: all stop
        raise TrainingError(
            f"the training loss became {total_loss} in epoch {epoch + 1}, so the model "
            "is no longer usable; nothing was written, the last good model/ is kept. "
            "Check the inputs for extreme playtimes, or lower train.learning_rate "
            f"(now {setup.optimizer.learning_rate:g}), and run again"
        )
    setup.model.eval()
    setup.kept.eval()
    metric = _validate(
        _TorchScorer(setup.kept, features, setup.item_inputs, setup.device),
        run.validate,
        run.validate_part,
        workers,
    )
    seconds = time.perf_counter() - epoch_started
    return EpochReport(
        epoch=epoch,
        loss=total_loss / max(examples, 1),
        examples_per_s=examples / max(seconds, 1e-9),
        valid_metric=metric,
        best=False,
        seconds=seconds,
    )


def _batch_loss(
    batch: UserItems,
    features: ItemFeatures,
    setup: _Setup,
    config: TrainConfig,
    rng: np.random.Generator,
    workers: Workers | None,
) -> tuple[torch.Tensor, float]:
    """The hold-out-target loss of one batch of users: (the loss to step on, its sum over the
    batch's users for the epoch's report)."""
    device, model = setup.device, setup.model
    inputs, target_rows, target_items = holdout_split(batch, config.holdout_fraction, rng)
    if workers is not None:  # this worker's share of the batch's users
        first, end = rank_slice(batch.n_rows, workers)
        inputs = inputs.take_rows(np.arange(first, end))
        mine = (target_rows >= first) & (target_rows < end)
        target_rows, target_items = target_rows[mine] - first, target_items[mine]
    user_args = user_inputs(inputs, features.token_matrix, device, model.config.playtime_weight)
    input_rows = torch.from_numpy(np.repeat(np.arange(inputs.n_rows), inputs.row_lengths())).to(
        device
    )
    input_items = torch.from_numpy(inputs.indices.astype(np.int64)).to(device)
    rows_t = torch.from_numpy(target_rows).to(device)
    items_t = torch.from_numpy(target_items.astype(np.int64)).to(device)
    n_targets = torch.bincount(rows_t, minlength=inputs.n_rows).clamp(min=1).float()
    if not setup.sampled:
        log_probs, target_columns, candidates = _full_softmax(
            user_args, input_rows, input_items, items_t, setup
        )
    else:
        log_probs, target_columns, candidates = _sampled_softmax(
            user_args, input_rows, input_items, items_t, setup, config, rng, workers
        )
    picked = log_probs[rows_t, target_columns]
    per_user = torch.zeros(inputs.n_rows, device=device).index_add(0, rows_t, picked) / n_targets
    if config.user_weight_power:
        per_user = per_user * n_targets**config.user_weight_power
    if setup.teacher is not None:
        per_user = per_user + config.distill_weight * _teacher_agreement(
            log_probs, input_rows, input_items, candidates, setup.teacher, config
        )
    if workers is None:
        loss = -per_user.mean()
        return loss, float(loss.detach()) * batch.n_rows
    # DDP averages gradients over workers: scale so the average is the gradient of the whole
    # batch's mean loss, whatever each worker's share of users
    user_losses = -per_user
    loss = user_losses.sum() * (workers.world_size / batch.n_rows)
    return loss, float(user_losses.detach().sum())


def _full_softmax(
    user_args: tuple[torch.Tensor, ...],
    input_rows: torch.Tensor,
    input_items: torch.Tensor,
    items_t: torch.Tensor,
    setup: _Setup,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Log-probabilities over the whole catalog, the inputs masked: (B, n_items), the targets'
    columns, and None (every game is a column)."""
    model = setup.model
    if setup.step is None:
        users = model.user_tower(*user_args)
        item_embeddings = model.item_tower(*setup.item_inputs)
    else:  # every worker scores the whole catalog: nothing to gather
        users, item_embeddings = setup.step(user_args, setup.item_inputs)
    logits = model.logits(users, item_embeddings)  # (B, N)
    logits = logits.index_put((input_rows, input_items), torch.tensor(-1e9))
    return F.log_softmax(logits, dim=1), items_t, None


def _sampled_softmax(
    user_args: tuple[torch.Tensor, ...],
    input_rows: torch.Tensor,
    input_items: torch.Tensor,
    items_t: torch.Tensor,
    setup: _Setup,
    config: TrainConfig,
    rng: np.random.Generator,
    workers: Workers | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities over the batch's targets and sampled negatives (logQ corrected), the
    inputs masked: (B, C), the targets' columns, and the C candidate games."""
    model, device, item_inputs = setup.model, setup.device, setup.item_inputs
    n_items = model.config.n_items
    drawn = rng.choice(n_items, config.sampled_negatives, p=setup.sampling_probability)
    if setup.step is None or workers is None:
        users = model.user_tower(*user_args)
        negatives = torch.from_numpy(drawn).to(device)
        candidates, position = torch.unique(torch.cat([items_t, negatives]), return_inverse=True)
        item_embeddings = model.item_tower(
            candidates, item_inputs[1][candidates], item_inputs[2][candidates]
        )
        target_columns = position[: len(items_t)]
    else:
        # embed this worker's targets and share of the negatives, then gather
        share = torch.from_numpy(drawn[workers.rank :: workers.world_size])
        local = torch.unique(torch.cat([items_t, share.to(device)]))
        users, local_embeddings = setup.step(
            user_args, (local, item_inputs[1][local], item_inputs[2][local])
        )
        candidates, item_embeddings = gather_candidates(local, local_embeddings, workers)
        target_columns = torch.searchsorted(candidates, items_t)
    logits = model.logits(users, item_embeddings) - setup.log_q[candidates]  # logQ
    lookup = torch.full((n_items,), -1, device=device, dtype=torch.long)
    lookup[candidates] = torch.arange(len(candidates), device=device)
    column = lookup[input_items]
    seen = column >= 0
    logits = logits.index_put((input_rows[seen], column[seen]), torch.tensor(-1e9))
    return F.log_softmax(logits, dim=1), target_columns, candidates


def _teacher_agreement(
    log_probs: torch.Tensor,
    input_rows: torch.Tensor,
    input_items: torch.Tensor,
    candidates: torch.Tensor | None,
    teacher: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    """Per user, minus the cross-entropy of the towers' ``log_probs`` (B, C) against the
    teacher's softmax over the same columns (``candidates``, or the catalog), inputs masked."""
    with torch.no_grad():
        if candidates is None:
            columns = teacher[input_items]  # (nnz, n_items)
        else:  # only the candidates' columns: (nnz, C)
            columns = teacher[input_items[:, None], candidates[None, :]]
        scores = torch.zeros(log_probs.shape, device=log_probs.device).index_add(
            0, input_rows, columns
        )  # (B, C): the teacher's score of each column from the user's input games
        masked = log_probs <= -1e8  # the inputs, masked in the towers' logits too
        scores = scores.masked_fill(masked, -1e9)
        target = F.softmax(scores / config.distill_temperature, dim=1)
    return (target * log_probs.masked_fill(masked, 0.0)).sum(dim=1)


def _after_epoch(
    report: EpochReport,
    setup: _Setup,
    progress: _Progress,
    run: TrainRun,
    workers: Workers | None,
    lr_decay: float,
) -> None:
    """Keep the best model, lower the step on a setback, save the state, report."""
    report.best = report.valid_metric > progress.best_metric
    if report.best:
        progress.best_metric, progress.best_epoch = report.valid_metric, report.epoch
        progress.bad_epochs = 0
        progress.best_state = copy.deepcopy(setup.kept.state_dict())
    else:
        progress.bad_epochs += 1
        setup.optimizer.decay(lr_decay)
    report.learning_rate = setup.optimizer.learning_rate
    progress.history.append(report)
    progress.next_epoch = report.epoch + 1
    if run.resume_path is not None and (workers is None or workers.is_writer):
        _save_state(
            run.resume_path,
            {
                "resume_key": run.resume_key,
                "epoch": report.epoch,
                "model": setup.model.state_dict(),
                "optimizer": setup.optimizer.state_dict(),
                "averaged": None if setup.averaged is None else setup.averaged.state_dict(),
                "best_model": progress.best_state,
                "best_metric": progress.best_metric,
                "best_epoch": progress.best_epoch,
                "bad_epochs": progress.bad_epochs,
                "history": [vars(r) for r in progress.history],
            },
        )
    if run.on_epoch is not None:
        run.on_epoch(report)


class _Optimizer:
    """AdamW over the model, or, with ``sparse_tables``, SparseAdam over its two catalog-sized
    embedding tables (history bag and item IDs, given sparse gradients) and AdamW over the rest.

    SparseAdam updates only the rows a batch touched (lazy Adam) and has no weight decay; the
    sparse mode is used only for sampled softmax, the large-catalog path.
    """

    def __init__(
        self, model: TwoTower, learning_rate: float, weight_decay: float, sparse_tables: bool
    ):
        history, identity = model.user_tower.history, model.item_tower.identity
        table_weights = [history.weight, identity.weight]
        dense = [
            p
            for p in model.parameters()
            if not sparse_tables or all(p is not weight for weight in table_weights)
        ]
        self.parts: list[torch.optim.Optimizer] = [
            torch.optim.AdamW(dense, lr=learning_rate, weight_decay=weight_decay, foreach=True)
        ]
        if sparse_tables:
            history.sparse = identity.sparse = True
            self.parts.append(torch.optim.SparseAdam(table_weights, lr=learning_rate))

    @property
    def learning_rate(self) -> float:
        return float(self.parts[0].param_groups[0]["lr"])

    def decay(self, factor: float) -> None:
        """Multiply every learning rate by ``factor`` (kept in the state: resumes alike)."""
        for part in self.parts:
            for group in part.param_groups:
                group["lr"] *= factor

    def zero_grad(self) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=True)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [part.state_dict() for part in self.parts]

    def load_state_dict(self, state: Any) -> None:
        states = state if isinstance(state, list) else [state]
        if len(states) != len(self.parts):
            raise TrainingError(
                "the saved training state was written for another optimizer; delete "
                "<data_dir>/.train-state to start training afresh"
            )
        for part, part_state in zip(self.parts, states, strict=True):
            part.load_state_dict(part_state)


def _validate(
    scorer: _TorchScorer,
    validate: Callable[[Scorer], float],
    validate_part: Callable[[Scorer, int, int], tuple[float, int]] | None,
    workers: Workers | None,
) -> float:
    """The early-stopping metric; the same number on every worker."""
    if workers is None:
        return float(validate(scorer))
    if validate_part is None:
        value = float(validate(scorer)) if workers.is_writer else 0.0
        return broadcast_from_rank0([value], workers)[0]
    part_sum, part_users = validate_part(scorer, workers.rank, workers.world_size)
    total, users = all_reduce_sum([part_sum, part_users], workers)
    if users == 0:
        raise TrainingError("no validation user has a target game to early-stop on")
    return total / users


def _check_same_start(start_epoch: int, workers: Workers) -> None:
    """Every worker must resume from the same epoch (they read the same training state)."""
    leader = int(broadcast_from_rank0([start_epoch], workers)[0])
    disagree = all_reduce_sum([float(leader != start_epoch)], workers)[0]
    if disagree:
        raise TrainingError(
            f"the training workers found different resume states (worker 0 starts at epoch "
            f"{leader + 1}, worker {workers.rank} at {start_epoch + 1}); every worker must read "
            "the same data_dir (a shared folder when training across machines)"
        )


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # a torn or foreign file: start afresh rather than fail
        return None
    return state if isinstance(state, dict) else None
