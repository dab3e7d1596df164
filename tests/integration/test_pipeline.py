"""The ranking pipeline in process, with the real ONNX sessions of the test bundle."""

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import pytest

from service.engines.bundle import load_bundle
from service.engines.query_cache import QueryEmbeddingCache
from service.engines.user_store import FEATURE_STORE_TIMEOUT, SnapshotUserStore
from service.features.builder import CONTINUOUS_FEATURES, QueryContext, build_features
from service.pipeline.candidates import Candidate, gather_products, product_features
from service.pipeline.rank import (
    DEADLINE_EXCEEDED,
    ENCODER_FAILED,
    RANKER_FAILED,
    UNKNOWN_PRODUCT,
    RankingPipeline,
)
from service.pipeline.timing import STAGES


@pytest.fixture(scope="module")
def bundle(models_dir):
    return load_bundle(models_dir, None, "cpu", 1)


@pytest.fixture(scope="module")
def pipeline(bundle):
    executor = ThreadPoolExecutor(max_workers=1)
    yield RankingPipeline(SnapshotUserStore(bundle.user_snapshot), executor, lambda: nullcontext(bundle))
    executor.shutdown()


def rank(pipeline, query, candidates, user_id=None, top_k=None, explain=False):
    return asyncio.run(pipeline.rank(query, candidates, user_id, top_k, explain))


def some_products(bundle, n, start=0):
    return [Candidate(p) for p in list(bundle.catalog.index)[start : start + n]]


def test_ranked_list_is_permutation(pipeline, bundle):
    candidates = some_products(bundle, 30)

    result = rank(pipeline, "cordless drill", candidates)

    assert sorted(i["product_id"] for i in result.items) == sorted(c.product_id for c in candidates)
    assert [i["rank"] for i in result.items] == list(range(1, 31))


def test_scores_descend(pipeline, bundle):
    result = rank(pipeline, "white paint", some_products(bundle, 40))
    scores = [i["score"] for i in result.items]

    assert scores == sorted(scores, reverse=True)


def test_order_ignores_candidate_order(pipeline, bundle):
    candidates = some_products(bundle, 25)
    shuffled = list(np.random.default_rng(3).permutation(candidates))

    first = rank(pipeline, "copper pipe", candidates)
    second = rank(pipeline, "copper pipe", shuffled)

    assert [i["product_id"] for i in first.items] == [i["product_id"] for i in second.items]


def test_equal_scores_break_by_product_id(pipeline):
    # Three unknown untitled products get identical features, hence identical scores.
    candidates = [Candidate("zz-3"), Candidate("zz-1"), Candidate("zz-2")]

    result = rank(pipeline, "drill", candidates)

    assert [i["product_id"] for i in result.items] == ["zz-1", "zz-2", "zz-3"]


def test_top_k_truncates(pipeline, bundle):
    full = rank(pipeline, "lawn mower", some_products(bundle, 20))
    top = rank(pipeline, "lawn mower", some_products(bundle, 20), top_k=5)

    assert [i["product_id"] for i in top.items] == [i["product_id"] for i in full.items[:5]]


def test_task_scores_are_probabilities(pipeline, bundle):
    result = rank(pipeline, "door hinge", some_products(bundle, 10))

    for item in result.items:
        assert set(item["task_scores"]) == {"click", "add_to_cart", "purchase"}
        assert all(0.0 <= p <= 1.0 for p in item["task_scores"].values())


def test_titles_past_limit_ignore_candidate_order(pipeline):
    # One more titled new product than RANKER_MAX_NEW_TITLES (8): which one loses its text must
    # not depend on where it was sent.
    titles = [
        "Cordless Drill",
        "Hammer Drill Kit",
        "Drill Bit Set",
        "Impact Driver",
        "Socket Set",
        "Paint Roller",
        "Copper Pipe",
        "LED Bulb",
        "Garden Hose",
    ]
    candidates = [Candidate(f"new-{i}", title) for i, title in enumerate(titles)]

    forward = rank(pipeline, "cordless drill", candidates)
    backward = rank(pipeline, "cordless drill", candidates[::-1])

    assert [(i["product_id"], i["score"]) for i in forward.items] == [
        (i["product_id"], i["score"]) for i in backward.items
    ]
    assert forward.degraded_reasons == [UNKNOWN_PRODUCT]


