"""Tests of the evaluation's per-list values, bootstrap intervals and label agreement."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from training.evaluation import ndcg_at_k
from training.experiments.statistics import (
    human_values,
    interval,
    label_agreement,
    list_queries,
    paired_delta,
    per_query_means,
)


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    grades = rng.integers(0, 4, size=12).astype(float)
    grades[0] = 3.0  # at least one relevant product
    scores = rng.permutation(12).astype(float)  # no ties: scikit-learn averages over ties

    expected = ndcg_score([2.0**grades - 1.0], [scores], k=10)

    assert ndcg_at_k(scores, grades, 10) == pytest.approx(expected)


def test_human_values_hand_computed():
    # Two lists. List 0 ranks gains 3, 0 (ideal); list 1 ranks gains 0, 3 (reversed).
    list_ids = np.array([0, 0, 1, 1])
    scores = np.array([2.0, 1.0, 2.0, 1.0])
    relevance = np.array([1.0, 0.0, 0.0, 1.0])

    values = human_values(list_ids, scores, relevance)

    assert values["ndcg@10"][0] == pytest.approx(1.0)
    assert values["ndcg@10"][1] == pytest.approx((7 / math.log2(3)) / 7)
    assert values["mrr_human"].tolist() == [1.0, 0.5]


def test_human_values_nan_without_relevant():
    values = human_values(np.array([0, 0]), np.array([1.0, 0.0]), np.array([0.0, 0.0]))

    assert np.isnan(values["ndcg@10"][0])


def test_per_query_means_group_lists():
    means = per_query_means(np.array([0.2, 0.4, np.nan, 1.0]), np.array([5, 5, 5, 7]))

    assert means.to_dict() == pytest.approx({5: 0.3, 7: 1.0})


def test_list_queries_first_row():
    assert list_queries(np.array([0, 0, 1, 2, 2]), np.array([4, 4, 9, 1, 1])).tolist() == [4, 9, 1]


def test_interval_contains_mean():
    values = pd.Series(np.random.default_rng(0).random(200))

    result = interval(values, seed=1, resamples=500)

    assert result["low"] < result["mean"] < result["high"]
    assert result["queries"] == 200


def test_interval_narrows_with_more_queries():
    rng = np.random.default_rng(0)
    small = interval(pd.Series(rng.random(30)), seed=1, resamples=500)
    large = interval(pd.Series(rng.random(3000)), seed=1, resamples=500)

    assert large["high"] - large["low"] < small["high"] - small["low"]


def test_interval_single_query_has_no_bounds():
    result = interval(pd.Series([0.5]), seed=1, resamples=100)

    assert result["mean"] == 0.5
    assert math.isnan(result["low"])


def test_paired_delta_uses_shared_queries():
    variant = pd.Series({1: 0.9, 2: 0.8, 3: 0.5})
    reference = pd.Series({1: 0.7, 2: 0.6, 4: 0.1})

    result = paired_delta(variant, reference, seed=0, resamples=200)

    assert result["mean"] == pytest.approx(0.2)
    assert result["queries"] == 2


def test_label_agreement_perfect_labels():
    judgements = pd.DataFrame(
        {
            "query": ["drill"] * 4 + ["paint"] * 3,
            "product_id": [f"p{i}" for i in range(7)],
            "relevance": [1.0, 0.5, 0.0, 0.25, 1.0, 0.0, 0.5],
        }
    )
    labels = judgements.assign(
        normalized_query=judgements["query"],
        score=judgements["relevance"],
        grade=(judgements["relevance"] * 4).astype(int),
        cosine=1.0 - judgements["relevance"],
    ).drop(columns=["query", "relevance"])

    agreement = label_agreement(labels, judgements)

    assert agreement["spearman"] == pytest.approx(1.0)
    assert agreement["kendall"] == pytest.approx(1.0)
    assert agreement["ndcg@10_label_order"] == pytest.approx(1.0)
    assert agreement["cosine_spearman"] == pytest.approx(-1.0)
    assert agreement["ndcg@10_cosine_order"] < 1.0
