"""Checks a bundle passes before it serves: files, graphs, warm-up and golden requests.

`check_bundle` is what start-up, the pointer watcher, the admin endpoints and `ranker deploy`
all run, so a bundle is judged the same way wherever it comes from. Each failure raises
BundleError with a reason a person can act on.
"""

import logging
import time
from pathlib import Path

import numpy as np

from service.deploy.golden import verify_golden
from service.engines.bundle import WARMUP_QUERIES, Bundle, load_bundle
from service.engines.encoder import ENCODER_INPUTS
from service.engines.manifest import BundleError
from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES
from service.features.user import UserFeatures
from service.pipeline.candidates import Candidate
from service.pipeline.rank import score_candidates
from service.pipeline.timing import StageTimer

logger = logging.getLogger(__name__)


def check_bundle(models_dir: Path, version: str, device: str, intra_op_threads: int) -> Bundle:
    """Load `version` and run every check; return the warmed bundle or raise BundleError."""
    started = time.perf_counter()
    check_location(Path(models_dir), version)
    try:
        # Manifest schema version, sha256 of every file, feature names, embedding dimensions.
        bundle = load_bundle(models_dir, version, device, intra_op_threads)
        check_manifest_version(bundle)
        check_graph_io(bundle)
        warm_up(bundle)
        worst = verify_golden(bundle)
    except BundleError:
        raise
    except Exception as error:
        # A damaged file or manifest fails inside ONNX Runtime, numpy or a dict lookup with their
        # own exception types. Each of them means the bundle cannot serve.
        raise BundleError(f"bundle {version} is invalid: {type(error).__name__}: {error}") from error
    logger.info(
        "bundle %s passed its checks in %.2fs (golden requests within %.1e)",
        version,
        time.perf_counter() - started,
        worst,
    )
    return bundle


def check_location(models_dir: Path, version: str) -> None:
    """Reject a bundle folder that is a symbolic link or lies outside the models folder."""
    folder = models_dir / version
    if folder.is_symlink() or folder.resolve().parent != models_dir.resolve():
        raise BundleError(
            f"bundle {version} is a symbolic link or outside {models_dir}; copy the bundle folder there"
        )


def check_manifest_version(bundle: Bundle) -> None:
    """Require the folder name to match the manifest's version, which responses report."""
    recorded = bundle.manifest.get("version")
    if recorded != bundle.version:
        raise BundleError(
            f"bundle folder {bundle.version} contains the manifest of version {recorded!r}; "
            "keep the folder name that `ranker export` gave it"
        )


def check_graph_io(bundle: Bundle) -> None:
    """Compare the graphs' inputs and outputs with the manifest and this service's feature schema."""
    problems = []
    for model, session in (("encoder", bundle.encoder.session), ("ranker", bundle.ranker.session)):
        recorded = bundle.manifest[model]
        for kind, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
            actual = [(a.name, a.type) for a in args]
            expected = [(a["name"], a["dtype"]) for a in recorded[kind]]
            if actual != expected:
                problems.append(f"{model} {kind} are {actual}, the manifest records {expected}")
    encoder_inputs = tuple(a.name for a in bundle.encoder.session.get_inputs())
    if encoder_inputs != ENCODER_INPUTS:
        problems.append(f"encoder inputs are {encoder_inputs}, this service feeds {ENCODER_INPUTS}")
    widths = {a.name: a.shape[-1] for a in bundle.ranker.session.get_inputs()}
    expected_widths = {
        "categorical": len(CATEGORICAL_FEATURES),
        "continuous": len(CONTINUOUS_FEATURES),
        "query_embedding": bundle.encoder.dimension,
        "product_embedding": bundle.encoder.dimension,
    }
    for name, width in expected_widths.items():
        if widths.get(name) != width:
            problems.append(f"ranker input {name} has width {widths.get(name)}, this service builds {width}")
    if problems:
        raise BundleError(f"bundle {bundle.version} does not match this service: {'; '.join(problems)}")


def warm_up(bundle: Bundle) -> None:
    """Run every graph once at several shapes, so the first real request does not pay for it."""
    started = time.perf_counter()
    product_ids = list(bundle.catalog.index)[:50]
    for query in WARMUP_QUERIES:
        candidates = [Candidate(p) for p in product_ids] + [
            Candidate("warm-up-new", "cordless hammer drill kit")
        ]
        try:
            scored = score_candidates(bundle, query, candidates, UserFeatures(), StageTimer())
        except Exception as error:
            raise BundleError(f"bundle {bundle.version} failed its warm-up: {error}") from error
        if scored.encoder_failed or not np.isfinite(scored.scores).all():
            raise BundleError(f"bundle {bundle.version} produced no finite scores during warm-up")
    bundle.warmed = True
    logger.info("bundle %s warmed up in %.2fs", bundle.version, time.perf_counter() - started)
