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
from service.pipeline.rank import Candidate, score_candidates
from service.pipeline.timing import StageTimer

GOLDEN_FILE = "golden.json"
# Largest allowed difference of one task probability. A bundle reproduces its recorded values
# exactly on the machine that exported it. Other CPUs and CUDA kernels change the last digits:
# an estimate of up to 1e-4, which this tolerance covers ten times over.
GOLDEN_TOLERANCE = 1e-3
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


def score_golden(bundle: Bundle, request: dict) -> np.ndarray:
    """Return task probabilities float32 [candidates, tasks] for one golden request."""
    user = UserFeatures.from_record(request["user"]) if request["user"] else UserFeatures()
    candidates = [Candidate(c["product_id"], c.get("title")) for c in request["candidates"]]
    return score_candidates(bundle, request["query"], candidates, user, StageTimer()).probabilities


def record_golden(bundle: Bundle, bundle_dir: Path) -> dict:
    """Write golden.json into `bundle_dir`; return the manifest entry that describes it."""
    requests = golden_requests(bundle)
    for request in requests:
        request["probabilities"] = score_golden(bundle, request).tolist()
    (Path(bundle_dir) / GOLDEN_FILE).write_bytes(orjson.dumps({"requests": requests}))
    return {"file": GOLDEN_FILE, "requests": len(requests), "tolerance": GOLDEN_TOLERANCE}


def verify_golden(bundle: Bundle) -> float:
    """Score the recorded requests again; return the largest difference, raise BundleError above tolerance."""
    entry = bundle.manifest.get("golden")
    if entry is None:
        raise BundleError(
            f"bundle {bundle.version} has no golden requests in its manifest; re-export it with "
            "this version of `ranker export`, which records them"
        )
    payload = orjson.loads((bundle.path / entry["file"]).read_bytes())
    tolerance = float(entry["tolerance"])
    worst = 0.0
    for number, request in enumerate(payload["requests"]):
        expected = np.asarray(request["probabilities"], dtype=np.float32)
        actual = score_golden(bundle, request)
        if actual.shape != expected.shape:
            raise BundleError(
                f"golden request {number} of bundle {bundle.version} returned shape {actual.shape}, "
                f"recorded {expected.shape}"
            )
        worst = max(worst, float(np.abs(actual - expected).max()))
    if not worst <= tolerance:  # also catches NaN
        raise BundleError(
            f"bundle {bundle.version} does not reproduce its golden requests: largest task probability "
            f"difference {worst:.2e} > tolerance {tolerance:.0e}"
        )
    return worst
