"""The one place gamerec's settings live.

:class:`Settings` is a pydantic-settings ``BaseSettings``. Precedence, lowest first: built-in
defaults < ``Settings(...)`` arguments < ``gamerec.toml`` in the working directory (or
``--config PATH``) < ``GAMEREC_*`` environment variables (nested with ``__``, e.g.
``GAMEREC_TRAIN__EPOCHS=5``; structured values as JSON) < torchrun's ``RANK``/``WORLD_SIZE``/...
< command-line flags.

``Settings.load()`` builds the effective settings and remembers where every value came from
(``Settings.sources``), which is what ``gamerec config show`` prints. Only the pipeline unpacks
settings; core modules take plain arguments.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gamerec.errors import ConfigError

__all__ = [
    "DistributedSettings",
    "EvalSettings",
    "FetchSettings",
    "IndexSettings",
    "InputSpec",
    "PreprocessSettings",
    "RecommendSettings",
    "ServeSettings",
    "Settings",
    "TrainSettings",
]

ENV_PREFIX = "GAMEREC_"
DEFAULT_CONFIG_FILE = "gamerec.toml"


#: a number of things, at least one
Count = Annotated[int, Field(ge=1)]
#: seconds to wait, or a weight: zero or more
Wait = Annotated[float, Field(ge=0)]
#: a timeout, rate or step size: more than zero
Positive = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


InputKind = Literal[
    "steam-200k", "steam-csv", "ucsd", "steamspy", "store", "catalog", "owned", "csv"
]


class InputSpec(_Section):
    """One input file (or folder) for ``gamerec preprocess``."""

    kind: InputKind = Field(
        description="steam-200k | steam-csv (Steam Store Games) | ucsd (steam_games.json) | "
        "steamspy (raw/steamspy folder) | store (raw/store folder or store record files) | "
        "catalog (a catalog .parquet table) | "
        "owned (GetOwnedGames JSON file or folder) | csv (generic)"
    )
    path: Path = Field(description="the file, or folder for steamspy/store/owned")
    user_column: str = Field(default="user", description="csv: the column holding user ids")
    item_column: str = Field(default="item", description="csv: the column holding appids or titles")
    value_column: str | None = Field(
        default=None, description="csv: optional column with playtime or a rating"
    )
    value_kind: Literal["playtime_min", "playtime_hours", "rating"] = Field(
        default="playtime_min", description="csv: what value_column means"
    )
    item_key: Literal["auto", "appid", "title"] = Field(
        default="auto", description="csv: whether item_column holds appids, titles, or either"
    )


class PreprocessSettings(_Section):
    inputs: list[InputSpec] = Field(
        default_factory=list,
        description="input files; empty means the bundled steam-200k demo dataset",
    )
    min_user_items: Count = Field(5, description="drop users owning fewer games")
    min_item_users: Count = Field(2, description="drop games owned by fewer users")
    min_owners: int = Field(
        20_000,
        ge=0,
        description="catalog games nobody in the play data owns need this many SteamSpy owners",
    )
    valid_fraction: Positive = Field(
        0.1, lt=0.5, description="share of users held out for validation"
    )
    test_fraction: Positive = Field(0.2, lt=0.5, description="share of users held out for testing")
    target_fraction: Positive = Field(
        0.2, lt=1, description="share of an evaluated user's games used as targets"
    )
    seed: int = Field(default=0, description="seed of the user split and fold-in/target split")


class FetchSettings(_Section):
    steamspy_url: str = Field(
        default="https://steamspy.com/api.php", description="SteamSpy API endpoint"
    )
    steam_api_url: str = Field(
        default="https://api.steampowered.com", description="Steam Web API base URL"
    )
    steam_api_key: SecretStr | None = Field(
        default=None,
        description="Steam Web API key (set GAMEREC_STEAM_API_KEY); never printed or stored",
    )
    all_interval_s: Wait = Field(
        60.0, description="seconds between SteamSpy request=all pages (documented)"
    )
    request_interval_s: Wait = Field(
        1.0, description="seconds between other SteamSpy requests (documented)"
    )
    steam_interval_s: Wait = Field(1.0, description="seconds between Steam Web API requests")
    store_url: str = Field(
        default="https://store.steampowered.com/api/appdetails",
        description="Steam store appdetails endpoint",
    )
    store_interval_s: Wait = Field(
        # the store answers 429 past about 200 requests in 5 minutes: 1.5 s keeps exactly under
        1.5,
        description="seconds between Steam store requests (about 200 per 5 minutes allowed)",
    )
    store_details: int = Field(
        default=1000, ge=0, description="store appdetails for this many top games by owners"
    )
    timeout_s: Positive = Field(30.0, description="per-request timeout in seconds")
    max_retries: int = Field(
        default=5, ge=0, description="retries on timeouts, connection errors, 429 and 5xx"
    )
    backoff_base_s: Wait = Field(2.0, description="first retry delay (doubles)")
    backoff_max_s: Wait = Field(300.0, description="longest retry delay")
    daily_limit: Count = Field(100_000, description="Steam Web API calls per day")
    pages: Count | None = Field(
        None, description="SteamSpy all pages to fetch (None: until an empty page)"
    )
    details: int = Field(
        default=1000, ge=0, description="appdetails for this many top games by owners"
    )


class TrainSettings(_Section):
    embedding_dim: int = Field(
        # validation NDCG@20 of the towers alone, bundled data, training seeds 0/1/2: 128 gave
        # 0.490/0.483/0.489, 256 0.506/0.506/0.492; 192, 384 and 512 fell between
        default=256,
        ge=2,
        description="output embedding size",
    )
    hidden_dim: int = Field(default=512, ge=2, description="hidden width of the user tower")
    epochs: Count = Field(40, description="maximum epochs")
    patience: Count = Field(6, description="stop after this many epochs without gain")
    batch_size: Count = Field(64, description="users per batch")
    learning_rate: Positive = Field(2e-3, description="AdamW learning rate")
    lr_decay: float = Field(
        # validation NDCG@20 is noisy epoch to epoch; halving the step on a setback settles
        # the model instead of stopping it (bundled data: 0.484 -> 0.502 on validation)
        default=0.5,
        gt=0,
        le=1,
        description="learning rate x this after an epoch without gain (1 = constant)",
    )
    weight_decay: Wait = Field(0.0, description="AdamW weight decay")
    dropout: Wait = Field(0.5, lt=1, description="dropout in the user tower")
    temperature: Positive = Field(0.05, description="softmax temperature on cosine")
    playtime_weight: float = Field(
        default=0.0,
        ge=0,
        description="history weight = 1 + playtime_weight * log1p(hours); 0 = ownership only",
    )
    holdout_fraction: Positive = Field(
        0.2, lt=1, description="share of a user's games held out as targets"
    )
    user_weight_power: float = Field(
        # 0.5 against 0: the towers alone +0.002 / +0.007 validation NDCG@20 (training seeds
        # 0 / 1) and P-SG 0.466 / 0.479 / 0.467 against 0.463 / 0.468 / 0.457, but the default
        # -0.000 / -0.001 and `similar Hades` lost Transistor and Bastion to Lost Ark and God
        # of War (benchmarks/README.md); 1 ranked worse (0.503 / 0.500). Off.
        default=0.0,
        ge=0,
        le=2,
        description="a user's loss counts (held-out targets) ** this: 0 every user alike, "
        "1 every target alike",
    )
    max_full_softmax_items: int = Field(
        # a full softmax embeds the whole catalog every batch: an epoch costs users x games
        default=10_000,
        ge=1,
        description="above this catalog size use sampled softmax with logQ correction",
    )
    sampled_negatives: Count = Field(4096, description="negatives per sampled batch")
    distill_weight: Wait = Field(
        # off by default: with weight 1 the towers alone rank the validation users better
        # (NDCG@20 0.513/0.513 against 0.506/0.506, training seeds 0/1) but the default
        # recommender worse (0.547/0.547 against 0.548/0.553; with trained games held out as
        # new 0.528 against 0.534): towers that learn the co-play model add less to it
        default=0.0,
        description="weight of the co-play teacher in the towers' loss (0 = no teacher)",
    )
    distill_temperature: Positive = Field(
        0.02, description="temperature of the teacher's softmax over its co-play scores"
    )
    distill_lambda: Positive = Field(
        50.0, description="regularisation of the co-play (EASE) teacher"
    )
    average_epochs: Wait = Field(
        # off by default: validation NDCG@20 of the default recommender 0.547 with a 12-epoch
        # average against 0.548 without (the towers alone 0.507 against 0.506)
        default=0.0,
        description="keep a moving average of the weights over about this many epochs (0 = off)",
    )
    seed: int = Field(default=0, description="seed of initialisation and batching")
    rerank: bool = Field(
        default=True, description="fit the co-play re-ranker (EASE) for the second stage"
    )
    rerank_lambdas: list[float] = Field(
        default_factory=lambda: [20.0, 50.0, 100.0],
        description="re-ranker regularisations tried on the validation users",
    )
    rerank_alphas: list[float] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75],
        description="weights of the two-tower score in the blend, tried on validation users",
    )
    rerank_candidates: Count = Field(
        200, description="two-tower candidates the re-ranker re-orders"
    )
    content_weights: list[float] = Field(
        default_factory=lambda: [0.0, 0.15, 0.3],
        min_length=1,
        description="weights of genre/tag/studio closeness tried on the validation users",
    )
    new_game_offsets: list[float] = Field(
        default_factory=lambda: [-0.5, 0.0, 0.5, 1.0],
        min_length=1,
        description="new games' offsets on the trained games' scale, tried on validation users",
    )
    new_game_contents: list[float] = Field(
        # no 0: a new game's mapped vector says mostly how popular it is; validation preferred
        # no closeness by 0.005 NDCG on one split, and every list's new games were then the
        # most owned ones (docs/model.md)
        default_factory=lambda: [1.0, 0.5, 2.0],
        min_length=1,
        description="weights of a new game's genre/tag closeness, tried on validation users",
    )
    new_game_history_weights: list[float] = Field(
        default_factory=lambda: [0.0, 2.0, 4.0],
        min_length=1,
        description="how much a history of new games favours new games, tried on validation users",
    )
    new_game_older_weights: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1],
        min_length=1,
        description="points a new game loses per year older than a history's games, tried on "
        "validation users",
    )
    rerank_coplay_candidates: int = Field(
        100, ge=0, description="co-play model's own top games added to the re-ranked candidates"
    )
    rerank_max_items: Count = Field(
        20_000, description="skip the re-ranker above this catalog size (n x n)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="torch device")
    threads: Count | None = Field(None, description="torch CPU threads (None: torch's default)")


#: torchrun's variables (and any launcher that follows its convention) -> distributed.* fields
LAUNCHER_VARIABLES = {
    "RANK": "rank",
    "WORLD_SIZE": "world_size",
    "LOCAL_RANK": "local_rank",
    "MASTER_ADDR": "master_addr",
    "MASTER_PORT": "master_port",
}


class DistributedSettings(_Section):
    """Training across processes (``torchrun --nproc-per-node N -m gamerec train``).

    torchrun sets ``rank``, ``world_size``, ``local_rank``, ``master_addr`` and ``master_port``
    through ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
    ``world_size`` 1 (the default) trains in this process alone.
    """

    rank: int = Field(default=0, ge=0, description="this worker's rank (torchrun sets RANK)")
    world_size: Count = Field(
        1, description="number of training workers (torchrun sets WORLD_SIZE)"
    )
    local_rank: int = Field(
        default=0, ge=0, description="rank on this machine, its GPU (torchrun sets LOCAL_RANK)"
    )
    master_addr: str = Field(
        default="127.0.0.1", description="host of rank 0's rendezvous (torchrun sets MASTER_ADDR)"
    )
    master_port: Count = Field(29500, le=65535, description="its port (torchrun sets MASTER_PORT)")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        default="auto", description="auto: nccl on CUDA GPUs, gloo on CPUs"
    )
    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="seconds to wait for the other workers to join, and for any step together",
    )

    @model_validator(mode="after")
    def _rank_in_world(self) -> DistributedSettings:
        if self.rank >= self.world_size:
            raise ValueError(f"rank {self.rank} must be below world_size {self.world_size}")
        return self


def launcher_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """``{"distributed": {...}}`` from torchrun's variables in ``environ`` (empty when unset)."""
    values: dict[str, Any] = {}
    for variable, name in LAUNCHER_VARIABLES.items():
        raw = environ.get(variable)
        if raw is None or raw.strip() == "":
            continue
        if name == "master_addr":
            values[name] = raw.strip()
            continue
        try:
            values[name] = int(raw.strip())
        except ValueError:
            raise ConfigError(
                f"environment variable {variable}={raw!r} is not an integer; it is set by "
                "torchrun: launch with `torchrun --nproc-per-node N -m gamerec train`"
            ) from None
    return {"distributed": values} if values else {}


