"""The resumable crawl both fetchers share: one request per item, one file per answer.

A crawl skips every item whose answer an earlier run saved, and every item an earlier run
learnt does not exist (an appid SteamSpy does not know, a private Steam profile); it fetches
the rest one by one under a :class:`~gamerec.dataio.http_client.FailureBudget`, keeping each
answer atomically as it arrives, so that Ctrl-C, a crash or a rate limit loses nothing.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from gamerec.atomic import atomic_write_bytes, atomic_write_json
from gamerec.dataio.files import read_bytes
from gamerec.dataio.http_client import (
    FailureBudget,
    Fetched,
    PoliteClient,
    ProgressFn,
    retries_reported,
)
from gamerec.errors import DataError, FetchError, RateLimitError

__all__ = ["CrawlSummary", "ItemList", "SavedAnswers", "crawl_items", "read_json_or_none"]

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class ItemList:
    """A state file ``{key: [item, ...]}`` that remembers items between runs; ``label``
    describes them in progress messages (e.g. "known private")."""

    file: str
    key: str
    item_type: type
    label: str

    def read(self, directory: Path) -> set[Any]:
        """The items listed (of the right type); none if the file is missing or damaged."""
        state = read_json_or_none(directory / self.file)
        items = state.get(self.key) if isinstance(state, dict) else None
        if not isinstance(items, list):
            return set()
        return {item for item in items if type(item) is self.item_type}

    def write(self, directory: Path, items: set[Any]) -> None:
        atomic_write_json(directory / self.file, {self.key: sorted(items)})


class SavedAnswers(ABC, Generic[Key]):
    """A folder of answers, ``ITEM.json`` each, and a state file listing the missing items.

    Subclasses say which answers are complete, which say the item is missing, and how to
    describe one in progress messages.
    """

    stage: ClassVar[str]  # what is crawled, e.g. "steam libraries"
    missing_list: ClassVar[ItemList]  # where the items found missing are remembered

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.missing: set[Key] = self.missing_list.read(directory)

    @abstractmethod
    def is_complete(self, item: Key, data: Any) -> bool:
        """``data``, read back from a saved file, is a whole answer for ``item``."""

    @abstractmethod
    def says_missing(self, data: Any) -> bool:
        """The answer says the item does not exist or is not shown."""

    @abstractmethod
    def describe(self, item: Key, data: Any, missing: bool) -> str:
        """One progress line about the answer for ``item``."""

    def is_saved(self, item: Key) -> bool:
        for name in (f"{item}.json", f"{item}.json.gz"):
            path = self.directory / name
            if path.is_file() and self.is_complete(item, read_json_or_none(path)):
                return True
        return False

    def store(self, item: Key, answer: Fetched) -> bool:
        """Keep ``answer``; True when it says the item is missing."""
        if self.says_missing(answer.data):
            self.missing.add(item)
            self.missing_list.write(self.directory, self.missing)
            return True
        atomic_write_bytes(self.directory / f"{item}.json", answer.body)
        return False


def read_json_or_none(path: Path) -> Any:
    """The parsed file, or None if it is missing, unreadable, not JSON or nested too deeply."""
    try:
        return json.loads(read_bytes(path))
    except (DataError, ValueError, RecursionError):
        return None


@dataclass
class CrawlSummary(Generic[Key]):
    """How the distinct requested items of a crawl were partitioned."""

    requested: list[Key]
    skipped: list[Key] = field(default_factory=list)  # saved by an earlier run
    known_missing: list[Key] = field(default_factory=list)  # found missing by an earlier run
    fetched: list[Key] = field(default_factory=list)
    newly_missing: list[Key] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # str(item) -> why

    @property
    def missing(self) -> list[Key]:
        return self.known_missing + self.newly_missing

    def counts(self, missing_name: str) -> dict[str, Any]:
        """The summary as the fetch commands report it; ``missing_name`` names the missing."""
        return {
            "requested": len(self.requested),
            "fetched": len(self.fetched),
            "skipped": len(self.skipped),
            missing_name: len(self.missing),
            "failed": self.failed,
        }


def crawl_items(
    items: Sequence[Key],
    saved: SavedAnswers[Key],
    fetch: Callable[[Key], Fetched],
    http: PoliteClient,
    progress: ProgressFn,
) -> CrawlSummary[Key]:
    """Fetch each item not saved before and not known to be missing, into ``saved``.

    A failed item is recorded under ``failed`` and the crawl goes on, within a
    :class:`~gamerec.dataio.http_client.FailureBudget`; a rate limit stops it, saying how much
    is saved and what remains.
    """
    stage = saved.stage
    summary = CrawlSummary(list(dict.fromkeys(items)))
    summary.known_missing = [item for item in summary.requested if item in saved.missing]
    missing = set(summary.known_missing)
    summary.skipped = [i for i in summary.requested if i not in missing and saved.is_saved(i)]
    done_before = missing | set(summary.skipped)
    todo = [item for item in summary.requested if item not in done_before]
    if done_before:
        progress(
            stage,
            f"{len(summary.skipped):,} already saved, {len(missing):,} {saved.missing_list.label}; "
            f"{len(todo):,} to fetch",
            0.0 if todo else 1.0,
        )
    budget = FailureBudget()
    with retries_reported(http, progress, stage):
        for done, item in enumerate(todo, start=1):
            try:
                answer = fetch(item)
            except RateLimitError as error:
                raise RateLimitError(
                    f"{error.message} ({len(summary.fetched):,} {stage} fetched in this run "
                    f"are saved; {len(todo) - done + 1:,} remain)"
                ) from None
            except FetchError as error:
                budget.failed(error)
                summary.failed[str(item)] = error.message
                continue
            budget.succeeded()
            is_missing = saved.store(item, answer)
            (summary.newly_missing if is_missing else summary.fetched).append(item)
            message = saved.describe(item, answer.data, is_missing)
            progress(stage, f"{message} ({done:,}/{len(todo):,})", done / len(todo))
    budget.finish()
    return summary
