"""The array path (`CatalogColumns`) must give exactly what `build_features` gives."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.features.attributes import BrandVocabulary, describe_product
from service.features.builder import QueryContext, Vocabularies, build_features
from service.features.columns import CatalogColumns, RaggedIds
from service.features.interactions import InteractionStats, pair_key
from service.features.user import SEGMENTS, UserFeatures

# Brands, departments, sizes, repeated words and a word no title contains ("zebra").
WORDS = ("delta", "behr", "ryobi", "faucet", "paint", "drill", "drills", "1/2", "2.5", "in.", "white", "led")
QUERY_WORDS = (*WORDS, "zebra", "12-gauge")
BRANDS = BrandVocabulary(["delta", "behr", "ryobi drill"])
VOCABULARIES = Vocabularies.build(["delta", "behr"])  # "ryobi drill" left out: id 0

titles = st.lists(st.sampled_from(WORDS), min_size=0, max_size=8).map(" ".join)
queries = st.lists(st.sampled_from(QUERY_WORDS), min_size=1, max_size=5).map(" ".join)
affinity = st.floats(0.0, 1.0, allow_nan=False)
users = st.builds(
    UserFeatures,
    segment=st.sampled_from(SEGMENTS),
    sessions=st.floats(0, 100),
    click_rate=affinity,
    add_to_cart_rate=affinity,
    purchase_rate=affinity,
    category_affinity=st.dictionaries(st.sampled_from(("plumbing", "paint", "tools", "garden")), affinity),
    brand_affinity=st.dictionaries(st.sampled_from(("delta", "behr", "ryobi drill", "acme")), affinity),
    known=st.booleans(),
)


def _stats(product_ids: list[str], query: str, rng: np.random.Generator) -> InteractionStats:
    """Statistics for some of the products, and for some pairs with this query and another one."""
    normalized = QueryContext.from_query(query).normalized
    chosen = [p for p in product_ids if rng.random() < 0.5]
    return InteractionStats(
        prior_ctr=0.07,
        product={p: (float(rng.random()), int(rng.integers(1, 50))) for p in chosen},
        query_product={
            **{pair_key(normalized, p): (float(rng.random()), int(rng.integers(1, 9))) for p in chosen[::2]},
            pair_key("other query", product_ids[0]): (0.9, 3),
        },
    )


@settings(max_examples=150, deadline=None)
@given(
    catalog_titles=st.lists(titles, min_size=1, max_size=12),
    query=queries,
    user=users,
    seed=st.integers(0, 2**32 - 1),
)
def test_columns_equal_the_per_product_builder(catalog_titles, query, user, seed):
    rng = np.random.default_rng(seed)
    product_ids = [f"p\t{i}" if i % 3 == 0 else f"p{i}" for i in range(len(catalog_titles))]
    attributes = [describe_product(title, BRANDS) for title in catalog_titles]
    stats = _stats(product_ids, query, rng)
    columns = CatalogColumns.build(product_ids, attributes, stats, VOCABULARIES)
    rows = rng.integers(0, len(product_ids), size=int(rng.integers(1, 20)))
    context = QueryContext.from_query(query)

    expected = build_features(
        user, context, [product_ids[r] for r in rows], [attributes[r] for r in rows], stats, VOCABULARIES
    )
    categorical, continuous = columns.features(user, context, rows, VOCABULARIES)

    np.testing.assert_array_equal(categorical, expected[0])
    np.testing.assert_array_equal(continuous, expected[1])


def test_ragged_gather_follows_the_requested_rows():
    ragged = RaggedIds.build([[5, 6], [], [7], [8, 9, 10]])
    values, owners = ragged.gather(np.array([3, 1, 0, 0]))
    assert values.tolist() == [8, 9, 10, 5, 6, 5, 6]
    assert owners.tolist() == [0, 0, 0, 2, 2, 3, 3]
    assert ragged.count_members(np.array([3, 2, 1]), np.array([9, 7, 42])).tolist() == [1.0, 1.0, 0.0]


def test_exact_phrase_needs_the_tokens_in_order():
    attributes = [describe_product(t, BRANDS) for t in ("white led paint", "paint led white")]
    columns = CatalogColumns.build(["a", "b"], attributes, InteractionStats(), VOCABULARIES)
    _, continuous = columns.features(
        UserFeatures(), QueryContext.from_query("LED Paint"), np.array([0, 1]), VOCABULARIES
    )
    assert continuous[:, 4].tolist() == [1.0, 0.0]
