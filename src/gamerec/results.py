"""What each pipeline stage returns: frozen, typed results.

``render.py`` reads them by attribute; ``to_dict()`` is their JSON form (``--json``), with the
keys the commands have always printed. A result is built from what the stage's own modules
report (:meth:`from_summary` and friends take those dicts by their keys), so a key that appears
or disappears there is a ``TypeError`` at once rather than a field silently left behind.

Nested sections that are long and only printed (the preprocess catalog report, the
evaluation's per-method metrics) stay mappings; the fields a reader acts on are typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gamerec.runtime.recommender import Recommendation

__all__ = [
    "DemoResult",
    "DetailsFetched",
    "EvalResult",
    "FetchOwnedResult",
    "FetchSteamspyResult",
    "FetchStoreResult",
    "IndexResult",
    "NewUserShowcase",
    "NextStep",
    "PagesFetched",
    "PreprocessResult",
    "ServeResult",
    "ShowcaseUser",
    "StageResult",
    "TrainResult",
    "UserExample",
    "UsersResult",
    "jsonable",
]

#: field metadata: leave the key out of ``to_dict()`` when the value is None
OPTIONAL = {"omit_none": True}
#: field metadata: a field for readers of the result, never in its JSON
NOT_IN_JSON = {"json": False}


def jsonable(value: Any) -> Any:
    """``value`` with every typed result, path and tuple in it turned into plain JSON values."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


@dataclass(frozen=True)
class StageResult:
    """A stage's result: fields in the order its JSON lists them."""

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("json") is False:
                continue
            if value is None and spec.metadata.get("omit_none"):
                continue
            plain[spec.metadata.get("key", spec.name)] = jsonable(value)
        return plain


@dataclass(frozen=True)
class PreprocessResult(StageResult):
    """``gamerec preprocess``: what was read, kept and written (``processed/``)."""

    sources: list[dict[str, Any]]
    before_filtering: dict[str, int]
    duplicate_purchases: int
    merged_duplicates: int
    titles: int
    titles_matched: int
    title_match_rate: float
    users: int
    items: int
    #: the catalog report (games, what is recommendable, what was left out and why)
    catalog: dict[str, Any] | None
    interactions: int
    density: float
    items_with_genres: int
    items_with_tags: int
    groups: dict[str, int]
    targets: int
    #: title -> [label, count] rows
    histograms: dict[str, list[list[Any]]]
    output: str

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], output: Path) -> PreprocessResult:
        return cls(**summary, output=str(output))


@dataclass(frozen=True)
class TrainResult(StageResult):
    """``gamerec train``: the best epoch and how the run went (``model/``)."""

    best_epoch: int  # 0-based
    valid_ndcg_at_20: float
    epochs_run: int
    seconds: float
    resumed_from_epoch: int | None
    sampled_softmax: bool
    users: int
    items: int
    workers: int
    history: list[dict[str, Any]]
    #: the co-play teacher the towers learned from (or why there was none)
    teacher: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: the co-play re-ranker's fit (or why it was skipped); rank 0 only
    rerank: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    content_mapping: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: the genre/tag/studio closeness weight chosen on the validation users
    content_similarity: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: the policy that puts games nobody plays on the trained games' scale
    new_games: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: under torchrun, a worker other than rank 0: its rank, and that it wrote nothing
    rank: int | None = field(default=None, metadata=OPTIONAL)
    written: bool | None = field(default=None, metadata=OPTIONAL)
    output: str = ""
    #: the most epochs the run was allowed (not in the JSON: the settings say it)
    max_epochs: int | None = field(default=None, metadata=NOT_IN_JSON)

    @classmethod
    def from_summary(
        cls, summary: Mapping[str, Any], output: Path, max_epochs: int | None = None, **more: Any
    ) -> TrainResult:
        return cls(**summary, **more, output=str(output), max_epochs=max_epochs)

    @property
    def stopped_early(self) -> bool:
        """True when early stopping ended the run before its last allowed epoch."""
        # the history of a resumed run holds the epochs before the interruption too
        return self.max_epochs is not None and self.epochs_run < self.max_epochs

    def ending(self) -> str:
        """How the run ended, in words: ``stopped early at epoch 23, best 17``."""
        best = self.best_epoch + 1
        if self.stopped_early:
            return f"stopped early at epoch {self.epochs_run}, best {best}"
        return f"ran all {self.epochs_run} epochs, best {best}"


@dataclass(frozen=True)
class IndexResult(StageResult):
    """``gamerec index``: the index built and how well it agrees with exact search."""

    kind: str
    params: dict[str, Any]
    items: int
    trained: int
    mapped: int
    dim: int
    build_seconds: float
    recall_at_20: float
    recall_queries: int
    threads: int
    output: str


