"""The FastAPI application factory."""

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI
from prometheus_client import multiprocess

from service import __version__
from service.api.context import RequestContext
from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.routes import router
from service.api.state import AppState
from service.engines.bundle import WARMUP_QUERIES, Bundle, load_bundle
from service.engines.query_cache import QueryEmbeddingCache
from service.engines.user_store import RedisUserStore, SnapshotUserStore, UserStore
from service.features.user import UserFeatures
from service.metrics import MULTIPROCESS_DIR_VARIABLE, Metrics
from service.pipeline.rank import Candidate, RankingPipeline, score_candidates
from service.pipeline.timing import StageTimer
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings, bundle: Bundle | None = None, store: UserStore | None = None) -> FastAPI:
    """Build the app; the bundle and store are created at start-up unless passed in (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: AppState = app.state.ranker
        loaded = bundle or await asyncio.get_running_loop().run_in_executor(
            state.executor,
            load_bundle,
            settings.models_dir,
            settings.bundle_version,
            settings.device,
            settings.intra_op_threads,
        )
        await asyncio.get_running_loop().run_in_executor(state.executor, warm_up, loaded)
        state.store = store or _user_store(settings, loaded)
        state.metrics.feature_source_info.labels(source=state.store.kind).set(1)
        state.bundle = loaded
        state.metrics.set_bundle(loaded.version, loaded.providers)
        cache = QueryEmbeddingCache(settings.query_cache_size)
        state.pipeline = RankingPipeline(
            state.store, state.executor, state.current_bundle, cache, settings.max_new_titles
        )
        # Objects made at start-up live as long as the process: keep the collector off them.
        gc.collect()
        gc.freeze()
        logger.info("serving bundle %s; user features from %s", loaded.version, state.store.kind)
        yield
        await state.store.close()
        state.executor.shutdown(wait=True)
        if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
            multiprocess.mark_process_dead(os.getpid())  # drops this worker's live gauges

    app = FastAPI(
        title="Personalized product-search ranker",
        version=__version__,
        description="Re-ranks search candidates per user with a multi-task MMoE model in ONNX Runtime.",
        lifespan=lifespan,
    )
    app.state.ranker = AppState(
        settings=settings,
        metrics=Metrics(),
        store=store or SnapshotUserStore({}),
        executor=ThreadPoolExecutor(max_workers=settings.inference_workers, thread_name_prefix="inference"),
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(router)
    app.add_middleware(RequestContext, metrics=app.state.ranker.metrics)

    return app


def _user_store(settings: Settings, bundle: Bundle) -> UserStore:
    if settings.redis_url is None:
        logger.warning(
            "no Redis configured (RANKER_REDIS_URL is empty): user features come from the bundle snapshot "
            "of %d users and will not change until the next bundle",
            len(bundle.user_snapshot),
        )
        return SnapshotUserStore(bundle.user_snapshot)
    logger.info(
        "user features from Redis%s at %s",
        " Cluster" if settings.redis_cluster else "",
        settings.masked_redis_url(),
    )
    return RedisUserStore(
        settings.redis_url,
        settings.redis_key_prefix,
        settings.redis_timeout_seconds,
        cluster=settings.redis_cluster,
    )


def warm_up(bundle: Bundle) -> None:
    """Run every graph once at several shapes, so the first real request does not pay for it."""
    started = time.perf_counter()
    product_ids = list(bundle.catalog.index)[:50]
    for query in WARMUP_QUERIES:
        candidates = [Candidate(p) for p in product_ids] + [
            Candidate("warm-up-new", "cordless hammer drill kit")
        ]
        scored = score_candidates(bundle, query, candidates, UserFeatures(), StageTimer())
        if not np.isfinite(scored.scores).all():
            raise RuntimeError(f"bundle {bundle.version} produced non-finite scores during warm-up")
    bundle.warmed = True
    logger.info("bundle %s warmed up in %.2fs", bundle.version, time.perf_counter() - started)
