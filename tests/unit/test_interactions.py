"""Tests of the position-debiased interaction statistics."""

import math

import pytest

from service.features.interactions import (
    PRIOR_STRENGTH,
    InteractionStats,
    debiased_ctr,
    examination_propensity,
    pair_key,
)

# (normalized_query, product_id, position, click). The examination propensity is 1 / position.
IMPRESSIONS = [
    ("drill", "p1", 1, 1),
    ("drill", "p1", 2, 0),
    ("drill", "p2", 3, 1),
    ("saw", "p2", 1, 0),
]
# 2 clicks over examinations 1 + 1/2 + 1/3 + 1 = 17/6.
PRIOR = 12 / 17


@pytest.fixture(scope="module")
def stats() -> InteractionStats:
    return InteractionStats.from_impressions(IMPRESSIONS)


def test_prior_strength_value():
    # The hand-computed values below assume a prior of 5 examinations.
    assert PRIOR_STRENGTH == 5.0


def test_propensity_power_law():
    assert examination_propensity(1) == 1.0
    assert examination_propensity(4) == 0.25
    assert examination_propensity(4, eta=0.5) == 0.5


def test_debiased_ctr_formula():
    # (2 + 0.1 * 5) / (3 + 5)
    assert debiased_ctr(2, 3.0, 0.1) == pytest.approx(0.3125)


def test_prior_is_clicks_over_examinations(stats):
    assert stats.prior_ctr == pytest.approx(PRIOR)


def test_product_ctr_hand_computed(stats):
    # p1 has 1 click over examinations 1 + 1/2, and p2 has 1 click over 1/3 + 1.
    assert stats.product_features("p1")[0] == pytest.approx((1 + 5 * PRIOR) / (1.5 + 5))
    assert stats.product_features("p2")[0] == pytest.approx((1 + 5 * PRIOR) / (4 / 3 + 5))


def test_product_log_impressions(stats):
    assert stats.product_features("p1")[1] == pytest.approx(math.log1p(2))


def test_pair_ctr_hand_computed(stats):
    assert stats.pair_features("drill", "p2")[0] == pytest.approx((1 + 5 * PRIOR) / (1 / 3 + 5))
    assert stats.pair_features("saw", "p2")[0] == pytest.approx((0 + 5 * PRIOR) / (1 + 5))


def test_pair_log_impressions(stats):
    assert stats.pair_features("saw", "p2")[1] == pytest.approx(math.log1p(1))


def test_lower_click_counts_more():
    stats = InteractionStats.from_impressions([("q", "top", 1, 1), ("q", "third", 3, 1)])

    top_ctr = stats.product_features("top")[0]
    third_ctr = stats.product_features("third")[0]

    assert third_ctr > top_ctr


def test_eta_zero_removes_debiasing():
    stats = InteractionStats.from_impressions([("q", "top", 1, 1), ("q", "third", 3, 1)], eta=0.0)

    assert stats.product_features("third")[0] == stats.product_features("top")[0]


def test_unseen_product_gets_prior(stats):
    assert stats.product_features("missing") == (pytest.approx(PRIOR), 0.0)


def test_unseen_pair_gets_prior(stats):
    # p1 is known, but never for the query "saw".
    assert stats.pair_features("saw", "p1") == (pytest.approx(PRIOR), 0.0)


def test_empty_log_prior_zero():
    stats = InteractionStats.from_impressions([])

    assert stats.prior_ctr == 0.0
    assert stats.product_features("p1") == (0.0, 0.0)


def test_pair_key_format():
    assert pair_key("drill", "hd:1") == "drill\thd:1"


def test_without_pairs_keeps_products(stats):
    reduced = stats.without_pairs()

    assert reduced.prior_ctr == stats.prior_ctr
    assert reduced.product == stats.product
    assert reduced.query_product == {}


def test_without_pairs_gives_prior(stats):
    reduced = stats.without_pairs()

    assert reduced.pair_features("drill", "p2") == (pytest.approx(PRIOR), 0.0)


def test_bytes_round_trip(stats):
    restored = InteractionStats.from_bytes(stats.to_bytes())

    assert restored == stats