@dataclass(frozen=True)
class EvalResult(StageResult):
    """``gamerec eval``: every method side by side on one protocol.

    ``methods`` maps a method's name to its report (``metrics``: ``"recall@20" -> {"mean",
    "ci"}``, ``versus``, ``fit_seconds``, ...), as :mod:`gamerec.evaluation.report` writes it.
    """

    protocol: str
    protocol_name: str
    ks: list[int]
    n_items: int
    ranked_games: int
    train_users: int
    validation_users: int
    users_evaluated: int
    users_skipped: int
    skip_reason: str
    targets_dropped: int
    targets: int
    bootstrap: dict[str, Any]
    ease_lambda: float | None
    methods: dict[str, dict[str, Any]]
    #: P-COLD: how many games were hidden and their targets
    new_games: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    split_seed: int | None = None
    processed: str = ""
    #: what became of the two-tower model ("evaluated", "not trained (...)", ...)
    model: str = ""
    cold_model: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: P-COLD: NDCG with the whole fold-in, without its new games, without as many trained ones
    history_effect: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    seconds: float = 0.0
    output: str = ""

    @classmethod
    def from_report(cls, report: Mapping[str, Any], **more: Any) -> EvalResult:
        return cls(**report, **more)

    def metric(self, method: str, name: str) -> float | None:
        """The mean of ``name`` (``"hit_rate@10"``) for ``method``; None when not measured."""
        value = self.methods.get(method, {}).get("metrics", {}).get(name)
        return None if value is None else float(value["mean"])


@dataclass(frozen=True)
class PagesFetched(StageResult):
    """SteamSpy's ``all`` pages: fetched, skipped (saved before), failed, and where it ends."""

    fetched: int
    skipped: int
    failed: dict[str, str]
    end_page: int | None
    apps: int


@dataclass(frozen=True)
class DetailsFetched(StageResult):
    """SteamSpy's appdetails of the most-owned games."""

    requested: int
    fetched: int
    skipped: int
    not_found: int
    failed: dict[str, str]


@dataclass(frozen=True)
class FetchSteamspyResult(StageResult):
    """``gamerec fetch steamspy``."""

    pages: PagesFetched
    appdetails: DetailsFetched
    output: str

    @property
    def failed(self) -> dict[str, str]:
        return {**self.pages.failed, **self.appdetails.failed}


@dataclass(frozen=True)
class FetchStoreResult(StageResult):
    """``gamerec fetch store``."""

    appids_from: str
    requested: int
    fetched: int
    skipped: int
    not_found: int
    failed: dict[str, str]
    output: str


@dataclass(frozen=True)
class FetchOwnedResult(StageResult):
    """``gamerec fetch owned``."""

    requested: int
    fetched: int
    skipped: int
    private: int
    failed: dict[str, str]
    private_steamids: list[str]
    calls_today: int
    daily_limit: int
    output: str


@dataclass(frozen=True)
class UserExample(StageResult):
    user_id: str
    games: int


@dataclass(frozen=True)
class UsersResult(StageResult):
    """``gamerec users``: how many users are known, and some of their ids."""

    users: int
    examples: list[UserExample]


@dataclass(frozen=True)
class ServeResult(StageResult):
    """``gamerec serve`` after it stopped."""

    requests: int
    uptime_s: float
    drained: bool
    url: str
    processes: int | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class ShowcaseUser(StageResult):
    """The demo's test user: their kept games given, their held-out games looked for.

    Chosen as the median of the test users by the share of held-out games found in their top
    10 (never the best case), and shown beside what every test user got.
    """

    user_id: str
    played: int
    held_out: int
    held_out_found: int
    recommendations: Sequence[Recommendation]
    #: test users answered the same way, and how many got a held-out game in their top 10
    test_users: int = 0
    test_users_with_a_find: int = 0
    #: the evaluation's hit rate@10 of the default recommender over the same test users
    eval_hit_rate: float | None = None
    #: places of the shown answer given to games nobody in the play data owns (never a
    #: held-out game: the evaluation ranks the games with players alone)
    new_game_places: int = 0


@dataclass(frozen=True)
class NewUserShowcase(StageResult):
    genres: list[str]
    recommendations: Sequence[Recommendation]


@dataclass(frozen=True)
class NextStep(StageResult):
    """A command to try, and what it shows."""

    command: str
    what: str


@dataclass(frozen=True)
class DemoResult(StageResult):
    """``gamerec demo``: every stage's result, two example answers, and commands to try next."""

    preprocess: PreprocessResult
    train: TrainResult
    index: IndexResult
    eval: EvalResult
    sample_user: ShowcaseUser
    new_user: NewUserShowcase
    next_steps: list[NextStep] = field(default_factory=list)
