"""Checkpoints that rebuild themselves, and torch-free exports for recommending.

``model.pt`` holds the constructor arguments (:class:`TwoTowerConfig`) next to the weights, so
:func:`load_checkpoint` needs nothing but the file. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gamerec.artifacts import FORMAT_VERSION
from gamerec.atomic import atomic_path
from gamerec.errors import ArtifactError
from gamerec.towers.features import ItemFeatures
from gamerec.towers.model import TwoTower, TwoTowerConfig

__all__ = ["export_item_embeddings", "export_user_tower", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | Path, model: TwoTower, extra: dict[str, Any] | None = None) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[TwoTower, dict[str, Any]]:
    """Rebuild the model from ``model.pt`` alone; ArtifactError if it is foreign or damaged."""
    path = Path(path)
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise ArtifactError(f"no checkpoint at {path}; run `gamerec train`") from None
    except Exception as exc:
        raise ArtifactError(
            f"{path} is not a readable gamerec checkpoint ({type(exc).__name__}); "
            "run `gamerec train` again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else None
        raise ArtifactError(
            f"{path} was written by an incompatible gamerec (format {found}, this version "
            f"reads {FORMAT_VERSION}); run `gamerec train` again"
        )
    try:
        model = TwoTower(TwoTowerConfig(**payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ArtifactError(
            f"{path} does not match this gamerec's model ({exc}); retrain"
        ) from None
    model.eval()
    return model, payload.get("extra", {})


def export_user_tower(model: TwoTower, features: ItemFeatures) -> dict[str, np.ndarray]:
    tower = model.user_tower

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(np.float32)

    return {
        "history": array(tower.history.weight),
        "preferences": array(tower.preferences.weight.T),
        "input_bias": array(tower.input_bias),
        "hidden_weight": array(tower.hidden.weight.T),
        "hidden_bias": array(tower.hidden.bias),
        "output_weight": array(tower.output.weight.T),
        "output_bias": array(tower.output.bias),
        "token_matrix": features.token_matrix.astype(np.float32),
    }


def export_item_embeddings(model: TwoTower, features: ItemFeatures) -> np.ndarray:
    device = next(model.parameters()).device
    with torch.no_grad():
        embeddings = model.item_tower(
            torch.arange(model.config.n_items, device=device),
            torch.from_numpy(features.token_matrix).to(device),
            torch.from_numpy(features.numeric).to(device),
        )
    return embeddings.cpu().numpy().astype(np.float32)
