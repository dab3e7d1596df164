"""The FastAPI application factory."""

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import multiprocess

from service import __version__
from service.api.admin import router as admin_router
from service.api.admission import InflightLimit
from service.api.context import RequestContext
from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.routes import router
from service.api.state import AppState
from service.deploy.manager import BundleManager
from service.engines.bundle import Bundle
from service.engines.query_cache import QueryEmbeddingCache
from service.engines.user_store import RedisUserStore, SnapshotUserStore, UserStore
from service.metrics import MULTIPROCESS_DIR_VARIABLE, Metrics
from service.pipeline.rank import RankingPipeline
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings, store: UserStore | None = None) -> FastAPI:
    """Build the app; the bundle is loaded at start-up, the store made unless passed in (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: AppState = app.state.ranker
        loaded = await state.bundles.start(settings.bundle_version)
        state.store = store or _user_store(settings, loaded, state.metrics)
        state.metrics.feature_source_info.labels(source=state.store.kind).set(1)
        state.pipeline = RankingPipeline(
            state.store,
            state.executor,
            state.bundles.lease,
            QueryEmbeddingCache(settings.query_cache_size),
            settings.max_new_titles,
            deadline_seconds=settings.deadline_ms / 1000,
            user_timeout_seconds=settings.redis_timeout_seconds,
        )
        watcher = _start_watcher(settings, state)
        # Objects made at start-up live as long as the process: keep the collector off them.
        gc.collect()
        gc.freeze()
        logger.info("serving bundle %s; user features from %s", loaded.version, state.store.kind)
        yield
        if watcher is not None:
            watcher.cancel()
        await state.store.close()
        state.bundles.close()
        state.executor.shutdown(wait=True)
        if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
            multiprocess.mark_process_dead(os.getpid())  # drops this worker's live gauges

    app = FastAPI(
        title="Personalized product-search ranker",
        version=__version__,
        description="Re-ranks search candidates per user with a multi-task MMoE model in ONNX Runtime.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.ranker = AppState(
        settings=settings,
        metrics=metrics,
        store=store or SnapshotUserStore({}),
        executor=ThreadPoolExecutor(max_workers=settings.inference_workers, thread_name_prefix="inference"),
        bundles=BundleManager(settings.models_dir, metrics, settings.device, settings.intra_op_threads),
    )
    install_error_handlers(app)
    # Middleware added last runs first: request id, then the in-flight bound, then the body limit.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(InflightLimit, limit=settings.max_inflight, metrics=metrics)
    app.include_router(router)
    app.include_router(admin_router)
    app.add_middleware(RequestContext, metrics=metrics)

    return app


def _start_watcher(settings: Settings, state: AppState) -> asyncio.Task | None:
    """Follow the CURRENT pointer, unless a version is pinned or polling is off."""
    if settings.bundle_version is not None or settings.bundle_poll_seconds == 0:
        return None
    return asyncio.create_task(state.bundles.watch_pointer(settings.bundle_poll_seconds))


def _user_store(settings: Settings, bundle: Bundle, metrics: Metrics) -> UserStore:
    if settings.redis_url is None:
        logger.warning(
            "no Redis configured (RANKER_REDIS_URL or --redis-url is none or empty): user features come "
            "from the bundle snapshot "
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
        settings.redis_connect_timeout_seconds,
        settings.redis_max_connections,
        on_error=lambda kind: metrics.redis_errors.labels(kind=kind).inc(),
        cluster=settings.redis_cluster,
    )
