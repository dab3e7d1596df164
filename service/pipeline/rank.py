"""The /rank pipeline: user features, query embedding, product features, scores, order.

The request leases the current bundle once and uses that object to the end, so every response
is scored by exactly one bundle. CPU-bound steps run in a thread pool, off the event loop.

Each request has a deadline. A failure or a late stage never turns into an error; the request
falls back, and names the reason in `degraded_reasons`:
- the user read fails or is late: default user features;
- the encoder fails: a zero query embedding (no text similarity; token features remain);
- the ranker fails, or scoring would end past the deadline: the candidates in input order.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from service.engines.bundle import Bundle
from service.engines.query_cache import QueryEmbeddingCache
from service.engines.user_store import FEATURE_STORE_TIMEOUT, UserLookup, UserStore
from service.features.builder import QueryContext
from service.features.user import UserFeatures
from service.logging_setup import RepeatLimiter
from service.pipeline.candidates import CandidateLike, gather_products, product_features
from service.pipeline.deadline import Deadline, DeadlineExceeded
from service.pipeline.fusion import fuse_scores
from service.pipeline.ordering import RankedItem, Scored, input_order, order_candidates
from service.pipeline.timing import StageTimer

logger = logging.getLogger(__name__)
failure_log = RepeatLimiter(logger)

# Degraded reasons added by this module (the user store adds its own).
UNKNOWN_PRODUCT = "unknown_product"
ENCODER_FAILED = "encoder_failed"
RANKER_FAILED = "ranker_failed"
DEADLINE_EXCEEDED = "deadline_exceeded"
# The user read gets at most this share of the deadline; scoring needs the rest.
USER_FEATURES_SHARE = 1 / 3


@dataclass(frozen=True)
class RankResult:
    bundle_version: str
    items: list[RankedItem]
    degraded_reasons: list[str]
    timer: StageTimer
    query_cache_hit: bool = False


class RankingPipeline:
    def __init__(
        self,
        store: UserStore,
        executor: Executor,
        lease_bundle: Callable[[], AbstractContextManager[Bundle]],
        query_cache: QueryEmbeddingCache | None = None,
        max_new_titles: int = 8,
        deadline_seconds: float = 0.15,
        user_timeout_seconds: float = 0.05,
    ) -> None:
        self.store = store
        self.executor = executor
        self.lease_bundle = lease_bundle
        self.query_cache = query_cache
        self.max_new_titles = max_new_titles
        self.deadline_seconds = deadline_seconds
        self.user_timeout_seconds = min(user_timeout_seconds, deadline_seconds * USER_FEATURES_SHARE)

    async def rank(
        self,
        query: str,
        candidates: Sequence[CandidateLike],
        user_id: str | None,
        top_k: int | None,
        explain: bool,
    ) -> RankResult:
        deadline = Deadline.after(self.deadline_seconds)
        with self.lease_bundle() as bundle:
            timer = StageTimer()
            reasons: list[str] = []
            with timer.stage("user_features"):
                lookup = await self.fetch_user(user_id)
            if lookup.degraded_reason:
                reasons.append(lookup.degraded_reason)
            try:
                scored, items = await self.score_in_pool(
                    bundle, query, candidates, lookup.features, top_k, explain, timer, deadline
                )
            except (DeadlineExceeded, TimeoutError):
                reasons.append(DEADLINE_EXCEEDED)
                return RankResult(bundle.version, input_order(candidates, top_k), reasons, timer)
            except Exception as error:
                failure_log.log(
                    logging.ERROR, "scoring failed; returning the candidates in input order", exc_info=error
                )
                reasons.append(RANKER_FAILED)
                return RankResult(bundle.version, input_order(candidates, top_k), reasons, timer)
            if scored.encoder_failed:
                reasons.append(ENCODER_FAILED)
            if scored.unknown_without_title:
                reasons.append(UNKNOWN_PRODUCT)
            return RankResult(bundle.version, items, reasons, timer, scored.query_cache_hit)

    async def score_in_pool(
        self,
        bundle: Bundle,
        query: str,
        candidates: Sequence[CandidateLike],
        user: UserFeatures,
        top_k: int | None,
        explain: bool,
        timer: StageTimer,
        deadline: Deadline,
    ) -> tuple[Scored, list[RankedItem]]:
        """Score and order in the inference pool; raise TimeoutError when the deadline passes first.

        A late thread cannot be stopped from outside: it checks the deadline between stages and
        gives up, and its result is dropped.
        """

        def score_and_order() -> tuple[Scored, list[RankedItem]]:
            scored = score_candidates(
                bundle,
                query,
                candidates,
                user,
                timer,
                submitted,
                self.query_cache,
                self.max_new_titles,
                deadline,
            )
            with timer.stage("order"):
                return scored, order_candidates(bundle, candidates, scored, top_k, explain)

        deadline.check("queue_wait")
        submitted = time.perf_counter()
        work = asyncio.get_running_loop().run_in_executor(self.executor, score_and_order)
        async with asyncio.timeout(deadline.remaining()):
            return await work

    async def fetch_user(self, user_id: str | None) -> UserLookup:
        """Anonymous requests get default features without a degraded flag: nothing failed."""
        if user_id is None:
            return UserLookup(UserFeatures())
        try:
            # asyncio.timeout, unlike wait_for, runs the lookup in this task instead of a new one.
            async with asyncio.timeout(self.user_timeout_seconds):
                return await self.store.lookup(user_id)
        except TimeoutError:
            self.store.record_timeout(user_id, self.user_timeout_seconds)
            return UserLookup(UserFeatures(), FEATURE_STORE_TIMEOUT)


def score_candidates(
    bundle: Bundle,
    query: str,
    candidates: Sequence[CandidateLike],
    user: UserFeatures,
    timer: StageTimer,
    submitted: float | None = None,
    query_cache: QueryEmbeddingCache | None = None,
    max_new_titles: int = 8,
    deadline: Deadline | None = None,
) -> Scored:
    """Run the CPU-bound stages in the inference thread pool.

    `submitted` is the perf_counter() time the request was handed to the pool. The wait until a
    thread picked it up is recorded as the `queue_wait` stage. With a `deadline`, each stage
    starts only while time is left (DeadlineExceeded otherwise).
    """
    check = deadline.check if deadline is not None else _no_deadline
    if submitted is not None:
        timer.record("queue_wait", time.perf_counter() - submitted)
    check("encode_query")
    with timer.stage("encode_query"):
        context = QueryContext.from_query(query)
        query_embedding, cache_hit, encoder_failed = embed_query_or_zero(
            bundle, context.normalized, query_cache
        )  # [1, d]

    check("product_features")
    with timer.stage("product_features"):
        products = gather_products(bundle, candidates, max_new_titles)
        categorical, continuous = product_features(bundle, user, context, candidates, products)
        queries = np.repeat(query_embedding, len(candidates), axis=0)  # [candidates, d]

    check("score")
    with timer.stage("score"):
        probabilities = bundle.ranker.score(categorical, continuous, queries, products.embeddings)
        scores = fuse_scores(probabilities, bundle.ranker.tasks, bundle.fusion_weights)
    return Scored(
        probabilities, scores, categorical, continuous, products.untitled, cache_hit, encoder_failed
    )


def _no_deadline(next_stage: str) -> None:
    return None


def embed_query_or_zero(
    bundle: Bundle, normalized_query: str, cache: QueryEmbeddingCache | None
) -> tuple[np.ndarray, bool, bool]:
    """Return (embedding [1, d], cache hit, encoder failed); a failed encoder gives a zero vector."""
    try:
        embedding, hit = embed_query(bundle, normalized_query, cache)
    except Exception as error:
        failure_log.log(logging.ERROR, "query encoder failed; ranking without query text", exc_info=error)
        return np.zeros((1, bundle.encoder.dimension), dtype=np.float32), False, True
    return embedding, hit, False


def embed_query(
    bundle: Bundle, normalized_query: str, cache: QueryEmbeddingCache | None
) -> tuple[np.ndarray, bool]:
    """Return the query embedding [1, d] and whether it came from the cache.

    The normalized text is embedded, as in training, so that "Drill " and "drill" share an entry.
    """
    if cache is not None:
        cached = cache.get(bundle.version, normalized_query)
        if cached is not None:
            return cached, True
    embedding = bundle.encoder.embed([normalized_query])
    if cache is not None:
        cache.put(bundle.version, normalized_query, embedding)
    return embedding, False