def test_invisible_title_counts_as_untitled(pipeline, bundle):
    result = rank(pipeline, "drill", [*some_products(bundle, 3), Candidate("new-z", "\u200b\u0000 ")])

    assert result.degraded_reasons == [UNKNOWN_PRODUCT]


def test_unknown_titled_product_embedded(pipeline, bundle):
    known = some_products(bundle, 5)
    titled = Candidate("new-sku", "Cordless Hammer Drill Kit with 2 Batteries")

    result = rank(pipeline, "hammer drill", [*known, titled])

    assert UNKNOWN_PRODUCT not in result.degraded_reasons
    assert "new-sku" in {i["product_id"] for i in result.items}


def test_array_features_equal_the_builder_on_the_catalog(bundle):
    """The service's array path against the per-product definition, on the real catalog, real
    logged queries (with their query-product statistics), every user of the snapshot and a new
    product described from its request title."""
    rng = np.random.default_rng(11)
    product_ids = bundle.catalog.product_ids
    logged_queries = sorted({key.partition("\t")[0] for key in bundle.stats.query_product})
    users = list(bundle.user_snapshot.values())
    logged_pairs = 0
    for query in [*rng.choice(logged_queries, 20), "3/4 in. x 10 ft. copper pipe", "zzz unknown words"]:
        logged_rows = bundle.columns.pairs.get(str(query), (np.array([], dtype=np.int64),))[0][:10]
        others = rng.choice(len(product_ids), 60, replace=False)
        picked = np.concatenate([logged_rows, others[~np.isin(others, logged_rows)]])
        candidates = [Candidate(product_ids[r]) for r in picked]
        candidates.append(Candidate("new-sku", "Milwaukee M18 Cordless Drill 1/2 in."))
        context = QueryContext.from_query(str(query))
        user = users[int(rng.integers(len(users)))]
        products = gather_products(bundle, candidates)
        attributes = [bundle.catalog.attributes[r] for r in picked] + list(products.new_products.values())

        categorical, continuous = product_features(bundle, user, context, candidates, products)

        expected = build_features(
            user, context, [c.product_id for c in candidates], attributes, bundle.stats, bundle.vocabularies
        )
        np.testing.assert_array_equal(categorical, expected[0])
        np.testing.assert_array_equal(continuous, expected[1])
        logged_pairs += int(
            np.count_nonzero(expected[1][:, CONTINUOUS_FEATURES.index("query_product_log_impressions")])
        )
    assert logged_pairs > 0  # the query-product columns were exercised, not only their defaults


def test_unknown_untitled_product_flagged(pipeline, bundle):
    result = rank(pipeline, "hammer drill", [*some_products(bundle, 5), Candidate("mystery")])

    assert result.degraded_reasons == [UNKNOWN_PRODUCT]


def test_title_changes_unknown_score(pipeline, bundle):
    relevant = rank(pipeline, "hammer drill", [Candidate("n1", "DEWALT 20-Volt Cordless Hammer Drill")])
    unrelated = rank(pipeline, "hammer drill", [Candidate("n1", "Vinyl Shower Curtain Liner in White")])

    assert relevant.items[0]["score"] > unrelated.items[0]["score"]


def test_missing_user_flagged(pipeline, bundle):
    result = rank(pipeline, "drill", some_products(bundle, 3), user_id="no-such-user")

    assert result.degraded_reasons == ["user_not_found"]


def test_known_user_not_flagged(pipeline, bundle):
    user_id = next(iter(bundle.user_snapshot))

    result = rank(pipeline, "drill", some_products(bundle, 3), user_id=user_id)

    assert result.degraded_reasons == []


def test_explain_lists_features(pipeline, bundle):
    result = rank(pipeline, "drill", some_products(bundle, 3), explain=True)
    explanation = result.items[0]["explanation"]

    assert set(explanation["task_probabilities"]) == {"click", "add_to_cart", "purchase", "relevance"}
    assert "query_title_coverage" in explanation["continuous"]
    assert "product_brand" in explanation["categorical"]


def test_stage_timings_recorded(pipeline, bundle):
    result = rank(pipeline, "drill", some_products(bundle, 3))

    assert list(result.timer.seconds) == list(STAGES)
    assert all(seconds >= 0 for seconds in result.timer.seconds.values())


