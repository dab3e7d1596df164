"""A bound on POST /rank requests in flight per worker: past it, 429 at once.

Without a bound a burst queues in the event loop and the inference pool, and every request in
the queue misses its deadline. Rejecting early keeps the accepted ones fast, and the 429 lets the
caller (or its load balancer) try another replica. Health, readiness and metrics are never
limited.
"""

from types import SimpleNamespace

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import api_error_response, overloaded_error
from service.metrics import Metrics

LIMITED_PATH = "/rank"
_LIMITED_ROUTE = SimpleNamespace(path=LIMITED_PATH)


class InflightLimit:
    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LIMITED_PATH:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.metrics.overloaded.inc()
            # The router never matches this request, so name its route for the request counter outside.
            scope["route"] = _LIMITED_ROUTE
            request_id = scope.get("state", {}).get("request_id", "")
            await api_error_response(request_id, overloaded_error(self.limit))(scope, receive, send)
            return
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()
