"""Tests of graded relevance labels from clicks and encoder similarity."""

import numpy as np
import pandas as pd
import pytest

from training.labels import LabelConfig, label_score, relevance_grades, score_to_grade

# Defaults: min_impressions 5, ctr_weight 0.7, ctr_scale 0.8, cosine 0.1..0.8.
CONFIG = LabelConfig()


def _score(ctr: float, impressions: int, cosine: float) -> float:
    scores = label_score(np.array([ctr]), np.array([impressions]), np.array([cosine]), CONFIG)
    return float(scores[0])


def test_label_score_full_trust():
    # similarity (0.45 - 0.1) / 0.7 = 0.5, behaviour 0.4 / 0.8 = 0.5.
    assert _score(ctr=0.4, impressions=10, cosine=0.45) == pytest.approx(0.5)


def test_label_score_partial_trust():
    # trust 2/5, similarity 1, behaviour 0: 0.4 * (0.3 * 1) + 0.6 * 1.
    assert _score(ctr=0.0, impressions=2, cosine=0.8) == pytest.approx(0.72)


def test_label_score_no_impressions():
    # trust 0, so the score is the similarity (0.3 - 0.1) / 0.7.
    assert _score(ctr=0.9, impressions=0, cosine=0.3) == pytest.approx(2 / 7)


def test_label_score_caps_ctr():
    # behaviour min(2.0 / 0.8, 1) = 1, similarity clipped to 0.
    assert _score(ctr=2.0, impressions=5, cosine=0.0) == pytest.approx(0.7)


def test_label_score_clips_similarity():
    # cosine above the ceiling counts as similarity 1, behaviour 0.4 / 0.8.
    assert _score(ctr=0.4, impressions=5, cosine=0.95) == pytest.approx(0.7 * 0.5 + 0.3)


def test_score_to_grade_boundaries():
    scores = np.array([0.0, 0.19, 0.2, 0.39, 0.4, 0.6, 0.79, 0.8, 0.99, 1.0])

    grades = score_to_grade(scores)

    assert grades.tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4, 4]


def test_score_to_grade_dtype():
    assert score_to_grade(np.array([0.5])).dtype == np.int64


@pytest.fixture(scope="module")
def grades() -> pd.DataFrame:
    log = pd.DataFrame(
        [
            ("drill", "p1", 1, 1),
            ("drill", "p1", 2, 0),
            ("drill", "p2", 2, 1),
            ("saw", "p1", 1, 0),
        ],
        columns=["normalized_query", "product_id", "position", "click"],
    )
    cosine = {("drill", "p1"): 0.45, ("drill", "p2"): 0.8}
    return relevance_grades(log, cosine, CONFIG)


def test_grades_one_row_per_pair(grades):
    pairs = list(zip(grades["normalized_query"], grades["product_id"], strict=True))

    assert pairs == [("drill", "p1"), ("drill", "p2"), ("saw", "p1")]


def test_grades_counts(grades):
    assert grades["clicks"].tolist() == [1, 1, 0]
    assert grades["impressions"].tolist() == [2, 1, 1]
    assert grades["examinations"].tolist() == pytest.approx([1.5, 0.5, 1.0])


def test_grades_debiased_ctr(grades):
    assert grades["ctr"].tolist() == pytest.approx([2 / 3, 2.0, 0.0])


def test_grades_missing_cosine_zero(grades):
    assert grades["cosine"].tolist() == [0.45, 0.8, 0.0]


def test_grades_scores(grades):
    # drill/p1: trust 0.4, similarity 0.5, behaviour (2/3) / 0.8 = 5/6.
    drill_p1 = 0.4 * (0.7 * 5 / 6 + 0.3 * 0.5) + 0.6 * 0.5

    assert grades["score"].tolist() == pytest.approx([drill_p1, 1.0, 0.0])


def test_grades_grade_column(grades):
    assert grades["grade"].tolist() == [2, 4, 0]
