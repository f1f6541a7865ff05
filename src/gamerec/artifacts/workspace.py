"""Where each folder of a workspace (``settings.data_dir``, default ``./gamerec-data``) is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gamerec.artifacts.report import REPORT_FILE

__all__ = ["Workspace"]


@dataclass(frozen=True)
class Workspace:
    """The folders of one workspace; nothing is created until a stage writes."""

    root: Path

    @classmethod
    def at(cls, data_dir: str | Path) -> Workspace:
        return cls(Path(data_dir))

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def steamspy(self) -> Path:
        """``raw/steamspy``: ``all/page_N.json`` and ``appdetails/APPID.json``."""
        return self.raw / "steamspy"

    @property
    def store(self) -> Path:
        """``raw/store``: the Steam store's ``appdetails`` answers, ``APPID.json`` each."""
        return self.raw / "store"

    @property
    def steam(self) -> Path:
        """``raw/steam``: the Steam Web API's answers and the daily call count."""
        return self.raw / "steam"

    @property
    def owned(self) -> Path:
        return self.steam / "owned"

    @property
    def quota_file(self) -> Path:
        return self.steam / "_quota.json"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def eval_report(self) -> Path:
        return self.eval / REPORT_FILE

    @property
    def train_state(self) -> Path:
        """Where an interrupted training run keeps its last finished epoch."""
        return self.root / ".train-state"

    @property
    def train_resume_file(self) -> Path:
        return self.train_state / "state.pt"