class IndexSettings(_Section):
    kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        default="auto", description="auto: exact up to exact_max_items, HNSW above"
    )
    exact_max_items: Count = Field(100_000, description="auto's exact-search limit")
    hnsw_m: int = Field(default=32, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(default=200, ge=8, description="HNSW build beam width")
    hnsw_ef_search: int = Field(default=256, ge=8, description="HNSW search beam width")
    ivf_nlist: Count | None = Field(None, description="IVF cells (None: about 4*sqrt(n))")
    ivf_nprobe: Count = Field(64, description="IVF cells visited per query (64: recall@20 >= 0.99)")
    threads: Count | None = Field(
        None, description="FAISS CPU threads (None: FAISS's default, all cores)"
    )


Baseline = Literal["popularity", "itemknn", "ease", "content"]
_DEFAULT_BASELINES: tuple[Baseline, ...] = ("popularity", "itemknn", "ease")


class EvalSettings(_Section):
    protocol: Literal["sg", "loo", "cold"] = Field(
        default="sg", description="sg (P-SG), loo (P-LOO) or cold (P-COLD: new games)"
    )
    k: list[int] = Field(default_factory=lambda: [10, 20, 50], description="cut-offs")
    bootstrap: int = Field(default=1000, ge=0, description="bootstrap resamples for 95% CIs")
    seed: int = Field(default=0, description="seed of the bootstrap and of P-COLD's new games")
    ease_max_items: Count = Field(
        20_000, description="EASE refuses catalogs above this (dense n x n)"
    )
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(_DEFAULT_BASELINES),
        description="baselines to evaluate (content joins them under P-COLD)",
    )
    ease_lambdas: list[float] = Field(
        default_factory=lambda: [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0],
        description="EASE L2 grid; lambda is chosen by NDCG@20 of the validation users",
    )
    itemknn_neighbors: Count | None = Field(
        None, description="item-kNN: keep each game's N most similar (None: all)"
    )
    batch_size: Count = Field(
        1024, description="users scored at once (memory: batch x games floats)"
    )


