"""Every error response, mapped in one place to one body shape: {"error": {code, message, ...}}."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.limits import BodyTooLargeError
from service.api.responses import json_response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status, raised anywhere and rendered by the handler below."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def overloaded_error(limit: int) -> ApiError:
    return ApiError(
        429,
        "overloaded",
        f"this worker is already handling {limit} requests (RANKER_MAX_INFLIGHT); retry after the "
        "number of seconds in Retry-After, or add workers or replicas",
        headers={"Retry-After": "1"},
    )


def bundle_error(error: Exception) -> ApiError:
    """Build the 409 for a bundle that failed a check; the old bundle keeps serving."""
    return ApiError(409, "bundle_rejected", f"{error}; the bundle served before is still serving")


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def error_response(
    request: Request, status: int, code: str, message: str, details: list | None = None
) -> Response:
    return error_response_for(request_id_of(request), status, code, message, details)


def error_response_for(
    request_id: str, status: int, code: str, message: str, details: list | None = None
) -> Response:
    """Build the one error body shape. ASGI middleware, which has no Request, calls this too."""
    body = {"error": {"code": code, "message": message, "request_id": request_id, "details": details or []}}
    return json_response(body, status)


def api_error_response(request_id: str, error: ApiError) -> Response:
    response = error_response_for(request_id, error.status, error.code, error.message)
    response.headers.update(error.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> Response:
        return api_error_response(request_id_of(request), error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        details = [
            {"location": ".".join(str(part) for part in item["loc"]), "problem": item["msg"]}
            for item in error.errors()
        ]
        summary = "; ".join(f"{d['location']}: {d['problem']}" for d in details[:3])
        logger.warning("invalid request %s: %s", request_id_of(request), summary)
        return error_response(request, 422, "invalid_request", f"request body is invalid: {summary}", details)

    @app.exception_handler(BodyTooLargeError)
    async def _too_large(request: Request, error: BodyTooLargeError) -> Response:
        return error_response(
            request,
            413,
            "payload_too_large",
            f"request body is larger than {error.limit} bytes; "
            "send fewer candidates or raise RANKER_MAX_BODY_BYTES",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        if isinstance(error.__cause__, BodyTooLargeError):
            # FastAPI wraps any failure while reading the body in a 400, and the cause names the reason.
            return await _too_large(request, error.__cause__)
        codes = {
            400: "invalid_request",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        response = error_response(
            request, error.status_code, codes.get(error.status_code, "http_error"), str(error.detail)
        )
        response.headers.update(error.headers or {})  # e.g. Allow on a 405
        return response


def internal_error_response(request_id: str, error: BaseException) -> Response:
    """Log the traceback once, with the request id, and return a fixed message with that id.

    Called by the request context middleware, the outermost handler of the app, so no other
    layer logs the same error again.
    """
    logger.error("unhandled error in request %s", request_id, exc_info=error)
    return error_response_for(
        request_id, 500, "internal_error", f"internal error; quote request_id {request_id} when reporting it"
    )
