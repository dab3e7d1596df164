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
from typing import NotRequired, Protocol, TypedDict

import numpy as np

from service.engines.bundle import Bundle
from service.engines.query_cache import QueryEmbeddingCache
from service.engines.user_store import FEATURE_STORE_TIMEOUT, UserLookup, UserStore
from service.features.attributes import ProductAttributes, describe_product
from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES, QueryContext, build_features
from service.features.user import UserFeatures
from service.logging_setup import RepeatLimiter
from service.pipeline.deadline import Deadline, DeadlineExceeded
from service.pipeline.fusion import fuse_scores
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


class CandidateLike(Protocol):
    """What the pipeline reads of a candidate.

    The API passes its validated request items as they are, because copying 1,000 of them into
    `Candidate` objects cost 0.36 ms.
    """

    @property
    def product_id(self) -> str: ...

    @property
    def title(self) -> str | None: ...


@dataclass(frozen=True)
class Candidate:
    product_id: str
    title: str | None = None


class RankedItem(TypedDict):
    """One item of the response, as it is serialized: built once, as a plain dict, because
    1,000 of them as objects and then again as dicts cost about 1.5 ms."""

    product_id: str
    rank: int
    score: float | None  # None when the item was not scored (input-order fallback)
    task_scores: dict[str, float]
    explanation: NotRequired[dict]


@dataclass(frozen=True)
class RankResult:
    bundle_version: str
    items: list[RankedItem]
    degraded_reasons: list[str]
    timer: StageTimer
    query_cache_hit: bool = False


@dataclass(frozen=True)
class Scored:
    probabilities: np.ndarray  # [candidates, tasks]
    scores: np.ndarray  # [candidates]
    categorical: np.ndarray
    continuous: np.ndarray
    unknown_without_title: int
    query_cache_hit: bool = False
    encoder_failed: bool = False


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


def input_order(candidates: Sequence[CandidateLike], top_k: int | None) -> list[RankedItem]:
    """Return the fallback order when nothing could be scored: candidates as sent, without scores."""
    kept = candidates[:top_k] if top_k is not None else candidates
    return [
        {"product_id": c.product_id, "rank": rank, "score": None, "task_scores": {}}
        for rank, c in enumerate(kept, start=1)
    ]


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


@dataclass(frozen=True)
class GatheredProducts:
    rows: np.ndarray  # int64 [candidates]: catalog row, -1 for a product the bundle does not know
    embeddings: np.ndarray  # float32 [candidates, d]
    new_products: dict[int, ProductAttributes]  # candidate position -> attributes from its request title
    untitled: int  # unknown products ranked without text


def gather_products(
    bundle: Bundle, candidates: Sequence[CandidateLike], max_new_titles: int = 8
) -> GatheredProducts:
    """Look the candidates up in the catalog; embed new products from their request titles.

    A product missing from the bundle is embedded from its request title, in one batched encoder
    call for all such products, at most `max_new_titles` of them (an encoder pass each). Without
    a usable title, or past that limit, it gets a zero embedding and empty attributes, and counts
    as untitled.
    """
    catalog = bundle.catalog
    rows = np.array([catalog.index.get(c.product_id, -1) for c in candidates], dtype=np.int64)
    embeddings = catalog.embeddings[np.maximum(rows, 0)]  # a copy; unknown rows are overwritten
    unknown = np.flatnonzero(rows < 0)
    if unknown.size == 0:
        return GatheredProducts(rows, embeddings, {}, 0)

    titled = [i for i in unknown if (candidates[i].title or "").strip()][:max_new_titles]
    if titled:
        try:
            embeddings[titled] = bundle.encoder.embed([candidates[i].title for i in titled])
        except Exception as error:
            failure_log.log(
                logging.ERROR,
                "title encoder failed; %d new products ranked without text",
                len(titled),
                exc_info=error,
            )
            titled = []
    embedded = set(titled)
    untitled = [i for i in unknown if i not in embedded]
    embeddings[untitled] = 0.0
    new_products = {
        int(i): describe_product(candidates[i].title if i in embedded else "", bundle.brands) for i in unknown
    }
    return GatheredProducts(rows, embeddings, new_products, len(untitled))


def product_features(
    bundle: Bundle,
    user: UserFeatures,
    context: QueryContext,
    candidates: Sequence[CandidateLike],
    products: GatheredProducts,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ranker's (categorical, continuous) inputs, rows in candidate order.

    Catalog products take the array path (`CatalogColumns`). New products, described from their
    request titles, take `build_features`, which defines the same values one product at a time.
    """
    if not products.new_products:
        return bundle.columns.features(user, context, products.rows, bundle.vocabularies)
    n = len(candidates)
    categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=np.int64)
    continuous = np.empty((n, len(CONTINUOUS_FEATURES)), dtype=np.float32)
    known = np.flatnonzero(products.rows >= 0)
    if known.size:
        categorical[known], continuous[known] = bundle.columns.features(
            user, context, products.rows[known], bundle.vocabularies
        )
    new = list(products.new_products)
    categorical[new], continuous[new] = build_features(
        user,
        context,
        [candidates[i].product_id for i in new],
        list(products.new_products.values()),
        bundle.stats,
        bundle.vocabularies,
    )
    return categorical, continuous


def order_candidates(
    bundle: Bundle, candidates: Sequence[CandidateLike], scored: Scored, top_k: int | None, explain: bool
) -> list[RankedItem]:
    """Sort by score, highest first; equal scores fall back to product_id, so the order never
    depends on the order candidates were sent in."""
    tasks = bundle.ranker.tasks
    served = bundle.served_tasks
    order = sort_by_score(scored.scores, candidates)[:top_k]
    # Plain Python floats: converting numpy scalars one by one costs several times more.
    scores = scored.scores[order].tolist()
    served_probabilities = scored.probabilities[np.ix_(order, [tasks.index(t) for t in served])].tolist()
    positions = order.tolist()
    items: list[RankedItem] = [
        {
            "product_id": candidates[i].product_id,
            "rank": rank,
            "score": score,
            "task_scores": dict(zip(served, probabilities, strict=True)),
        }
        for rank, (i, score, probabilities) in enumerate(
            zip(positions, scores, served_probabilities, strict=True), start=1
        )
    ]
    if explain:
        for item, i in zip(items, positions, strict=True):
            item["explanation"] = _explain(tasks, scored, i)
    return items


def sort_by_score(scores: np.ndarray, candidates: Sequence[CandidateLike]) -> np.ndarray:
    """Return candidate positions by descending score, ties by product_id (int64 [candidates]).

    One numpy sort; only runs of equal scores (float32 collides now and then over 1,000
    candidates) are sorted again, by product_id, in Python.
    """
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])  # i: positions i and i + 1 are tied
    if tied.size == 0:
        return order
    # Each run of ties starts where the previous position was not tied with it.
    run_starts = tied[np.r_[True, np.diff(tied) > 1]]
    run_ends = tied[np.r_[np.diff(tied) > 1, True]] + 2
    for start, end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        order[start:end] = sorted(order[start:end].tolist(), key=lambda i: candidates[i].product_id)
    return order


def _explain(tasks: Sequence[str], scored: Scored, row: int) -> dict:
    return {
        "task_probabilities": {
            task: float(p) for task, p in zip(tasks, scored.probabilities[row], strict=True)
        },
        "categorical": {
            name: int(v) for name, v in zip(CATEGORICAL_FEATURES, scored.categorical[row], strict=True)
        },
        "continuous": {
            name: float(v) for name, v in zip(CONTINUOUS_FEATURES, scored.continuous[row], strict=True)
        },
    }
