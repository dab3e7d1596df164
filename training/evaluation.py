"""Ranking metrics over lists: NDCG@k with graded gains and mean reciprocal rank.

A list is one search request's candidates. NDCG uses the exponential gain 2**g - 1 and the
discount 1 / log2(rank + 1), rank 1-based; a list whose gains are all zero is skipped. MRR is
the reciprocal rank of the first candidate with a positive outcome; lists without a positive are
skipped, as per-task MRR is only defined where the task happened.
"""

from collections.abc import Iterable

import numpy as np


def dcg_at_k(gains_in_order: np.ndarray, k: int) -> float:
    top = np.asarray(gains_in_order, dtype=float)[:k]
    discounts = 1.0 / np.log2(np.arange(2, len(top) + 2))
    return float(((2.0**top - 1.0) * discounts).sum())


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int) -> float | None:
    """Return NDCG@k of ordering `gains` by descending `scores`; None when no gain is positive.

    Ties in `scores` keep the input order (a stable sort), so a constant score measures the
    order the candidates came in.
    """
    gains = np.asarray(gains, dtype=float)
    ideal = dcg_at_k(np.sort(gains)[::-1], k)
    if ideal <= 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return dcg_at_k(gains[order], k) / ideal


def reciprocal_rank(scores: np.ndarray, outcomes: np.ndarray) -> float | None:
    outcomes = np.asarray(outcomes)
    if not outcomes.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    first = int(np.flatnonzero(outcomes[order] > 0)[0])
    return 1.0 / (first + 1)


def mean_over_lists(values: Iterable[float | None]) -> tuple[float, int]:
    """Return (mean, number of lists counted), skipping lists whose value is None."""
    kept = [v for v in values if v is not None]
    return (float(np.mean(kept)) if kept else float("nan"), len(kept))


def list_boundaries(list_ids: np.ndarray) -> list[slice]:
    """Return a slice per run of equal ids; rows of one list must be contiguous."""
    list_ids = np.asarray(list_ids)
    if len(list_ids) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, list_ids[1:] != list_ids[:-1]])
    ends = np.r_[starts[1:], len(list_ids)]
    return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def ranking_report(
    list_ids: np.ndarray,
    scores: np.ndarray,
    human_relevance: np.ndarray,
    outcomes: dict[str, np.ndarray],
) -> dict[str, float]:
    """NDCG@5 and NDCG@10 against human grades, and MRR and NDCG@10 per behavioural task.

    `human_relevance` is in [0, 1]; it becomes the gain 0..3 (the Home Depot grades 1..3 and the
    CrowdFlower grades 1..4 both map onto it), and counts as relevant for `mrr_human` from 0.75.
    """
    lists = list_boundaries(list_ids)
    human_gains = 3.0 * np.asarray(human_relevance, dtype=float)
    report: dict[str, float] = {}
    for k in (5, 10):
        report[f"ndcg@{k}"], report["lists"] = mean_over_lists(
            ndcg_at_k(scores[s], human_gains[s], k) for s in lists
        )
    report["mrr_human"], _ = mean_over_lists(
        reciprocal_rank(scores[s], human_gains[s] >= 2.25) for s in lists
    )
    for task, values in outcomes.items():
        report[f"{task}_mrr"], report[f"{task}_lists"] = mean_over_lists(
            reciprocal_rank(scores[s], values[s]) for s in lists
        )
        report[f"{task}_ndcg@10"], _ = mean_over_lists(ndcg_at_k(scores[s], values[s], 10) for s in lists)
    return report
