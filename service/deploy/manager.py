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
    CURRENT_POINTER,
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
        self._rejected_pointer: bytes | None = None  # CURRENT's contents when its bundle was rejected
        self.pinned = False  # started with RANKER_BUNDLE_VERSION: admin deploys are rejected
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
            self.pinned = True
            return await self.deploy(pinned_version, source="start-up", write_pointer=False)
        try:
            current = read_current(self.models_dir)
            if current is None:
                raise BundleError(
                    f"no bundle to serve: {self.models_dir / 'CURRENT'} does not exist. Build one with "
                    "`ranker train` and `ranker export`, or run `ranker up`."
                )
            return await self.deploy(current, source="start-up", write_pointer=False)
        except BundleError as error:
            previous = read_previous(self.models_dir)
            if previous is None:
                raise
            logger.error("CURRENT was rejected at start-up (%s); serving PREVIOUS %s", error, previous)
            bundle = await self.deploy(previous, source="start-up fallback", write_pointer=False)
            self._rejected_pointer = _pointer_state(self.models_dir)  # the watcher must not retry it
            return bundle

    async def deploy(self, version: str, source: str, write_pointer: bool = True) -> Bundle:
        """Check `version` and serve it; on any failure the old bundle keeps serving.

        With `write_pointer` (admin requests), CURRENT names the bundle afterwards and PREVIOUS
        the one served before, so other workers follow and a restart serves the same bundle.
        """
        async with self._swap_lock:
            if write_pointer and self.pinned:
                raise BundleError(
                    f"this service is pinned to bundle {self.current.version} by RANKER_BUNDLE_VERSION; "
                    "unset it to deploy other bundles"
                )
            if self.current is not None and self.current.version == version:
                if write_pointer:  # CURRENT may name a rejected bundle: make it name this one
                    write_current(self.models_dir, version)
                return self.current
            bundle = await self._check(version, source)
            served_before = self.current.version if self.current else None
            self._swap_in(bundle, source)
            if write_pointer:
                write_current(self.models_dir, version, previous=served_before)
            return bundle

    async def _check(self, version: str, source: str) -> Bundle:
        try:
            check_version_name(version)
            return await asyncio.get_running_loop().run_in_executor(
                self._loader, check_bundle, self.models_dir, version, self.device, self.intra_op_threads
            )
        except BundleError as error:
            self._reject(version, source, str(error))
            raise

    async def rollback(self) -> Bundle:
        """Serve the bundle PREVIOUS names (or, without that file, the one served before), after
        the same checks."""
        previous = read_previous(self.models_dir) or self.previous_version
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
        """Follow CURRENT: swap when it names another bundle.

        A rejected version, or unreadable pointer contents, is logged and counted once and not
        retried until CURRENT changes. No error stops the watcher.
        """
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self._follow_pointer()
            except Exception:
                logger.exception("the CURRENT pointer watcher failed; it retries in %.1fs", interval_seconds)

    async def _follow_pointer(self) -> None:
        state = _pointer_state(self.models_dir)
        if state == self._rejected_pointer:
            return
        self._rejected_pointer = None
        try:
            pointer = read_current(self.models_dir)
        except BundleError as error:
            self._reject("CURRENT", "CURRENT pointer", str(error))
            self._rejected_pointer = state
            return
        if pointer is None or self.current is None or pointer == self.current.version:
            return
        try:
            await self.deploy(pointer, source="CURRENT pointer", write_pointer=False)
        except BundleError:
            self._rejected_pointer = state

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)


def _pointer_state(models_dir: Path) -> bytes | None:
    """Return the raw contents of CURRENT, to notice any change, even to unreadable contents."""
    try:
        return (models_dir / CURRENT_POINTER).read_bytes()
    except OSError:
        return None
