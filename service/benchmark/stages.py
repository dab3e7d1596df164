"""Each stage of a /rank call measured alone, in process: the floor the service can approach."""

import asyncio
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import orjson

from service.engines.bundle import Bundle
from service.engines.user_store import RedisUserStore
from service.features.builder import QueryContext
from service.features.user import UserFeatures
from service.pipeline.candidates import Candidate, gather_products, product_features
from service.pipeline.fusion import fuse_scores
from service.pipeline.ordering import Scored, order_candidates

# Stages measured alone; their p50s sum to the floor of one request.
FLOOR_STAGES = (
    "tokenize",
    "encode_query",
    "redis_get",
    "gather_products",
    "product_features",
    "ranker",
    "fuse_and_order",
    "json_response",
)


def _timed(function: Callable[[], object], repeats: int) -> np.ndarray:
    """Return the seconds of each of `repeats` calls, after 5 warm-up calls."""
    for _ in range(5):
        function()
    seconds = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        function()
        seconds[i] = time.perf_counter() - started
    return seconds


def measure_stage_floors(
    bundle: Bundle, queries: list[str], n_candidates: int, redis_url: str | None, repeats: int
) -> dict[str, np.ndarray]:
    """Return seconds per call of each stage for one request of `n_candidates` candidates."""
    rng = np.random.default_rng(0)
    product_ids = list(bundle.catalog.index)
    candidates = [
        Candidate(product_ids[i]) for i in rng.choice(len(product_ids), n_candidates, replace=False)
    ]
    user = next(iter(bundle.user_snapshot.values()), UserFeatures())
    query = queries[0]
    context = QueryContext.from_query(query)
    products = gather_products(bundle, candidates)
    categorical, continuous = product_features(bundle, user, context, candidates, products)
    query_embeddings = np.repeat(bundle.encoder.embed([query]), n_candidates, axis=0)
    probabilities = bundle.ranker.score(categorical, continuous, query_embeddings, products.embeddings)
    scored = Scored(probabilities, np.zeros(n_candidates), categorical, continuous, 0)
    counter = iter(range(10**9))

    def encode_new_query() -> None:
        # A different query each call, so no cache anywhere can help.
        bundle.encoder.embed([queries[next(counter) % len(queries)]])

    def fuse_and_order() -> list:
        scores = fuse_scores(probabilities, bundle.ranker.tasks, bundle.fusion_weights)
        return order_candidates(bundle, candidates, dataclasses.replace(scored, scores=scores), None, False)

    body = {"items": fuse_and_order()}
    floors = {
        "tokenize": _timed(lambda: bundle.encoder.tokenize([query]), repeats),
        "encode_query": _timed(encode_new_query, repeats),
        "gather_products": _timed(lambda: gather_products(bundle, candidates), repeats),
        "product_features": _timed(
            lambda: product_features(bundle, user, context, candidates, products), repeats
        ),
        "ranker": _timed(
            lambda: bundle.ranker.score(categorical, continuous, query_embeddings, products.embeddings),
            repeats,
        ),
        "fuse_and_order": _timed(fuse_and_order, repeats),
        "json_response": _timed(lambda: orjson.dumps(body), repeats),
    }
    floors["redis_get"] = _redis_floor(redis_url, next(iter(bundle.user_snapshot), "anonymous"), repeats)
    return {name: floors[name] for name in FLOOR_STAGES if name in floors and floors[name] is not None}


def _redis_floor(redis_url: str | None, user_id: str, repeats: int) -> np.ndarray | None:
    """Time one user-record GET and decode through the service's own store; None without Redis."""
    if redis_url is None:
        return None

    async def run() -> np.ndarray:
        store = RedisUserStore(redis_url, "ranker", 1.0)
        seconds = np.empty(repeats)
        for _ in range(5):
            await store.lookup(user_id)
        for i in range(repeats):
            started = time.perf_counter()
            await store.lookup(user_id)
            seconds[i] = time.perf_counter() - started
        await store.close()
        return seconds

    return asyncio.run(run())
