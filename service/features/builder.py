"""The ranker's tabular inputs for one (user, query) and its candidates.

Two matrices per request, rows in candidate order:

- categorical `int64 [candidates, len(CATEGORICAL_FEATURES)]`: vocabulary ids, 0 = unknown;
- continuous `float32 [candidates, len(CONTINUOUS_FEATURES)]`: raw values; the ranker graph
  standardizes them with the training set's mean and standard deviation.

The encoder's query and product embeddings are separate ranker inputs; their interactions
(cosine, element-wise product, absolute difference) are computed inside the ranker graph.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.features.attributes import CATEGORIES, ProductAttributes
from service.features.interactions import InteractionStats
from service.features.text import PREFIX_LENGTH, is_number_token, normalize_text, tokenize
from service.features.user import SEGMENTS, UserFeatures

CATEGORICAL_FEATURES: tuple[str, ...] = ("product_brand", "product_category", "user_segment")

# Grouped as in the method: text matching, product, query-product interaction statistics, user.
CONTINUOUS_FEATURES: tuple[str, ...] = (
    # text matching between the query and the title
    "query_token_count",
    "query_title_coverage",
    "title_query_coverage",
    "token_jaccard",
    "exact_phrase",
    "prefix_coverage",
    "number_match",
    "brand_in_query",
    # product
    "title_token_count",
    "title_number_count",
    # query-product interaction statistics from logged sessions
    "product_ctr",
    "product_log_impressions",
    "query_product_ctr",
    "query_product_log_impressions",
    # user, and user x product
    "user_known",
    "user_log_sessions",
    "user_click_rate",
    "user_add_to_cart_rate",
    "user_purchase_rate",
    "user_category_affinity",
    "user_brand_affinity",
)


@dataclass(frozen=True)
class Vocabularies:
    """Categorical value -> id maps; id 0 is reserved for values not in the map."""

    brands: dict[str, int]
    categories: dict[str, int]
    segments: dict[str, int]

    @classmethod
    def build(cls, brands: Sequence[str]) -> "Vocabularies":
        return cls(
            brands={brand: i + 1 for i, brand in enumerate(sorted(brands))},
            categories={category: i + 1 for i, category in enumerate(CATEGORIES)},
            segments={segment: i + 1 for i, segment in enumerate(SEGMENTS)},
        )

    def cardinalities(self) -> tuple[int, int, int]:
        """Embedding table sizes, including the unknown id 0."""
        return len(self.brands) + 1, len(self.categories) + 1, len(self.segments) + 1


@dataclass(frozen=True)
class QueryContext:
    """Query tokens, prefixes and numbers, computed once per request for the feature builder."""

    normalized: str
    tokens: tuple[str, ...]
    token_set: frozenset[str]
    prefixes: frozenset[str]
    numbers: frozenset[str]
    padded_phrase: str  # the tokens joined, with a space at both ends

    @classmethod
    def from_query(cls, query: str) -> "QueryContext":
        tokens = tuple(tokenize(query))
        return cls(
            normalized=normalize_text(query),
            tokens=tokens,
            token_set=frozenset(tokens),
            prefixes=frozenset(token[:PREFIX_LENGTH] for token in tokens),
            numbers=frozenset(token for token in tokens if is_number_token(token)),
            padded_phrase=f" {' '.join(tokens)} ",
        )


def build_features(
    user: UserFeatures,
    query: QueryContext,
    product_ids: Sequence[str],
    products: Sequence[ProductAttributes],
    stats: InteractionStats,
    vocabularies: Vocabularies,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (categorical [n, 3] int64, continuous [n, 21] float32) for n candidates.

    Built column by column: each column is one list comprehension and one numpy conversion,
    which costs about half of building the same matrix row by row in Python.
    """
    n = len(products)
    if len(product_ids) != n:
        raise ValueError(f"{len(product_ids)} product ids for {n} products")
    brands, categories = vocabularies.brands, vocabularies.categories
    categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=np.int64)
    categorical[:, 0] = [brands.get(p.brand, 0) for p in products]
    categorical[:, 1] = [categories.get(p.category, 0) for p in products]
    categorical[:, 2] = vocabularies.segments.get(user.segment, 0)

    continuous = np.empty((n, len(CONTINUOUS_FEATURES)), dtype=np.float32)
    continuous[:, 0:8] = np.array([_text_values(query, p) for p in products], dtype=np.float32).reshape(n, 8)
    continuous[:, 8] = np.log1p([p.title_token_count for p in products])
    continuous[:, 9] = [p.title_number_count for p in products]
    continuous[:, 10:12] = np.array(
        [stats.product_features(i) for i in product_ids], dtype=np.float32
    ).reshape(n, 2)
    pair_stats = [stats.pair_features(query.normalized, i) for i in product_ids]
    continuous[:, 12:14] = np.array(pair_stats, dtype=np.float32).reshape(n, 2)
    continuous[:, 14:19] = user_values(user)
    continuous[:, 19] = [user.category_affinity.get(p.category, 0.0) for p in products]
    continuous[:, 20] = [user.brand_affinity.get(p.brand, 0.0) for p in products]
    return categorical, continuous


def _text_values(query: QueryContext, product: ProductAttributes) -> tuple[float, ...]:
    title = product.token_set
    shared = len(query.token_set & title)
    query_count = max(len(query.token_set), 1)
    union = len(query.token_set | title) or 1
    return (
        math.log1p(len(query.tokens)),
        shared / query_count,
        shared / max(len(title), 1),
        shared / union,
        float(bool(query.tokens) and query.padded_phrase in product.padded_title),
        len(query.prefixes & product.token_prefixes) / max(len(query.prefixes), 1),
        len(query.numbers & title) / len(query.numbers) if query.numbers else 0.0,
        float(bool(product.brand_tokens) and product.brand_tokens <= query.token_set),
    )


def user_values(user: UserFeatures) -> tuple[float, ...]:
    return (
        float(user.known),
        math.log1p(user.sessions),
        user.click_rate,
        user.add_to_cart_rate,
        user.purchase_rate,
    )
