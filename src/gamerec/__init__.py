"""gamerec: recommend Steam games with an inductive two-tower model and FAISS.

    settings = gamerec.Settings.load()
    gamerec.preprocess(settings); gamerec.train(settings); gamerec.build_index(settings)
    gamerec.Recommender.from_dir(settings.data_dir).recommend(played={620: 1200})

The settings, the stage functions and the Recommender load on first use, so ``import gamerec``
(and ``gamerec --help``) stays light: pydantic and pydantic-settings are read when the settings
are first needed.
"""

from typing import TYPE_CHECKING, Any

from gamerec.errors import (
    AmbiguousNameError,
    ArtifactError,
    ConfigError,
    DataError,
    FetchError,
    GamerecError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RequestError,
    ServerUnreachableError,
    StorageError,
    TrainingError,
    UsageError,
)

if TYPE_CHECKING:
    from gamerec.dataio.history import History
    from gamerec.pipeline import (
        build_index,
        demo,
        evaluate,
        fetch_owned,
        fetch_steamspy,
        preprocess,
        recommend_all,
        train,
    )
    from gamerec.runtime.recommender import Recommendation, Recommendations, Recommender
    from gamerec.settings import Settings

__version__ = "0.1.0"

_LAZY = {
    "History": "gamerec.dataio.history",
    "Recommendation": "gamerec.runtime.recommender",
    "Recommendations": "gamerec.runtime.recommender",
    "Recommender": "gamerec.runtime.recommender",
    "Settings": "gamerec.settings",
    "build_index": "gamerec.pipeline",
    "demo": "gamerec.pipeline",
    "evaluate": "gamerec.pipeline",
    "fetch_owned": "gamerec.pipeline",
    "fetch_steamspy": "gamerec.pipeline",
    "preprocess": "gamerec.pipeline",
    "recommend_all": "gamerec.pipeline",
    "train": "gamerec.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gamerec' has no attribute {name!r}")


__all__ = [
    "AmbiguousNameError",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "FetchError",
    "GamerecError",
    "History",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "RequestError",
    "ServerUnreachableError",
    "Settings",
    "StorageError",
    "TrainingError",
    "UsageError",
    "__version__",
    "build_index",
    "demo",
    "evaluate",
    "fetch_owned",
    "fetch_steamspy",
    "preprocess",
    "recommend_all",
    "train",
]
