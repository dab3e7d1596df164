"""Choose the serving score's fusion weights on the validation lists."""

import itertools

import numpy as np

from service.pipeline.fusion import fuse_scores
from training.dataset import RankingSet
from training.evaluation import ranking_report
from training.model.mmoe import SERVED_TASKS, TASKS

# Each task's weight is tried at these values; the all-zero vector is skipped.
WEIGHT_GRID = (0.0, 1.0)


def fusion_objective(report: dict[str, float]) -> float:
    """Mean of human NDCG@10 and the MRR of every behavioural task: no single goal dominates."""
    values = [report["ndcg@10"], *(report[f"{task}_mrr"] for task in SERVED_TASKS)]
    return float(np.nanmean(values))


def search_fusion_weights(validation: RankingSet, probabilities: np.ndarray) -> dict:
    """Return {"method", "weights", "objective", "tried"} for the best weight vector on validation."""
    outcomes = {task: validation.targets[:, i] for i, task in enumerate(SERVED_TASKS)}
    best_weights, best_objective, tried = None, -np.inf, 0
    for vector in itertools.product(WEIGHT_GRID, repeat=len(TASKS)):
        if not any(vector):
            continue
        weights = dict(zip(TASKS, vector, strict=True))
        scores = fuse_scores(probabilities, TASKS, weights)
        objective = fusion_objective(
            ranking_report(validation.list_ids, scores, validation.human_relevance, outcomes)
        )
        tried += 1
        if objective > best_objective:
            best_weights, best_objective = weights, objective
    return {
        "method": "weighted_log_probability",
        "weights": best_weights,
        "objective": best_objective,
        "tried": tried,
    }
