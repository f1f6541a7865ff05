"""Offline evaluation: the P-SG, P-LOO and P-COLD protocols, ranking metrics and baselines.

- :mod:`gamerec.evaluation.protocol`: the protocols built from ``processed/split.parquet``,
  batched full ranking of any :class:`~gamerec.ranking.scorer.Scorer` with fold-in masking, and
  bootstrap confidence intervals.
- :mod:`gamerec.evaluation.metrics`: Recall, NDCG, Precision, MAP, hit rate, coverage and
  popularity bias at several cut-offs, vectorised over users.
- :mod:`gamerec.evaluation.baselines`: popularity, item-kNN, EASE and content TF-IDF.
- :mod:`gamerec.evaluation.report`: every method evaluated on the same split, side by side.
"""
