"""gamerec: recommend Steam games with an inductive two-tower model and FAISS."""

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
    ServerUnreachableError,
    TrainingError,
)
from gamerec.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AmbiguousNameError",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "FetchError",
    "GamerecError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "ServerUnreachableError",
    "Settings",
    "TrainingError",
    "__version__",
]
