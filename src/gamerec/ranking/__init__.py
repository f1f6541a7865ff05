"""The one ranking engine (:mod:`gamerec.ranking.engine`) and the parts of its policy
(:mod:`gamerec.ranking.stages`): numpy only, batch-first. Recommending, batch answers,
``similar``, the re-ranker's tuning and every evaluation protocol rank through it."""

from gamerec.ranking.engine import Ranked, Ranker, RankingEngine, RankingPolicy
from gamerec.ranking.stages import CoPlay

__all__ = ["CoPlay", "Ranked", "Ranker", "RankingEngine", "RankingPolicy"]
