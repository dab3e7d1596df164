"""Tests of the ranker's categorical and continuous feature matrices."""

import math

import numpy as np
import pytest

from service.features.attributes import CATEGORIES, BrandVocabulary, describe_product
from service.features.builder import (
    CATEGORICAL_FEATURES,
    CONTINUOUS_FEATURES,
    QueryContext,
    Vocabularies,
    build_features,
)
from service.features.interactions import InteractionStats, pair_key
from service.features.user import UserFeatures

BRANDS = BrandVocabulary(["behr", "delta", "ryobi"])
# The vocabulary leaves out "ryobi", so a product whose title starts with Ryobi gets the id 0.
VOCABULARIES = Vocabularies.build(["behr", "delta"])
FAUCET_TITLE = "Delta Kitchen Faucet with Sprayer 1/2 in."
PAINT_TITLE = "Behr Premium Paint"
USER = UserFeatures(
    segment="pro",
    sessions=14.0,
    click_rate=0.31,
    add_to_cart_rate=0.08,
    purchase_rate=0.03,
    category_affinity={"plumbing": 0.42, "paint": 0.1},
    brand_affinity={"delta": 0.25, "behr": 0.9},
    known=True,
)
STATS = InteractionStats(
    prior_ctr=0.1,
    product={"p1": (0.3, 4)},
    query_product={pair_key("delta kitchen faucet 1/2", "p1"): (0.5, 2)},
)


def _column(name: str) -> int:
    return CONTINUOUS_FEATURES.index(name)


def _build(query: str, titles: list[str], user: UserFeatures = USER):
    products = [describe_product(title, BRANDS) for title in titles]
    product_ids = [f"p{i + 1}" for i in range(len(titles))]
    return build_features(user, QueryContext.from_query(query), product_ids, products, STATS, VOCABULARIES)


def _text_features(query: str, title: str) -> dict[str, float]:
    _, continuous = _build(query, [title])
    return {name: float(continuous[0, _column(name)]) for name in CONTINUOUS_FEATURES[:8]}


# Shapes and vocabularies


def test_feature_name_counts():
    assert len(CATEGORICAL_FEATURES) == 3
    assert len(CONTINUOUS_FEATURES) == 21


def test_matrix_shapes_dtypes():
    categorical, continuous = _build("delta faucet", [FAUCET_TITLE, PAINT_TITLE])

    assert categorical.shape == (2, 3)
    assert categorical.dtype == np.int64
    assert continuous.shape == (2, 21)
    assert continuous.dtype == np.float32


def test_no_candidates_empty():
    categorical, continuous = _build("delta faucet", [])

    assert categorical.shape == (0, 3)
    assert continuous.shape == (0, 21)


def test_vocabulary_cardinalities():
    # 2 brands, 15 categories, 4 segments, each plus the unknown id 0.
    assert VOCABULARIES.cardinalities() == (3, 16, 5)


def test_categorical_ids():
    categorical, _ = _build("delta faucet", [FAUCET_TITLE, PAINT_TITLE])

    # Brands are numbered alphabetically from 1, categories in CATEGORIES order, segments in
    # SEGMENTS order ("pro" is the fourth).
    assert categorical.tolist() == [
        [2, CATEGORIES.index("plumbing") + 1, 4],
        [1, CATEGORIES.index("paint") + 1, 4],
    ]


def test_unknown_brand_id_zero():
    categorical, _ = _build("drill", ["Makita Cordless Drill"])

    assert categorical[0, 0] == 0


def test_brand_outside_vocabulary_zero():
    categorical, _ = _build("drill", ["Ryobi Cordless Drill"])

    assert categorical[0, 0] == 0


# Text matching


def test_text_features_full_match():
    # Query tokens: delta, kitchen, faucet, 1/2. Title tokens: delta, kitchen, faucet, with,
    # sprayer, 1/2, in.
    features = _text_features("Delta kitchen faucet 1/2", FAUCET_TITLE)

    assert features["query_token_count"] == pytest.approx(math.log1p(4))
    assert features["query_title_coverage"] == 1.0
    assert features["title_query_coverage"] == pytest.approx(4 / 7)
    assert features["token_jaccard"] == pytest.approx(4 / 7)
    assert features["exact_phrase"] == 0.0
    assert features["prefix_coverage"] == 1.0
    assert features["number_match"] == 1.0
    assert features["brand_in_query"] == 1.0


