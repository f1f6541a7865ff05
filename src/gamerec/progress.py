"""How the stages say what they are doing: one callback, and the standard ``logging`` module.

Every pipeline stage takes a :data:`Progress` callback ``(stage, message, fraction)``. A
``fraction`` (0..1) moves that stage's bar, 1.0 ends it; ``None`` is a line of its own ("train:
fitting the co-play re-ranker"), or, while the stage's bar is drawn, news for the bar (a retry).

:func:`reported` also sends each event to the ``gamerec`` logger, so a script or a notebook sees
what a terminal sees once logging is on (``logging.basicConfig(level=logging.INFO)``): lines,
the start and end of each bar, and each tenth of its way at INFO, the steps between at DEBUG
(a crawl of 1,000 apps logs about 12 lines at INFO, not 1,000).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["LOGGER_NAME", "Progress", "quiet", "reported"]

#: (stage, message, fraction done or None)
Progress = Callable[[str, str, float | None], None]

LOGGER_NAME = "gamerec"
logger = logging.getLogger(LOGGER_NAME)


def quiet(stage: str, message: str, fraction: float | None) -> None:
    """A :data:`Progress` that says nothing."""
    return None


class _Reported:
    """A :data:`Progress` that logs each event, then hands it to ``progress``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tenths: dict[str, int] = {}

    def __call__(self, stage: str, message: str, fraction: float | None) -> None:
        logger.log(self._level(stage, fraction), "%s: %s", stage, message)
        self.progress(stage, message, fraction)

    def _level(self, stage: str, fraction: float | None) -> int:
        if fraction is None:
            return logging.INFO
        if fraction >= 1.0:  # the bar ends; a later one for the stage starts afresh
            self._tenths.pop(stage, None)
            return logging.INFO
        tenth, last = int(max(fraction, 0.0) * 10), self._tenths.get(stage)
        if last is None or tenth > last:  # the bar starts, or passes another tenth
            self._tenths[stage] = tenth
            return logging.INFO
        return logging.DEBUG


def reported(progress: Progress = quiet) -> Progress:
    """``progress``, with every event also sent to the ``gamerec`` logger (once: a stage that
    calls another passes its own reporter on)."""
    return progress if isinstance(progress, _Reported) else _Reported(progress)
