"""Run-time state of the app: settings, the bundle manager, the user store, the pipeline."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.deploy.manager import BundleManager
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
    bundles: BundleManager
    pipeline: RankingPipeline | None = field(default=None, repr=False)
