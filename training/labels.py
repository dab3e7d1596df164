"""Graded relevance labels built from clicks, click positions and encoder similarity.

For each (query, product) pair of the training log:

    ctr        = debiased CTR: clicks / sum of examination propensities at the logged positions
    trust      = min(1, impressions / min_impressions)
    similarity = clip((cosine(query, title) - cosine_floor) / (cosine_ceiling - cosine_floor), 0, 1)
    score      = trust * (ctr_weight * min(ctr / ctr_scale, 1) + (1 - ctr_weight) * similarity)
                 + (1 - trust) * similarity
    grade      = min(floor(score * 5), 4)            # 0 (irrelevant) .. 4 (perfect)

Pairs seen rarely lean on the encoder; pairs seen often lean on behaviour, with the position
bias taken out. The grade is the target of the ranker's fourth, `relevance`, head.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.features.interactions import examination_propensity

N_GRADES = 5


@dataclass(frozen=True)
class LabelConfig:
    min_impressions: int = 5
    ctr_weight: float = 0.7
    ctr_scale: float = 0.8
    cosine_floor: float = 0.1
    cosine_ceiling: float = 0.8
    examination_eta: float = 1.0


def relevance_grades(
    log: pd.DataFrame, cosine: dict[tuple[str, str], float], config: LabelConfig
) -> pd.DataFrame:
    """Return one row per (normalized_query, product_id): ctr, impressions, cosine, score, grade.

    `cosine` maps (normalized_query, product_id) to the encoder cosine of query and title.
    """
    propensity = log["position"].map(lambda k: examination_propensity(int(k), config.examination_eta))
    pairs = (
        log.assign(examination=propensity)
        .groupby(["normalized_query", "product_id"], as_index=False, sort=True)
        .agg(clicks=("click", "sum"), impressions=("click", "size"), examinations=("examination", "sum"))
    )
    pairs["ctr"] = pairs["clicks"] / pairs["examinations"]
    keys = zip(pairs["normalized_query"], pairs["product_id"], strict=True)
    pairs["cosine"] = [cosine.get(key, 0.0) for key in keys]
    pairs["score"] = label_score(
        pairs["ctr"].to_numpy(), pairs["impressions"].to_numpy(), pairs["cosine"].to_numpy(), config
    )
    pairs["grade"] = score_to_grade(pairs["score"].to_numpy())
    return pairs


def label_score(
    ctr: np.ndarray, impressions: np.ndarray, cosine: np.ndarray, config: LabelConfig
) -> np.ndarray:
    trust = np.minimum(1.0, impressions / config.min_impressions)
    span = config.cosine_ceiling - config.cosine_floor
    similarity = np.clip((cosine - config.cosine_floor) / span, 0.0, 1.0)
    behaviour = np.minimum(ctr / config.ctr_scale, 1.0)
    blended = config.ctr_weight * behaviour + (1.0 - config.ctr_weight) * similarity
    return trust * blended + (1.0 - trust) * similarity


def score_to_grade(score: np.ndarray) -> np.ndarray:
    return np.minimum(np.floor(np.asarray(score) * N_GRADES), N_GRADES - 1).astype(np.int64)
