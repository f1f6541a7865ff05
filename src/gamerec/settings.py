"""The one place gamerec's settings live.

Precedence, lowest first: built-in defaults < ``gamerec.toml`` in the working directory (or
``--config PATH``) < ``GAMEREC_*`` environment variables (nested with ``__``, e.g.
``GAMEREC_TRAIN__EPOCHS=5``) < command-line flags.

``Settings.load()`` builds the effective settings and remembers where every value came from
(``Settings.sources``), which is what ``gamerec config show`` prints. Only the pipeline unpacks
settings; core modules take plain arguments.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


InputKind = Literal["steam-200k", "steam-csv", "ucsd", "steamspy", "owned", "csv"]


class InputSpec(_Section):
    """One input file (or folder) for ``gamerec preprocess``."""

    kind: InputKind = Field(
        description="steam-200k | steam-csv (Steam Store Games) | ucsd (steam_games.json) | "
        "steamspy (raw/steamspy folder) | owned (GetOwnedGames JSON file or folder) | csv (generic)"
    )
    path: Path = Field(description="the file, or folder for steamspy/owned")
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
    min_user_items: int = Field(default=5, ge=1, description="drop users owning fewer games")
    min_item_users: int = Field(default=2, ge=1, description="drop games owned by fewer users")
    valid_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="share of users held out for validation"
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="share of users held out for testing"
    )
    target_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of an evaluated user's games used as targets"
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
    all_interval_s: float = Field(
        default=60.0, ge=0, description="seconds between SteamSpy request=all pages (documented)"
    )
    request_interval_s: float = Field(
        default=1.0, ge=0, description="seconds between other SteamSpy requests (documented)"
    )
    steam_interval_s: float = Field(
        default=1.0, ge=0, description="seconds between Steam Web API requests"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="per-request timeout in seconds")
    max_retries: int = Field(
        default=5, ge=0, description="retries on timeouts, connection errors, 429 and 5xx"
    )
    backoff_base_s: float = Field(default=2.0, ge=0, description="first retry delay (doubles)")
    backoff_max_s: float = Field(default=300.0, ge=0, description="longest retry delay")
    daily_limit: int = Field(default=100_000, ge=1, description="Steam Web API calls per day")
    pages: int | None = Field(
        default=None, ge=1, description="SteamSpy all pages to fetch (None: until an empty page)"
    )
    details: int = Field(
        default=1000, ge=0, description="appdetails for this many top games by owners"
    )


class TrainSettings(_Section):
    embedding_dim: int = Field(default=128, ge=2, description="output embedding size")
    hidden_dim: int = Field(default=512, ge=2, description="hidden width of the user tower")
    epochs: int = Field(default=40, ge=1, description="maximum epochs")
    patience: int = Field(default=6, ge=1, description="stop after this many epochs without gain")
    batch_size: int = Field(default=64, ge=1, description="users per batch")
    learning_rate: float = Field(default=2e-3, gt=0, description="AdamW learning rate")
    lr_decay: float = Field(
        # validation NDCG@20 is noisy epoch to epoch; halving the step on a setback settles
        # the model instead of stopping it (bundled data: 0.484 -> 0.502 on validation)
        default=0.5,
        gt=0,
        le=1,
        description="learning rate x this after an epoch without gain (1 = constant)",
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    dropout: float = Field(default=0.5, ge=0, lt=1, description="dropout in the user tower")
    temperature: float = Field(default=0.05, gt=0, description="softmax temperature on cosine")
    playtime_weight: float = Field(
        default=0.0,
        ge=0,
        description="history weight = 1 + playtime_weight * log1p(hours); 0 = ownership only",
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of a user's games held out as targets"
    )
    max_full_softmax_items: int = Field(
        # a full softmax embeds the whole catalog every batch: an epoch costs users x games
        default=10_000,
        ge=1,
        description="above this catalog size use sampled softmax with logQ correction",
    )
    sampled_negatives: int = Field(default=4096, ge=1, description="negatives per sampled batch")
    seed: int = Field(default=0, description="seed of initialisation and batching")
    rerank: bool = Field(
        default=True, description="fit the co-play re-ranker (EASE) for the second stage"
    )
    rerank_lambdas: list[float] = Field(
        default_factory=lambda: [20.0, 50.0, 100.0],
        description="re-ranker regularisations tried on the validation users",
    )
    rerank_alphas: list[float] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5],
        description="weights of the two-tower score in the blend, tried on validation users",
    )
    rerank_candidates: int = Field(
        default=200, ge=1, description="two-tower candidates the re-ranker re-orders"
    )
    rerank_max_items: int = Field(
        default=20_000, ge=1, description="skip the re-ranker above this catalog size (n x n)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="torch device")
    threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads (None: torch's default)"
    )


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
    world_size: int = Field(
        default=1, ge=1, description="number of training workers (torchrun sets WORLD_SIZE)"
    )
    local_rank: int = Field(
        default=0, ge=0, description="rank on this machine, its GPU (torchrun sets LOCAL_RANK)"
    )
    master_addr: str = Field(
        default="127.0.0.1", description="host of rank 0's rendezvous (torchrun sets MASTER_ADDR)"
    )
    master_port: int = Field(
        default=29500, ge=1, le=65535, description="its port (torchrun sets MASTER_PORT)"
    )
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
    exact_max_items: int = Field(default=100_000, ge=1, description="auto's exact-search limit")
    hnsw_m: int = Field(default=32, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(default=200, ge=8, description="HNSW build beam width")
    hnsw_ef_search: int = Field(default=256, ge=8, description="HNSW search beam width")
    ivf_nlist: int | None = Field(
        default=None, ge=1, description="IVF cells (None: about 4*sqrt(n))"
    )
    ivf_nprobe: int = Field(
        default=64, ge=1, description="IVF cells visited per query (64: recall@20 >= 0.99)"
    )
    threads: int | None = Field(
        default=None, ge=1, description="FAISS CPU threads (None: FAISS's default, all cores)"
    )


Baseline = Literal["popularity", "itemknn", "ease"]


class EvalSettings(_Section):
    protocol: Literal["sg", "loo"] = Field(default="sg", description="sg (P-SG) or loo (P-LOO)")
    k: list[int] = Field(default_factory=lambda: [10, 20, 50], description="cut-offs")
    bootstrap: int = Field(default=1000, ge=0, description="bootstrap resamples for 95% CIs")
    seed: int = Field(default=0, description="seed of the bootstrap")
    ease_max_items: int = Field(
        default=20_000, ge=1, description="EASE refuses catalogs above this (dense n x n)"
    )
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(get_args(Baseline)),
        description="baselines to evaluate",
    )
    ease_lambdas: list[float] = Field(
        default_factory=lambda: [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0],
        description="EASE L2 grid; lambda is chosen by NDCG@20 of the validation users",
    )
    itemknn_neighbors: int | None = Field(
        default=None, ge=1, description="item-kNN: keep each game's N most similar (None: all)"
    )
    batch_size: int = Field(
        default=1024, ge=1, description="users scored at once (memory: batch x games floats)"
    )


class RecommendSettings(_Section):
    top_k: int = Field(default=10, ge=1, description="recommendations per answer")
    max_top_k: int = Field(default=1000, ge=1, description="largest top_k accepted")
    rerank: bool = Field(
        default=True,
        description="re-rank the two-tower's candidates with the co-play model, if trained",
    )


class ServeSettings(_Section):
    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="port (0: any free port)")
    token: SecretStr | None = Field(
        default=None, description="bearer token required on every request but /health"
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1, description="largest request body")
    timeout_s: float = Field(default=10.0, gt=0, description="header and body read timeout")
    max_workers: int = Field(
        default=2,
        ge=1,
        description="requests computed at once per process, others wait (one lock for Python "
        "code: two is as fast as one and not stuck behind a slow request; processes add cores)",
    )
    max_connections: int = Field(
        default=256, ge=1, description="open connections at once; more get 503"
    )
    max_connections_per_client: int = Field(
        default=32,
        ge=1,
        description="open connections at once from one address (per process); at a limit an "
        "idle one is closed to make room, else 503",
    )
    drain_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, seconds to finish requests in flight"
    )
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


#: where each value being validated came from (dotted name -> origin), for error messages
_VALUE_SOURCES: ContextVar[Mapping[str, str] | None] = ContextVar("_VALUE_SOURCES", default=None)


class Settings(BaseModel):
    """Everything gamerec can be told. Build it with :meth:`Settings.load` to get provenance.

    A plain pydantic model with its own file and environment layers rather than a
    pydantic-settings ``BaseSettings``: importing pydantic-settings costs about 0.14 s, a quarter
    of the budget of a whole ``gamerec recommend`` process, for two readers this module does in
    a few lines (``_read_toml``, ``_environment_values``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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
        :class:`ConfigError` naming it, as from :meth:`load` (not pydantic's ValidationError)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, _VALUE_SOURCES.get() or {})) from None

    def model_post_init(self, context: Any, /) -> None:
        if self.steam_api_key is not None and self.fetch.steam_api_key is None:
            self.fetch.steam_api_key = self.steam_api_key

    @property
    def sources(self) -> dict[str, str]:
        """Where each setting (dotted name) came from: default, a file path, env var, or flag."""
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
        layers: list[tuple[str, dict[str, Any]]] = []
        toml_path = Path(config) if config is not None else Path(DEFAULT_CONFIG_FILE)
        if config is not None and not toml_path.is_file():
            raise ConfigError(f"config file {toml_path} does not exist; check the --config path")
        if toml_path.is_file():
            layers.append((str(toml_path), _paths_from(toml_path.parent, _read_toml(toml_path))))
        layers.append(("env", _environment_values(os.environ)))
        layers.append(("torchrun", launcher_values(os.environ)))
        flags: dict[str, Any] = {}
        for dotted, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(flags, dotted, value)
        layers.append(("flag", flags))

        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for origin, values in layers:
            _deep_merge(merged, values)
            for dotted in _leaf_names(values):
                sources[dotted] = origin
        # validation runs __init__, whose ConfigError then names the file or variable at fault
        token = _VALUE_SOURCES.set(sources)
        try:
            settings = cls.model_validate(merged)
        finally:
            _VALUE_SOURCES.reset(token)
        all_names = _leaf_names(settings.model_dump())
        settings._sources = {name: sources.get(name, "default") for name in all_names}
        for name, origin in sources.items():
            settings._sources.setdefault(name, origin)
        if "steam_api_key" in sources:
            settings._sources["fetch.steam_api_key"] = sources["steam_api_key"]
        return settings

    def to_display(self) -> list[tuple[str, Any, str]]:
        """``(name, value, source)`` rows, secrets masked, for ``gamerec config show``."""
        rows = []
        for name, value in _flatten(self.model_dump(mode="json")).items():
            if name.endswith(("api_key", "token")) and value is not None:
                value = "********"
            rows.append((name, value, self._sources.get(name, "default")))
        return rows


def _origin_label(origin: str) -> str:
    if origin == "env":
        return "an environment variable"
    if origin == "flag":
        return "a command-line flag"
    return origin


def _explain(exc: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # Find the longest dotted prefix we know the origin of.
        origin = "settings"
        for end in range(len(loc), 0, -1):
            dotted = ".".join(loc[:end])
            # the error's own name, or a table (e.g. an unknown [section]) holding given values
            given = [
                o for name, o in sources.items() if name == dotted or name.startswith(dotted + ".")
            ]
            if given:
                origin = sources.get(dotted, given[0])
                break
        name = ".".join(loc)
        if origin == "torchrun":
            variable = {v: k for k, v in LAUNCHER_VARIABLES.items()}.get(loc[-1])
            where = (
                f"environment variable {variable} (set by torchrun)"
                if variable
                else "environment variables RANK / WORLD_SIZE (set by torchrun)"
            )
        elif origin == "env":
            where = f"environment variable {ENV_PREFIX}{'__'.join(loc[:2]).upper()}"
        elif origin == "flag":
            where = "command-line flag"
        else:
            where = origin
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting {name!r}; see `gamerec config show`")
        else:
            lines.append(f"{where}: invalid value for {name!r}: {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """``GAMEREC_*`` variables as nested values: ``GAMEREC_TRAIN__EPOCHS=5`` -> train.epochs.

    Names are case-insensitive and nest with ``__``. Values of structured settings (lists,
    tables, a whole section) are JSON; the rest stay strings for validation to convert. A name
    that is no setting is an error, so a typo is not silently ignored.
    """
    values: dict[str, Any] = {}
    for variable, raw in sorted(environ.items()):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        model: Any = Settings
        for depth, part in enumerate(parts):
            field = model.model_fields.get(part) if _is_model(model) else None
            if field is None:
                raise ConfigError(
                    f"environment variable {variable}: {'.'.join(parts)!r} is no setting; "
                    "`gamerec config show` lists them (nest sections with __, e.g. "
                    "GAMEREC_TRAIN__EPOCHS)"
                )
            model = field.annotation
            if depth == len(parts) - 1:
                value: Any = raw
                if _is_structured(model):
                    try:
                        value = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        raise ConfigError(
                            f"environment variable {variable}: a structured setting takes JSON "
                            f"(e.g. '[1, 2]' or '{{\"key\": 1}}'); {exc.msg} at character "
                            f"{exc.pos}"
                        ) from None
                _set_dotted(values, ".".join(parts), value)
    return values


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_structured(annotation: Any) -> bool:
    """Lists, tuples, sets, dicts and models (alone or in a union with None) come as JSON."""
    origin = get_origin(annotation)
    if origin in (Union, type(int | None)):
        return any(_is_structured(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, tuple, set, dict) or _is_model(annotation)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or remove it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def _paths_from(folder: Path, values: dict[str, Any]) -> dict[str, Any]:
    """A config file's relative paths made relative to the file's folder, as in pyproject.toml
    or ruff.toml, so ``--config elsewhere/gamerec.toml`` means what that file says."""
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


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _leaf_names(values: Mapping[str, Any]) -> list[str]:
    return list(_flatten(values))
