"""Per-query metric values, bootstrap confidence intervals and relevance-label agreement.

Metric values are computed per list with `training.evaluation`, which the tests check against
hand-computed cases and scikit-learn's `ndcg_score`. They are averaged per query, because lists
of one query share its judgements and are not independent. The 95 % interval of the mean over
queries comes from `scipy.stats.bootstrap` (percentile method).
"""

import numpy as np
import pandas as pd
from scipy import stats

from service.features.text import normalize_text
from training.evaluation import list_boundaries, ndcg_at_k, reciprocal_rank

HUMAN_METRICS = ("ndcg@5", "ndcg@10", "mrr_human")
# Human grades in [0, 1] become gains 0..3; a product counts as relevant for MRR from 0.75.
GAIN_SCALE = 3.0
RELEVANT_FROM = 0.75


def human_values(list_ids: np.ndarray, scores: np.ndarray, human_relevance: np.ndarray) -> dict:
    """Return per-list NDCG@5, NDCG@10 and MRR against human grades; NaN where undefined."""
    gains = GAIN_SCALE * np.asarray(human_relevance, dtype=float)
    values: dict[str, list] = {name: [] for name in HUMAN_METRICS}
    for rows in list_boundaries(list_ids):
        values["ndcg@5"].append(ndcg_at_k(scores[rows], gains[rows], 5))
        values["ndcg@10"].append(ndcg_at_k(scores[rows], gains[rows], 10))
        values["mrr_human"].append(reciprocal_rank(scores[rows], gains[rows] >= GAIN_SCALE * RELEVANT_FROM))
    return {
        name: np.array([np.nan if x is None else x for x in v], dtype=float) for name, v in values.items()
    }


def list_queries(list_ids: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    """Return the query row of each list, in list order."""
    return np.array([query_rows[rows.start] for rows in list_boundaries(list_ids)])


def per_query_means(values: np.ndarray, queries: np.ndarray) -> pd.Series:
    """Mean per query of per-list values, NaN lists left out; queries without a value dropped."""
    frame = pd.DataFrame({"query": queries, "value": values}).dropna()
    return frame.groupby("query")["value"].mean()


def interval(per_query: pd.Series, seed: int, resamples: int) -> dict:
    """Return the mean over queries with its 95 % bootstrap interval."""
    values = per_query.to_numpy(float)
    if len(values) < 2:
        mean = float(values.mean()) if len(values) else float("nan")
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "queries": len(values)}
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return {
        "mean": float(values.mean()),
        "low": float(result.confidence_interval.low),
        "high": float(result.confidence_interval.high),
        "queries": len(values),
    }


def paired_delta(variant: pd.Series, reference: pd.Series, seed: int, resamples: int) -> dict:
    """Mean over shared queries of (variant - reference), with its 95 % bootstrap interval."""
    shared = variant.index.intersection(reference.index)
    return interval(variant[shared] - reference[shared], seed, resamples)


def label_agreement(labels: pd.DataFrame, judgements: pd.DataFrame) -> dict:
    """Agreement of generated relevance labels with the human grades of the same pairs.

    Spearman and Kendall rank correlation of the label score with the human grade over all
    pairs, and the mean NDCG@10 (human gains) of each query's products ordered by label score.
    """
    human = judgements.assign(normalized_query=judgements["query"].map(normalize_text))
    merged = labels.merge(
        human[["normalized_query", "product_id", "relevance"]], on=["normalized_query", "product_id"]
    )
    if len(merged) < 3:
        return {"pairs": len(merged)}
    ndcg = [
        ndcg_at_k(group["score"].to_numpy(), GAIN_SCALE * group["relevance"].to_numpy(), 10)
        for _, group in merged.groupby("normalized_query")
    ]
    ndcg_cosine = [
        ndcg_at_k(group["cosine"].to_numpy(), GAIN_SCALE * group["relevance"].to_numpy(), 10)
        for _, group in merged.groupby("normalized_query")
    ]
    return {
        "pairs": len(merged),
        "spearman": float(stats.spearmanr(merged["score"], merged["relevance"]).statistic),
        "kendall": float(stats.kendalltau(merged["score"], merged["relevance"]).statistic),
        "grade_spearman": float(stats.spearmanr(merged["grade"], merged["relevance"]).statistic),
        "cosine_spearman": float(stats.spearmanr(merged["cosine"], merged["relevance"]).statistic),
        "ndcg@10_label_order": float(np.nanmean([np.nan if v is None else v for v in ndcg])),
        "ndcg@10_cosine_order": float(np.nanmean([np.nan if v is None else v for v in ndcg_cosine])),
    }
