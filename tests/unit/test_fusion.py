"""Tests of weighted log-probability score fusion."""

import math

import numpy as np
import pytest

from service.pipeline.fusion import FUSION_EPSILON, fuse_scores

TASKS = ("click", "purchase")
PROBABILITIES = np.array([[0.5, 0.1], [0.2, 0.01]], dtype=np.float32)


def test_fusion_epsilon_value():
    assert FUSION_EPSILON == 1e-6


def test_weighted_log_probability():
    scores = fuse_scores(PROBABILITIES, TASKS, {"click": 1.0, "purchase": 2.0})

    # The inputs are float32, so the expected values use the float32 probabilities.
    click = [float(np.float32(0.5)), float(np.float32(0.2))]
    purchase = [float(np.float32(0.1)), float(np.float32(0.01))]
    first = math.log(click[0] + 1e-6) + 2.0 * math.log(purchase[0] + 1e-6)
    second = math.log(click[1] + 1e-6) + 2.0 * math.log(purchase[1] + 1e-6)

    assert scores.tolist() == pytest.approx([first, second], rel=1e-12)


def test_output_float64_per_candidate():
    scores = fuse_scores(PROBABILITIES, TASKS, {"click": 1.0})

    assert scores.dtype == np.float64
    assert scores.shape == (2,)


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="refund"):
        fuse_scores(PROBABILITIES, TASKS, {"click": 1.0, "refund": 0.5})


def test_zero_weight_ignores_task():
    with_zero = fuse_scores(PROBABILITIES, TASKS, {"click": 1.0, "purchase": 0.0})
    click_only = np.log(PROBABILITIES[:, 0].astype(np.float64) + FUSION_EPSILON)

    assert with_zero.tolist() == click_only.tolist()


def test_missing_weight_counts_zero():
    missing = fuse_scores(PROBABILITIES, TASKS, {"click": 1.0})
    with_zero = fuse_scores(PROBABILITIES, TASKS, {"click": 1.0, "purchase": 0.0})

    assert missing.tolist() == with_zero.tolist()


def test_zero_probability_finite():
    scores = fuse_scores(np.array([[0.0, 1.0]]), TASKS, {"click": 1.0, "purchase": 1.0})

    assert scores.tolist() == pytest.approx([math.log(1e-6) + math.log(1.0 + 1e-6)])


def test_rare_task_reorders():
    # Equal weights: candidate 1 has the lower click rate but ten times the purchase rate.
    probabilities = np.array([[0.30, 0.001], [0.20, 0.010]])

    scores = fuse_scores(probabilities, TASKS, {"click": 1.0, "purchase": 1.0})

    assert scores[1] > scores[0]