def test_query_cache_hit_same_scores(bundle):
    executor = ThreadPoolExecutor(max_workers=1)
    cached = RankingPipeline(
        SnapshotUserStore({}), executor, lambda: nullcontext(bundle), QueryEmbeddingCache(10)
    )
    candidates = some_products(bundle, 20)

    first = rank(cached, "Cordless  Drill", candidates)
    second = rank(cached, "cordless drill", candidates)
    executor.shutdown()

    assert first.query_cache_hit is False
    assert second.query_cache_hit is True
    assert [i["score"] for i in first.items] == [i["score"] for i in second.items]


def test_new_titles_capped(bundle):
    executor = ThreadPoolExecutor(max_workers=1)
    capped = RankingPipeline(
        SnapshotUserStore({}), executor, lambda: nullcontext(bundle), None, max_new_titles=1
    )
    candidates = [Candidate("new-1", "Cordless Drill"), Candidate("new-2", "Hammer Drill Kit")]

    result = rank(capped, "drill", candidates)
    executor.shutdown()

    assert result.degraded_reasons == [UNKNOWN_PRODUCT]


def test_blank_title_counts_as_untitled(pipeline):
    result = rank(pipeline, "drill", [Candidate("new-1", "   ")])

    assert result.degraded_reasons == [UNKNOWN_PRODUCT]


class FailingEncoder:
    """Stands in for the query encoder (a seam) to play an ONNX Runtime failure."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension

    def embed(self, texts):
        raise RuntimeError("encoder session failed")


class FailingRanker:
    def __init__(self, tasks) -> None:
        self.tasks = tasks

    def score(self, *inputs):
        raise RuntimeError("ranker session failed")


def pipeline_for(bundle, **options):
    executor = ThreadPoolExecutor(max_workers=1)
    return RankingPipeline(SnapshotUserStore({}), executor, lambda: nullcontext(bundle), **options)


def test_encoder_failure_ranks_without_text(bundle):
    broken = dataclasses.replace(bundle, encoder=FailingEncoder(bundle.encoder.dimension))
    candidates = some_products(bundle, 20)

    result = rank(pipeline_for(broken), "cordless drill", candidates)

    assert result.degraded_reasons == [ENCODER_FAILED]
    assert sorted(i["product_id"] for i in result.items) == sorted(c.product_id for c in candidates)
    assert all(i["score"] is not None for i in result.items)


def test_ranker_failure_returns_input_order(bundle):
    broken = dataclasses.replace(bundle, ranker=FailingRanker(bundle.ranker.tasks))
    candidates = some_products(bundle, 20)

    result = rank(pipeline_for(broken), "cordless drill", candidates, top_k=5)

    assert result.degraded_reasons == [RANKER_FAILED]
    assert [i["product_id"] for i in result.items] == [c.product_id for c in candidates[:5]]
    assert all(i["score"] is None and i["task_scores"] == {} for i in result.items)


def test_deadline_passed_returns_input_order(bundle):
    candidates = some_products(bundle, 200)

    result = rank(pipeline_for(bundle, deadline_seconds=1e-6), "cordless drill", candidates)

    assert result.degraded_reasons == [DEADLINE_EXCEEDED]
    assert [i["product_id"] for i in result.items] == [c.product_id for c in candidates]


class SlowStore:
    """A user store (a seam) whose reads never finish in time; it keeps the timeouts it is told of."""

    kind = "slow"

    def __init__(self) -> None:
        self.timeouts: list[str] = []

    async def lookup(self, user_id):
        await asyncio.sleep(5)

    def record_timeout(self, user_id, seconds):
        self.timeouts.append(user_id)

    async def ping(self):
        return True

    async def close(self):
        return None


def test_slow_user_store_times_out_with_defaults(bundle):
    executor = ThreadPoolExecutor(max_workers=1)
    store = SlowStore()
    pipeline = RankingPipeline(
        store, executor, lambda: nullcontext(bundle), deadline_seconds=0.3, user_timeout_seconds=0.05
    )
    started = time.perf_counter()

    result = rank(pipeline, "cordless drill", some_products(bundle, 20), user_id="u1")

    assert time.perf_counter() - started < 0.3
    assert result.degraded_reasons == [FEATURE_STORE_TIMEOUT]
    assert all(i["score"] is not None for i in result.items)
    assert store.timeouts == ["u1"]
