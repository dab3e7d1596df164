"""A small keep-alive HTTP/1.1 load client on asyncio streams.

A general HTTP client costs a millisecond or more of Python per request, which on a 2-core
machine would take CPU from the service it measures. This client sends pre-built request bytes
and parses only the status line, Content-Length and Server-Timing.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    latencies: np.ndarray  # seconds per request, in completion order
    started_at: np.ndarray  # seconds since the run began, per request
    wall_seconds: float
    statuses: dict[int, int]
    server_stages: dict[str, float] = field(default_factory=dict)  # mean milliseconds per stage

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000)


def _request_bytes(body: bytes) -> bytes:
    head = (
        "POST /rank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Return (status, Server-Timing value) and consume the body."""
    status = int((await reader.readline()).split()[1])
    length, timing = 0, b""
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"server-timing":
            timing = value.strip()
    await reader.readexactly(length)
    return status, timing


async def _run(port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    payloads = [_request_bytes(body) for body in requests]
    next_index = iter(range(len(payloads)))
    latencies: list[float] = []
    starts: list[float] = []
    statuses: dict[int, int] = {}
    stage_totals: dict[str, float] = {}
    began = time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for index in next_index:
            started = time.perf_counter()
            writer.write(payloads[index])
            await writer.drain()
            status, timing = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            starts.append(started - began)
            statuses[status] = statuses.get(status, 0) + 1
            for entry in timing.decode().split(","):
                name, _, duration = entry.strip().partition(";dur=")
                if duration:
                    stage_totals[name] = stage_totals.get(name, 0.0) + float(duration)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    count = max(len(latencies), 1)
    return LoadResult(
        latencies=np.array(latencies),
        started_at=np.array(starts),
        wall_seconds=wall,
        statuses=statuses,
        server_stages={name: total / count for name, total in stage_totals.items()},
    )


def run_load(port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    """Send every request once over `concurrency` keep-alive connections."""
    return asyncio.run(_run(port, requests, concurrency))
