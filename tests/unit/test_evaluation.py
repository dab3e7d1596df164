"""Tests of NDCG, reciprocal rank and the per-list ranking report."""

import math

import numpy as np
import pytest

from training.evaluation import (
    dcg_at_k,
    list_boundaries,
    mean_over_lists,
    ndcg_at_k,
    ranking_report,
    reciprocal_rank,
)

# Gains 3, 2, 0, 1 in score order. The ideal order is 3, 2, 1, 0.
SCORES = np.array([4.0, 3.0, 2.0, 1.0])
GAINS = np.array([3.0, 2.0, 0.0, 1.0])
DCG = 7 / math.log2(2) + 3 / math.log2(3) + 0 / math.log2(4) + 1 / math.log2(5)
IDEAL_DCG = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4) + 0 / math.log2(5)


def test_dcg_hand_computed():
    assert dcg_at_k(GAINS, 4) == pytest.approx(DCG)


def test_ndcg_hand_computed():
    assert ndcg_at_k(SCORES, GAINS, 4) == pytest.approx(DCG / IDEAL_DCG)


def test_ndcg_cut_at_k():
    # The first two candidates are already in ideal order.
    assert ndcg_at_k(SCORES, GAINS, 2) == pytest.approx(1.0)


def test_ndcg_orders_by_score():
    # Reversed scores put the gains in order 1, 0, 2, 3.
    reversed_dcg = 1 / math.log2(2) + 0 / math.log2(3) + 3 / math.log2(4) + 7 / math.log2(5)

    assert ndcg_at_k(-SCORES, GAINS, 4) == pytest.approx(reversed_dcg / IDEAL_DCG)


def test_ndcg_perfect_order_one():
    assert ndcg_at_k(np.array([0.9, 0.5, 0.1]), np.array([2.0, 1.0, 0.0]), 10) == 1.0


def test_ndcg_all_zero_none():
    assert ndcg_at_k(SCORES, np.zeros(4), 10) is None


def test_ndcg_ties_keep_input_order():
    # Equal scores: the gain 3 stays second.
    result = ndcg_at_k(np.array([1.0, 1.0]), np.array([0.0, 3.0]), 10)

    assert result == pytest.approx((7 / math.log2(3)) / 7)


def test_reciprocal_rank_first_positive():
    # Score order is index 0, 2, 1, so the only positive is ranked third.
    rank = reciprocal_rank(np.array([0.9, 0.5, 0.7]), np.array([0, 1, 0]))

    assert rank == pytest.approx(1 / 3)


def test_reciprocal_rank_no_positive():
    assert reciprocal_rank(np.array([0.9, 0.5]), np.array([0, 0])) is None


def test_reciprocal_rank_ties_stable():
    assert reciprocal_rank(np.array([1.0, 1.0, 1.0]), np.array([0, 1, 1])) == 0.5


def test_mean_skips_none():
    assert mean_over_lists([0.5, None, 1.0]) == (0.75, 2)


def test_mean_all_none_nan():
    mean, count = mean_over_lists([None, None])

    assert math.isnan(mean)
    assert count == 0


def test_list_boundaries_runs():
    slices = list_boundaries(np.array(["a", "a", "b", "c", "c", "c"]))

    assert slices == [slice(0, 2), slice(2, 3), slice(3, 6)]


def test_list_boundaries_empty():
    assert list_boundaries(np.array([])) == []


def test_list_boundaries_single_row():
    assert list_boundaries(np.array([7])) == [slice(0, 1)]


@pytest.fixture(scope="module")
def report() -> dict[str, float]:
    # List 1 is in ideal order, and list 2 puts its only relevant item last.
    return ranking_report(
        list_ids=np.array([1, 1, 1, 2, 2, 2]),
        scores=np.array([0.9, 0.8, 0.1, 0.3, 0.2, 0.1]),
        human_relevance=np.array([1.0, 0.5, 0.0, 0.0, 0.0, 1.0]),
        outcomes={"click": np.array([0, 1, 0, 0, 0, 0])},
    )


def test_report_human_ndcg(report):
    # NDCG is 1.0 for list 1 and (7 / log2(4)) / 7 = 0.5 for list 2.
    assert report["ndcg@5"] == pytest.approx(0.75)
    assert report["ndcg@10"] == pytest.approx(0.75)


def test_report_list_count(report):
    assert report["lists"] == 2


def test_report_human_mrr(report):
    # Relevant from gain 2.25: rank 1 in list 1, rank 3 in list 2.
    assert report["mrr_human"] == pytest.approx((1 + 1 / 3) / 2)


def test_report_task_mrr_skips_empty(report):
    # Only list 1 has a click, at rank 2.
    assert report["click_mrr"] == pytest.approx(0.5)
    assert report["click_lists"] == 1


def test_report_task_ndcg(report):
    assert report["click_ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_report_keys(report):
    assert set(report) == {
        "ndcg@5",
        "ndcg@10",
        "lists",
        "mrr_human",
        "click_mrr",
        "click_lists",
        "click_ndcg@10",
    }