class RecommendSettings(_Section):
    top_k: Count = Field(10, description="recommendations per answer")
    max_top_k: Count = Field(1000, description="largest top_k accepted")
    rerank: bool = Field(
        default=True,
        description="re-rank the two-tower's candidates with the co-play model, if trained",
    )
    new_games_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of each answer's places for games nobody in the play data owns "
        "(ranked among themselves by the two-tower)",
    )


class ServeSettings(_Section):
    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="port (0: any free port)")
    token: SecretStr | None = Field(
        default=None, description="bearer token required on every request but /health"
    )
    max_body_bytes: Count = Field(1_000_000, description="largest request body")
    max_header_bytes: Count = Field(
        32 * 1024, description="largest request line and headers together (larger: 431)"
    )
    timeout_s: Positive = Field(10.0, description="a request, body included, must arrive in this")
    header_timeout_s: Positive = Field(
        5.0,
        description="a request's line and headers must arrive within this of its first byte; "
        "at the connection limit a connection still sending them is closed to make room",
    )
    max_workers: int = Field(
        default=2,
        ge=1,
        description="requests computed at once per process, others wait (one lock for Python "
        "code: two is as fast as one and not stuck behind a slow request; processes add cores)",
    )
    max_connections: Count = Field(256, description="open connections at once; more get 503")
    max_connections_per_client: Count = Field(
        32,
        description="open connections at once from one address (per process); at a limit an "
        "idle one is closed to make room, else 503",
    )
    max_top_k: Count = Field(
        100,
        description="largest top_k (and /similar k) a request may ask; recommend.max_top_k "
        "caps it too",
    )
    max_history: Count = Field(
        250,
        description="a /recommend history of more games is scored by its most played ones; "
        "the answer's history.left_out counts the others",
    )
    drain_s: Wait = Field(30.0, description="on SIGTERM, seconds to finish requests in flight")
    search_threads: int = Field(
        default=1,
        ge=1,
        description="FAISS and BLAS threads per query (requests already run in parallel)",
    )
    processes: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        default="auto",
        description='worker processes sharing the port (fork); "auto": one per available core, '
        "at most 8",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log threshold: info logs one access line per request"
    )

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        if token is None:
            return None
        # a token read from a file keeps its line end, and "abc " would never match "abc"
        trimmed = token.get_secret_value().strip()
        # an empty token would leave every route open while `config show` prints ********
        if not trimmed:
            raise ValueError(
                "an empty token would turn authentication off (a blank one is empty once "
                "trimmed); set one or unset it"
            )
        return SecretStr(trimmed)

    @field_validator("processes", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any) -> Any:
        # one message for both forms, rather than one per member of the union
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if value == "auto" or (type(value) is int and 1 <= value <= 256):
            return value
        raise ValueError('must be "auto" or a whole number from 1 to 256')


