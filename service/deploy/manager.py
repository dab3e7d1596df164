"""The bundle being served, swaps to a new one, rollback, and the CURRENT pointer watcher.

A request takes a lease on the current bundle (`lease()`), scores with that object only and
returns the lease at the end, so each response comes from exactly one bundle. A swap loads and
checks the new bundle in a loader thread while the old one keeps serving, then replaces one
reference. The old bundle's sessions are dropped when its last lease is returned. Only the
event loop thread takes and returns leases and swaps, so the counts need no lock.
"""

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.deploy.checks import check_bundle
from service.engines.bundle import Bundle
from service.engines.manifest import (
    BundleError,
    check_version_name,
    read_current,
    read_previous,
    write_current,
)
from service.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    version: str
    source: str
    reason: str
    at: float  # Unix time


class BundleManager:
    def __init__(
        self,
        models_dir: Path,
        metrics: Metrics,
        device: str = "auto",
        intra_op_threads: int = 1,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.metrics = metrics
        self.device = device
        self.intra_op_threads = intra_op_threads
        self.current: Bundle | None = None
        self.previous_version: str | None = None
        self.last_rejection: Rejection | None = None
        self._leases: dict[int, int] = {}  # id(bundle) -> requests in flight
        self._retiring: dict[int, Bundle] = {}  # replaced bundles that still have leases
        self._rejected_pointer: str | None = None
        self._swap_lock = asyncio.Lock()
        # Loading runs beside inference, never in its pool: a 2 s load must not queue requests.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-loader")

    # Requests -------------------------------------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[Bundle]:
        bundle = self.current  # one reference read: a swap never changes the object a request holds
        if bundle is None:
            raise BundleError("no bundle loaded yet")
        key = id(bundle)
        self._leases[key] = self._leases.get(key, 0) + 1
        try:
            yield bundle
        finally:
            self._leases[key] -= 1
            if self._leases[key] == 0:
                del self._leases[key]
                retired = self._retiring.pop(key, None)
                if retired is not None:
                    logger.info("released bundle %s: its last request finished", retired.version)

    def loaded_versions(self) -> list[dict]:
        """Bundles in memory: the current one and replaced ones still finishing requests."""
        bundles = ([self.current] if self.current else []) + list(self._retiring.values())
        return [{"version": b.version, "in_flight": self._leases.get(id(b), 0)} for b in bundles]

    # Swaps ----------------------------------------------------------------------------------

    async def start(self, pinned_version: str | None) -> Bundle:
        """Load the first bundle: the pinned one, else CURRENT, else PREVIOUS when CURRENT fails."""
        if pinned_version is not None:
            return await self.deploy(pinned_version, source="start-up", write_pointer=False)
        current = read_current(self.models_dir)
        if current is None:
            raise BundleError(
                f"no bundle to serve: {self.models_dir / 'CURRENT'} does not exist. Build one with "
                "`ranker train` and `ranker export`, or run `ranker up`."
            )
        try:
            return await self.deploy(current, source="start-up", write_pointer=False)
        except BundleError:
            previous = read_previous(self.models_dir)
            if previous is None:
                raise
            logger.error("CURRENT bundle %s was rejected at start-up; serving PREVIOUS %s", current, previous)
            return await self.deploy(previous, source="start-up fallback", write_pointer=False)

    async def deploy(self, version: str, source: str, write_pointer: bool = True) -> Bundle:
        """Check `version` and serve it; on any failure the old bundle keeps serving.

        With `write_pointer`, CURRENT names the new bundle afterwards, so other workers follow
        and a restart serves the same bundle.
        """
        async with self._swap_lock:
            if self.current is not None and self.current.version == version:
                return self.current
            try:
                check_version_name(version)
                bundle = await asyncio.get_running_loop().run_in_executor(
                    self._loader, check_bundle, self.models_dir, version, self.device, self.intra_op_threads
                )
            except BundleError as error:
                self._reject(version, source, str(error))
                raise
            self._swap_in(bundle, source)
            if write_pointer:
                write_current(self.models_dir, version)
            return bundle

    async def rollback(self) -> Bundle:
        """Serve the bundle served before the current one, after the same checks."""
        previous = self.previous_version or read_previous(self.models_dir)
        if previous is None:
            raise BundleError("no previous bundle to roll back to: PREVIOUS does not exist")
        return await self.deploy(previous, source="rollback")

    def _swap_in(self, bundle: Bundle, source: str) -> None:
        old = self.current
        self.current = bundle  # the swap: requests from here on lease the new bundle
        if old is not None:
            self.previous_version = old.version
            if self._leases.get(id(old), 0) > 0:
                self._retiring[id(old)] = old
        self.metrics.set_bundle(bundle.version, bundle.providers)
        self.metrics.bundle_reloads.labels(result="success").inc()
        logger.info(
            "now serving bundle %s (%s); previous %s", bundle.version, source, self.previous_version or "none"
        )

    def _reject(self, version: str, source: str, reason: str) -> None:
        self.last_rejection = Rejection(version, source, reason, time.time())
        self.metrics.bundle_reloads.labels(result="rejected").inc()
        serving = self.current.version if self.current else "none"
        logger.error("bundle %s rejected (%s): %s; still serving %s", version, source, reason, serving)

    # Pointer watcher ------------------------------------------------------------------------

    async def watch_pointer(self, interval_seconds: float) -> None:
        """Follow CURRENT: swap when it names another bundle. A rejected version is not retried
        until CURRENT names something else in between."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                pointer = read_current(self.models_dir)
            except OSError as error:
                logger.warning("cannot read %s: %s", self.models_dir / "CURRENT", error)
                continue
            if pointer != self._rejected_pointer:
                self._rejected_pointer = None
            if pointer in (None, self._rejected_pointer) or self.current is None:
                continue
            if pointer == self.current.version:
                continue
            try:
                await self.deploy(pointer, source="CURRENT pointer", write_pointer=False)
            except BundleError:
                self._rejected_pointer = pointer

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
