"""Per-stage timing of one request, fed to the metrics and to the Server-Timing header."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

# Pipeline stages, in order; the same names label metrics and Server-Timing entries.
STAGES = ("user_features", "encode_query", "product_features", "score", "order")


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def server_timing(self) -> str:
        """Return the header value, durations in milliseconds as the standard requires."""
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.seconds.items())
