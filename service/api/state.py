"""Run-time state of the app: settings, the current bundle, the user store, the pipeline."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.engines.bundle import Bundle
from service.engines.user_store import UserStore
from service.metrics import Metrics
from service.pipeline.rank import RankingPipeline
from service.settings import Settings


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    store: UserStore
    executor: ThreadPoolExecutor
    bundle: Bundle | None = None
    pipeline: RankingPipeline | None = field(default=None, repr=False)

    def current_bundle(self) -> Bundle:
        # One attribute read: a swap replaces the reference, never mutates the bundle in use.
        bundle = self.bundle
        if bundle is None:
            raise RuntimeError("no bundle loaded")
        return bundle