def test_text_features_exact_phrase():
    features = _text_features("kitchen faucet", FAUCET_TITLE)

    assert features["exact_phrase"] == 1.0
    assert features["query_title_coverage"] == 1.0
    assert features["token_jaccard"] == pytest.approx(2 / 7)
    assert features["number_match"] == 0.0
    assert features["brand_in_query"] == 0.0


def test_partial_coverage_and_jaccard():
    # Shared: faucet. Union: chrome, faucet + 6 more title tokens.
    features = _text_features("chrome faucet", FAUCET_TITLE)

    assert features["query_title_coverage"] == 0.5
    assert features["token_jaccard"] == pytest.approx(1 / 8)


def test_prefix_match_plural():
    # "faucets" shares the 4-character prefix "fauc" with "faucet" but not the token.
    features = _text_features("faucets", FAUCET_TITLE)

    assert features["query_title_coverage"] == 0.0
    assert features["prefix_coverage"] == 1.0


def test_exact_phrase_whole_tokens():
    features = _text_features("saw", "Folding Sawhorse")

    assert features["exact_phrase"] == 0.0


def test_number_match_partial():
    # The query numbers are 2 and 1/2, and the title contains only 1/2.
    features = _text_features("2 in. 1/2 pipe", FAUCET_TITLE)

    assert features["number_match"] == 0.5


def test_empty_query_zero_text():
    features = _text_features("", FAUCET_TITLE)

    assert list(features.values()) == [0.0] * 8


# Product and interaction statistics


def test_product_columns():
    _, continuous = _build("delta faucet", [FAUCET_TITLE])

    assert continuous[0, _column("title_token_count")] == pytest.approx(math.log1p(7))
    assert continuous[0, _column("title_number_count")] == 1.0


def test_interaction_columns_known():
    _, continuous = _build("Delta Kitchen  Faucet 1/2", [FAUCET_TITLE])

    assert continuous[0, _column("product_ctr")] == pytest.approx(0.3)
    assert continuous[0, _column("product_log_impressions")] == pytest.approx(math.log1p(4))
    assert continuous[0, _column("query_product_ctr")] == pytest.approx(0.5)
    assert continuous[0, _column("query_product_log_impressions")] == pytest.approx(math.log1p(2))


def test_interaction_columns_unseen():
    # p2 has no statistics: prior CTR and zero impressions.
    _, continuous = _build("delta faucet", [FAUCET_TITLE, PAINT_TITLE])

    assert continuous[1, _column("product_ctr")] == pytest.approx(0.1)
    assert continuous[1, _column("product_log_impressions")] == 0.0
    assert continuous[1, _column("query_product_ctr")] == pytest.approx(0.1)
    assert continuous[1, _column("query_product_log_impressions")] == 0.0


# User


def test_user_columns_known():
    _, continuous = _build("delta faucet", [FAUCET_TITLE])

    assert continuous[0, _column("user_known")] == 1.0
    assert continuous[0, _column("user_log_sessions")] == pytest.approx(math.log1p(14))
    assert continuous[0, _column("user_click_rate")] == pytest.approx(0.31)
    assert continuous[0, _column("user_add_to_cart_rate")] == pytest.approx(0.08)
    assert continuous[0, _column("user_purchase_rate")] == pytest.approx(0.03)


def test_affinity_follows_product():
    _, continuous = _build("delta faucet", [FAUCET_TITLE, PAINT_TITLE])

    assert continuous[:, _column("user_category_affinity")].tolist() == pytest.approx([0.42, 0.1])
    assert continuous[:, _column("user_brand_affinity")].tolist() == pytest.approx([0.25, 0.9])


def test_affinity_missing_zero():
    _, continuous = _build("drill", ["Makita Cordless Drill"])

    assert continuous[0, _column("user_category_affinity")] == 0.0
    assert continuous[0, _column("user_brand_affinity")] == 0.0


def test_anonymous_user_columns():
    categorical, continuous = _build("delta faucet", [FAUCET_TITLE], user=UserFeatures())

    assert continuous[0, _column("user_known")] == 0.0
    assert continuous[0, _column("user_log_sessions")] == 0.0
    # "anonymous" is the first segment, so its id is 1, not the unknown id 0.
    assert categorical[0, 2] == 1
