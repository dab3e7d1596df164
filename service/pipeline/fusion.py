"""Score fusion: one ranking score from the per-task probabilities.

score = sum over tasks t of w_t * log(p_t + FUSION_EPSILON), a weighted product of the
probabilities. Working in log space keeps a rare task (purchase, p ~ 0.01) from being drowned by
a frequent one (click, p ~ 0.3) at equal weights. The weights come from the bundle's manifest.
"""

from collections.abc import Mapping, Sequence

import numpy as np

FUSION_EPSILON = 1e-6


def fuse_scores(probabilities: np.ndarray, tasks: Sequence[str], weights: Mapping[str, float]) -> np.ndarray:
    """Return float64 [candidates] scores from probabilities [candidates, tasks]."""
    unknown = set(weights) - set(tasks)
    if unknown:
        raise ValueError(f"fusion weights name unknown tasks {sorted(unknown)}; tasks are {list(tasks)}")
    vector = np.array([weights.get(task, 0.0) for task in tasks], dtype=np.float64)
    return np.log(probabilities.astype(np.float64) + FUSION_EPSILON) @ vector