@dataclass
class _Build:
    """One construction of :class:`Settings`: what :meth:`Settings.load` asked for, and what each
    source gave, for provenance and for errors that name the file or variable at fault."""

    config: Path | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    #: (label, values) of each source that gave any, lowest precedence first
    layers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: dotted name -> the GAMEREC_* variable that set it
    variables: dict[str, str] = field(default_factory=dict)

    def origins(self) -> dict[str, str]:
        """Dotted name -> label of the last source that set it, the one that counts."""
        return {name: label for label, values in self.layers for name in _flatten(values)}


_BUILD: ContextVar[_Build | None] = ContextVar("_BUILD", default=None)


class _Recorded(PydanticBaseSettingsSource):
    """A source whose values are kept under ``label`` in the build under way."""

    def __init__(self, source: PydanticBaseSettingsSource, label: str, build: _Build) -> None:
        super().__init__(source.settings_cls)
        self.source, self.label, self.build = source, label, build

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self.source()
        # pydantic-settings calls the highest precedence first
        self.build.layers.insert(0, (self.label, values))
        return values


class _TomlFile(TomlConfigSettingsSource):
    """The config file: a file that is not TOML is an error naming it, and relative paths are
    relative to the file's folder, as in pyproject.toml or ruff.toml, so ``--config
    elsewhere/gamerec.toml`` means what that file says."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            with file_path.open("rb") as handle:
                values = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{file_path}: not valid TOML ({exc}); fix the file or remove it"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot be read ({exc.strerror})") from None
        return _paths_from(file_path.parent, values)


class _Environment(EnvSettingsSource):
    """``GAMEREC_*`` variables, checked first: a name that is no setting is an error (a typo must
    not be ignored) and so is a structured value that is not JSON, each naming the variable."""

    def __init__(self, settings_cls: type[BaseSettings], build: _Build) -> None:
        super().__init__(settings_cls)
        self.build = build

    def __call__(self) -> dict[str, Any]:
        for variable, raw in sorted(os.environ.items()):
            if variable.upper().startswith(ENV_PREFIX):
                self.build.variables[self._setting_of(variable, raw)] = variable
        return super().__call__()

    def _setting_of(self, variable: str, raw: str) -> str:
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        fields: Mapping[str, FieldInfo] = self.settings_cls.model_fields
        for depth, part in enumerate(parts):
            if part not in fields:
                raise ConfigError(_unknown_variable(variable, parts, depth, list(fields)))
            info = fields[part]
            fields = info.annotation.model_fields if _is_model(info.annotation) else {}
        if self.field_is_complex(info):
            try:
                json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"environment variable {variable}: a structured setting takes JSON "
                    f"(e.g. '[1, 2]' or '{{\"key\": 1}}'); {exc.msg} at character {exc.pos}"
                ) from None
        return ".".join(parts)


class Settings(BaseSettings):
    """Everything gamerec can be told. Build it with :meth:`Settings.load` for ``--config`` and
    flags; ``Settings(...)`` reads the same file and environment, its arguments lowest."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(
        default=Path("gamerec-data"), description="workspace: raw/, processed/, model/, index/"
    )
    # A top-level alias so the documented GAMEREC_STEAM_API_KEY works; copied into fetch.
    steam_api_key: SecretStr | None = Field(
        default=None, description="Steam Web API key (GAMEREC_STEAM_API_KEY)", exclude=True
    )
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    distributed: DistributedSettings = Field(default_factory=DistributedSettings)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        """``Settings(data_dir=..., train=TrainSettings(epochs=5))``; a bad value is a
        :class:`ConfigError` naming it and where it came from (not pydantic's ValidationError)."""
        # sections as dicts, so that a file or variable setting one of their fields merges
        plain: dict[str, Any] = {
            name: value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
            for name, value in values.items()
        }
        build = _BUILD.get() or _Build()
        token = _BUILD.set(build)
        try:
            super().__init__(**plain)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, build)) from None
        except SettingsError as exc:
            raise ConfigError(f"invalid settings: {exc}") from None
        finally:
            _BUILD.reset(token)
        origins = build.origins()
        self._sources = {name: origins.get(name, "default") for name in _flatten(self.model_dump())}
        for name, origin in origins.items():
            self._sources.setdefault(name, origin)
        if "steam_api_key" in origins:
            self._sources["fetch.steam_api_key"] = origins["steam_api_key"]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        build = _BUILD.get() or _Build()
        config = build.config if build.config is not None else Path(DEFAULT_CONFIG_FILE)
        layers: list[tuple[str, PydanticBaseSettingsSource]] = [  # highest precedence first
            ("flag", InitSettingsSource(settings_cls, build.flags)),
            ("torchrun", InitSettingsSource(settings_cls, launcher_values(os.environ))),
            ("env", _Environment(settings_cls, build)),
            (str(config), _TomlFile(settings_cls, config)),
            ("init", init_settings),
        ]
        return tuple(_Recorded(source, label, build) for label, source in layers)

    def model_post_init(self, context: Any, /) -> None:
        if self.steam_api_key is not None and self.fetch.steam_api_key is None:
            self.fetch.steam_api_key = self.steam_api_key

    @property
    def sources(self) -> dict[str, str]:
        """Where each setting (dotted name) came from: default, a file path, env, torchrun, flag
        or init (an argument of ``Settings(...)``)."""
        return dict(self._sources)

    @classmethod
    def load(
        cls,
        config: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Effective settings: defaults < TOML file < ``GAMEREC_*`` env < ``overrides``.

        ``overrides`` maps dotted names to values (``{"train.epochs": 3}``); ``None`` values are
        ignored, so CLI options that were not given can be passed straight through.
        """
        if config is not None and not Path(config).is_file():
            raise ConfigError(f"config file {config} does not exist; check the --config path")
        flags: dict[str, Any] = {}
        for dotted, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(flags, dotted, value)
        token = _BUILD.set(_Build(Path(config) if config is not None else None, flags))
        try:
            return cls()
        finally:
            _BUILD.reset(token)

    def to_display(self) -> list[tuple[str, Any, str]]:
        """``(name, value, source)`` rows, secrets masked, for ``gamerec config show``."""
        rows = []
        for name, value in _flatten(self.model_dump(mode="json")).items():
            if name.endswith(("api_key", "token")) and value is not None:
                value = "********"
            rows.append((name, value, self._sources.get(name, "default")))
        return rows


def _explain(exc: ValidationError, build: _Build) -> str:
    origins = build.origins()
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = ".".join(loc)
        where = _where(loc, origins, build.variables)
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting {name!r}; {_unknown_key_hint(loc)}")
        else:
            lines.append(f"{where}: invalid value for {name!r}: {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _unknown_key_hint(loc: list[str]) -> str:
    """What to do about a key no setting has: the nearest name of its table, else the names the
    table takes. (Not `gamerec config show`: it reads the same file and fails the same way.)"""
    *table, key = loc
    known = _setting_names(table)
    dotted = ".".join(table)
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"did you mean {'.'.join([*table, close[0]])!r}?"
    section = f"[{'.'.join(p for p in table if not p.isdigit())}]" if table else "the top level"
    return f"{section} takes {', '.join(known)}" if known else f"{dotted} takes no settings"


def _setting_names(table: list[str]) -> list[str]:
    """The names a table of settings takes (``["train"]``, ``["preprocess", "inputs", "0"]``)."""
    fields: Mapping[str, FieldInfo] = Settings.model_fields
    for part in table:
        if part.isdigit():  # a table of an array of tables: its items' names follow
            continue
        info = fields.get(part)
        annotation = info.annotation if info is not None else None
        model = next((a for a in (annotation, *get_args(annotation)) if _is_model(a)), None)
        if model is None:
            return []
        fields = model.model_fields
    return list(fields)


def _where(loc: list[str], origins: Mapping[str, str], variables: Mapping[str, str]) -> str:
    """The file, variable, flag or argument that gave the value at ``loc`` (or a table above)."""
    prefixes = [".".join(loc[:end]) for end in range(len(loc), 0, -1)]
    origin = "settings"
    for dotted in prefixes:
        given = [
            o for name, o in origins.items() if name == dotted or name.startswith(dotted + ".")
        ]
        if given:
            origin = origins.get(dotted, given[0])
            break
    if origin == "env":
        variable = next((variables[d] for d in prefixes if d in variables), None)
        return f"environment variable {variable or ENV_PREFIX + '*'}"
    if origin == "torchrun":
        launcher = {v: k for k, v in LAUNCHER_VARIABLES.items()}.get(loc[-1])
        if launcher:
            return f"environment variable {launcher} (set by torchrun)"
        return "environment variables RANK / WORLD_SIZE (set by torchrun)"
    return {"flag": "command-line flag", "init": "Settings() argument"}.get(origin, origin)


def _unknown_variable(variable: str, parts: list[str], depth: int, known: list[str]) -> str:
    # not `gamerec config show`: it reads the same environment and fails the same way
    close = difflib.get_close_matches(parts[depth], known, n=1)
    if close:
        hint = f"did you mean {ENV_PREFIX}{'__'.join([*parts[:depth], close[0]]).upper()}?"
    elif not known:
        above = ENV_PREFIX + "__".join(parts[:depth]).upper()
        hint = f"{above} is one value, with no settings below it"
    else:
        names = (ENV_PREFIX + "__".join([*parts[:depth], name]).upper() for name in known)
        hint = f"the settings here are {', '.join(names)}"
    return (
        f"environment variable {variable}: {'.'.join(parts)!r} is no setting; {hint} (sections "
        "nest with __, e.g. GAMEREC_TRAIN__EPOCHS); rename or unset it"
    )


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _paths_from(folder: Path, values: dict[str, Any]) -> dict[str, Any]:
    """A config file's relative paths joined to the file's folder."""
    if isinstance(values.get("data_dir"), str) and not Path(values["data_dir"]).is_absolute():
        values["data_dir"] = str(folder / values["data_dir"])
    preprocess = values.get("preprocess")
    inputs = preprocess.get("inputs") if isinstance(preprocess, dict) else None
    for spec in inputs if isinstance(inputs, list) else []:
        path = spec.get("path") if isinstance(spec, dict) else None
        if isinstance(path, str) and not Path(path).is_absolute():
            spec["path"] = str(folder / path)
    return values


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
