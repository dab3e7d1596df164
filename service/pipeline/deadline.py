"""The time budget of one request, shared by its stages."""

import time
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    def __init__(self, stage: str) -> None:
        super().__init__(f"deadline passed before stage {stage}")
        self.stage = stage


@dataclass(frozen=True)
class Deadline:
    expires_at: float  # time.perf_counter() seconds

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.perf_counter() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.perf_counter())

    def check(self, next_stage: str) -> None:
        """Raise DeadlineExceeded when no time is left to start `next_stage`."""
        if time.perf_counter() >= self.expires_at:
            raise DeadlineExceeded(next_stage)
