"""Admin endpoints: see the served bundle, deploy another, roll back. Bearer token required.

With RANKER_ADMIN_TOKEN unset, every /admin route returns 404 `admin_disabled`. The token is
compared in constant time, so response timing does not reveal how much of a guess was right.
"""

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.errors import ApiError, bundle_error
from service.api.responses import json_response
from service.api.schemas import ErrorResponse
from service.api.state import AppState
from service.engines.manifest import BundleError, read_current, read_previous


def state_of(request: Request) -> AppState:
    return request.app.state.ranker


def require_admin(request: Request) -> None:
    token = state_of(request).settings.admin_token
    if token is None:
        raise ApiError(
            404, "admin_disabled", "admin endpoints are off; set RANKER_ADMIN_TOKEN to turn them on"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong admin token; send the header 'Authorization: Bearer <RANKER_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(
    prefix="/admin",
    dependencies=[Depends(require_admin)],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
    tags=["admin"],
)


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Folder name of the bundle to serve, under RANKER_MODELS_DIR.",
    )


@router.get("/bundle", summary="The served bundle, the previous one and the last rejected one")
async def bundle_status(request: Request) -> Response:
    return json_response(_status(state_of(request)))


@router.post(
    "/bundle",
    summary="Check a bundle and serve it; on any failed check the old bundle keeps serving",
    responses={409: {"model": ErrorResponse}},
)
async def deploy(body: DeployRequest, request: Request) -> Response:
    state = state_of(request)
    try:
        await state.bundles.deploy(body.version, source="admin endpoint")
    except BundleError as error:
        raise bundle_error(error) from error
    return json_response(_status(state))


@router.post(
    "/rollback",
    summary="Serve the previous bundle again, after the same checks",
    responses={409: {"model": ErrorResponse}},
)
async def rollback(request: Request) -> Response:
    state = state_of(request)
    try:
        await state.bundles.rollback()
    except BundleError as error:
        raise bundle_error(error) from error
    return json_response(_status(state))


def _status(state: AppState) -> dict:
    manager = state.bundles
    rejection = manager.last_rejection
    serving = manager.current.version if manager.current else None
    previous = _pointer_or_problem(read_previous, manager) or manager.previous_version
    return {
        "serving": serving,
        "previous": previous if previous != serving else None,
        "current_pointer": _pointer_or_problem(read_current, manager),
        "loaded": manager.loaded_versions(),
        "last_rejection": None
        if rejection is None
        else {"version": rejection.version, "source": rejection.source, "reason": rejection.reason},
    }


def _pointer_or_problem(read_pointer, manager) -> str | None:
    """Return the version a pointer file names, or what is wrong with the file."""
    try:
        return read_pointer(manager.models_dir)
    except BundleError as error:
        return f"invalid: {error}"
