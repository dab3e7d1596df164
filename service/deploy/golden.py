"""Golden requests: scores recorded at export time, reproduced before a bundle may serve.

At export the bundle scores a fixed set of requests with its own ONNX sessions and writes the
task probabilities to golden.json. Before a service swaps to the bundle, it scores the same
requests again. A difference above the tolerance means the files, the runtime or the feature
code changed since export, so the bundle is rejected.
"""

from pathlib import Path

import numpy as np
import orjson

from service.engines.bundle import WARMUP_QUERIES, Bundle
from service.engines.manifest import BundleError
from service.features.user import UserFeatures
from service.pipeline.candidates import Candidate
from service.pipeline.rank import score_candidates
from service.pipeline.timing import StageTimer

GOLDEN_FILE = "golden.json"
# Largest allowed difference of one task probability. A bundle reproduces its recorded values
# exactly on the machine that exported it. Other CPUs and CUDA kernels change the last digits:
# an estimate of up to 1e-4, which this tolerance covers ten times over.
GOLDEN_TOLERANCE = 1e-3
# Fused scores are weighted sums of log probabilities, so a probability change near 0 moves them
# much more. This bound still catches an edited fusion weight, which moves them by whole units.
GOLDEN_SCORE_TOLERANCE = 0.05
GOLDEN_CANDIDATES = 40


def golden_requests(bundle: Bundle) -> list[dict]:
    """Build the requests: every warm-up query, an anonymous and a known user, known and new products."""
    ids = sorted(bundle.catalog.index)
    step = max(1, len(ids) // GOLDEN_CANDIDATES)
    products = ids[::step][:GOLDEN_CANDIDATES]
    users = [UserFeatures()]
    if bundle.user_snapshot:
        users.append(bundle.user_snapshot[min(bundle.user_snapshot)])
    requests = []
    for query in WARMUP_QUERIES:
        for user in users:
            candidates = [{"product_id": p} for p in products]
            candidates.append({"product_id": "golden-new-product", "title": f"{query} kit"})
            user_record = user.to_record() if user.known else None
            requests.append({"query": query, "user": user_record, "candidates": candidates})
    return requests


def score_golden(bundle: Bundle, request: dict) -> tuple[np.ndarray, np.ndarray]:
    """Return task probabilities [candidates, tasks] and fused scores [candidates] for one request.

    The fused scores depend on the manifest's fusion weights, so comparing them also catches an
    edited manifest.
    """
    user = UserFeatures.from_record(request["user"]) if request["user"] else UserFeatures()
    candidates = [Candidate(c["product_id"], c.get("title")) for c in request["candidates"]]
    scored = score_candidates(bundle, request["query"], candidates, user, StageTimer())
    return scored.probabilities, scored.scores


def record_golden(bundle: Bundle, bundle_dir: Path) -> dict:
    """Write golden.json into `bundle_dir`; return the manifest entry that describes it."""
    requests = golden_requests(bundle)
    for request in requests:
        probabilities, scores = score_golden(bundle, request)
        request["probabilities"] = probabilities.tolist()
        request["scores"] = scores.tolist()
    (Path(bundle_dir) / GOLDEN_FILE).write_bytes(orjson.dumps({"requests": requests}))
    return {"file": GOLDEN_FILE, "requests": len(requests), "tolerance": GOLDEN_TOLERANCE}


def verify_golden(bundle: Bundle) -> float:
    """Score the recorded requests again; return the largest probability difference.

    Raise BundleError when the requests are missing or a difference is above its tolerance.
    """
    requests, tolerance = _recorded_requests(bundle)

    worst = {"probabilities": 0.0, "scores": 0.0}
    for number, request in enumerate(requests):
        for actual, recorded in zip(score_golden(bundle, request), ("probabilities", "scores"), strict=True):
            expected = np.asarray(request[recorded], dtype=np.float32)
            if actual.shape != expected.shape:
                raise BundleError(
                    f"golden request {number} of bundle {bundle.version} returned {recorded} of shape "
                    f"{actual.shape}, recorded {expected.shape}"
                )
            worst[recorded] = max(worst[recorded], float(np.abs(actual - expected).max()))

    # `not x <= limit` is also true for NaN.
    if not worst["probabilities"] <= tolerance or not worst["scores"] <= GOLDEN_SCORE_TOLERANCE:
        raise BundleError(
            f"bundle {bundle.version} does not reproduce its golden requests: largest difference "
            f"{worst['probabilities']:.2e} in a task probability (tolerance {tolerance:.0e}) and "
            f"{worst['scores']:.2e} in a fused score (tolerance {GOLDEN_SCORE_TOLERANCE})"
        )
    return worst["probabilities"]


def _recorded_requests(bundle: Bundle) -> tuple[list[dict], float]:
    """Return the golden requests and the probability tolerance, checked against the manifest."""
    entry = bundle.manifest.get("golden")
    if entry is None:
        raise BundleError(
            f"bundle {bundle.version} has no golden requests in its manifest; re-export it with "
            "this version of `ranker export`, which records them"
        )
    if entry.get("file") != GOLDEN_FILE or GOLDEN_FILE not in bundle.manifest["files"]:
        raise BundleError(
            f"bundle {bundle.version}: the manifest does not list {GOLDEN_FILE} with a checksum"
        )
    requests = orjson.loads((bundle.path / GOLDEN_FILE).read_bytes())["requests"]
    if not requests:
        raise BundleError(f"bundle {bundle.version} has an empty {GOLDEN_FILE}; re-export it")
    # The manifest may ask for a tighter tolerance, never a looser one than this service allows.
    return requests, min(float(entry["tolerance"]), GOLDEN_TOLERANCE)
