"""HTTP routes: /rank, /health, /ready, /metrics."""

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.errors import ApiError
from service.api.responses import json_response
from service.api.schemas import ErrorResponse, RankRequest, RankResponse
from service.api.state import AppState
from service.pipeline.rank import RankResult

router = APIRouter()


def state_of(request: Request) -> AppState:
    return request.app.state.ranker


@router.post(
    "/rank",
    response_model=RankResponse,
    responses={status: {"model": ErrorResponse} for status in (413, 422, 429, 500, 503)},
    summary="Rank candidate products for a user and a query",
)
async def rank(body: RankRequest, request: Request) -> Response:
    state = state_of(request)
    _check_limits(body, state)
    if state.pipeline is None:
        raise ApiError(503, "not_ready", "no bundle is loaded yet; retry when GET /ready returns 200")

    started = time.perf_counter()
    state.metrics.candidates.observe(len(body.candidates))
    result = await state.pipeline.rank(
        query=body.query,
        candidates=body.candidates,
        user_id=body.user_id,
        top_k=body.top_k,
        explain=body.explain,
    )
    _record(state, result, time.perf_counter() - started)
    return json_response(
        _response_body(request.state.request_id, result),
        headers={"Server-Timing": result.timer.server_timing()},
    )


def _check_limits(body: RankRequest, state: AppState) -> None:
    settings = state.settings
    if len(body.candidates) > settings.max_candidates:
        raise ApiError(
            422,
            "too_many_candidates",
            f"candidates has {len(body.candidates)} items, more than the maximum of "
            f"{settings.max_candidates}; send fewer or raise RANKER_MAX_CANDIDATES",
        )
    if len(body.query) > settings.max_query_chars:
        raise ApiError(
            422,
            "query_too_long",
            f"query has {len(body.query)} characters, more than the maximum of {settings.max_query_chars}; "
            "shorten it or raise RANKER_MAX_QUERY_CHARS",
        )


def _record(state: AppState, result: RankResult, seconds: float) -> None:
    metrics = state.metrics
    metrics.request_duration.observe(seconds)
    for stage, stage_seconds in result.timer.seconds.items():
        metrics.observe_stage(stage, stage_seconds)
    for reason in result.degraded_reasons:
        metrics.count_degraded(reason)
    metrics.count_query_cache(result.query_cache_hit)


def _response_body(request_id: str, result: RankResult) -> dict:
    return {
        "request_id": request_id,
        "bundle_version": result.bundle_version,
        "items": result.items,
        "degraded": bool(result.degraded_reasons),
        "degraded_reasons": result.degraded_reasons,
    }


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: bundle loaded, encoder warmed, user features reachable")
async def ready(request: Request) -> Response:
    state = state_of(request)
    bundle = state.bundles.current
    store_ok = await state.store.ping()
    body = {
        "ready": bool(bundle and bundle.warmed and store_ok),
        "bundle_version": bundle.version if bundle else None,
        "encoder_warmed": bool(bundle and bundle.warmed),
        "execution_providers": bundle.providers if bundle else {},
        "user_features": {
            "source": state.store.kind,
            "reachable": store_ok,
            "redis_url": state.settings.masked_redis_url(),
        },
    }
    return json_response(body, 200 if body["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = state_of(request).metrics.exposition_registry()
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
