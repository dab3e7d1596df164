"""Request id and request counting as plain ASGI middleware.

Starlette's `@app.middleware("http")` wraps every request in an extra task and body stream.
This middleware does the same work on the raw ASGI messages instead.
"""

import itertools
import os
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import internal_error_response
from service.metrics import Metrics

# A caller's id is echoed in headers and logs, so only short, plain ids are taken.
_CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# New ids: a random prefix per process and a counter. They are unique across workers and
# restarts without the system call that uuid4 makes on every request (it reads os.urandom).
_ID_PREFIX = os.urandom(4).hex()
_ID_COUNTER = itertools.count(1)


def _new_id_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(4).hex()


os.register_at_fork(after_in_child=_new_id_prefix)  # a forked worker must not repeat its parent's ids


def accepted_request_id(header: str | None) -> str:
    """Return the caller's x-request-id when it is 1-64 plain characters, else a new id."""
    if header is not None and _CALLER_REQUEST_ID.fullmatch(header):
        return header
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


class RequestContext:
    """Give each request an id (state and x-request-id header), count it by route and status,
    and turn any unhandled exception into the 500 error body."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(Headers(scope=scope).get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Handled here rather than re-raised, so the server does not log the traceback again.
            if started:
                raise  # too late for an error body; the connection is closed
            await internal_error_response(request_id, error)(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route=route, status=str(status)).inc()
