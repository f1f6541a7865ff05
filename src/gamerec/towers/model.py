"""The inductive two-tower model: nn.Modules only, no I/O.

The user tower reads what a user did (games with playtime weights, genre/tag preferences),
never a user ID, so a new user is embedded at request time without retraining. The item tower
reads the item ID, genres/tags and numeric metadata. Both outputs are L2-normalised; the score
is their cosine divided by a temperature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ItemTower", "TwoTower", "TwoTowerConfig", "UserTower"]


@dataclass
class TwoTowerConfig:
    n_items: int
    n_tokens: int
    n_numeric: int
    embedding_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.5
    temperature: float = 0.05
    playtime_weight: float = 0.0  # history weight = 1 + playtime_weight * log1p(hours)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class UserTower(nn.Module):
    """history (weighted bag of games) + token preferences -> unit vector."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.history = nn.EmbeddingBag(config.n_items, config.hidden_dim, mode="sum")
        self.preferences = nn.Linear(config.n_tokens, config.hidden_dim, bias=False)
        self.input_bias = nn.Parameter(torch.zeros(config.hidden_dim))
        self.dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.output = nn.Linear(config.hidden_dim, config.embedding_dim)
        nn.init.normal_(self.history.weight, std=0.02)
        nn.init.normal_(self.preferences.weight, std=0.02)

    def forward(
        self,
        indices: torch.Tensor,  # (nnz,) item_idx of every history, concatenated
        offsets: torch.Tensor,  # (B,) start of each history in `indices`
        weights: torch.Tensor,  # (nnz,) per-game weight, L2-normalised within each history
        preferences: torch.Tensor,  # (B, n_tokens) genre/tag profile
    ) -> torch.Tensor:
        bag = self.history(indices, offsets, per_sample_weights=weights)  # (B, H)
        x = torch.tanh(bag + self.preferences(preferences) + self.input_bias)
        x = torch.tanh(self.hidden(self.dropout(x)))  # (B, H)
        return F.normalize(self.output(x), dim=-1)  # (B, D)


class ItemTower(nn.Module):
    """item ID + genre/tag profile + numeric metadata -> unit vector."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.identity = nn.Embedding(config.n_items, config.embedding_dim)
        self.tokens = nn.Linear(config.n_tokens, config.embedding_dim, bias=False)
        self.numeric = nn.Linear(config.n_numeric, config.embedding_dim)
        nn.init.normal_(self.identity.weight, std=0.1)
        # Side features start silent: at random init they swamp the ID embedding and every
        # popular game looks alike; from zero they grow only as far as they help.
        nn.init.zeros_(self.tokens.weight)
        nn.init.zeros_(self.numeric.weight)
        nn.init.zeros_(self.numeric.bias)

    def forward(
        self,
        item_idx: torch.Tensor,  # (N,)
        token_matrix: torch.Tensor,  # (N, n_tokens)
        numeric: torch.Tensor,  # (N, n_numeric)
    ) -> torch.Tensor:
        x = self.identity(item_idx) + self.tokens(token_matrix) + self.numeric(numeric)
        return F.normalize(x, dim=-1)  # (N, D)


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.config = config
        self.user_tower = UserTower(config)
        self.item_tower = ItemTower(config)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, D) x (N, D) -> (B, N) cosine / temperature."""
        return users @ items.T / self.config.temperature
