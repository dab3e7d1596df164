"""Per-stage timing of one request, fed to the metrics and to the Server-Timing header."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

# Pipeline stages, in order; the same names label metrics and Server-Timing entries.
# `queue_wait` is the time a request waits for a free inference thread.
STAGES = ("user_features", "queue_wait", "encode_query", "product_features", "score", "order")


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - started)

    def record(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def server_timing(self) -> str:
        """Return the header value, durations in milliseconds as the standard requires."""
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.seconds.items())
