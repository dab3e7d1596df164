"""Build a versioned serving bundle from a training run folder.

exported_models/<version>/
    manifest.json            version, encoder, ranker I/O, feature schema, fusion, metrics, sha256s
    encoder.onnx             query encoder, mean pooling and L2 normalization inside the graph
    ranker.onnx              MMoE ranker
    tokenizer/               the encoder's tokenizer files
    product_embeddings.npy   float32 [products, d], rows in products.jsonl order
    products.jsonl           product_id, title, brand, category per product
    vocabularies.json        categorical value -> id maps
    interaction_stats.json   debiased CTR per product and per (query, product)
    users.jsonl              snapshot of the user feature records
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import torch

from service.deploy.golden import GOLDEN_FILE, record_golden
from service.engines.bundle import load_bundle
from service.engines.encoder import ENCODER_OUTPUT
from service.engines.manifest import (
    MANIFEST_FILE,
    MANIFEST_SCHEMA_VERSION,
    sha256_of,
    usable_current,
    write_current,
)
from service.engines.ranker import RANKER_INPUTS, RANKER_OUTPUT
from service.features.attributes import BrandVocabulary, describe_product
from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES
from service.features.user import USER_SCHEMA_VERSION
from training.model.mmoe import SERVED_TASKS, TASKS, ranker_from_checkpoint
from training.onnx_export import export_ranker
from training.quantize import quality_change, quantize_models

logger = logging.getLogger(__name__)
# Largest allowed |ONNX - PyTorch| of a task probability at export.
RANKER_PARITY_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 7, 64, 300)


PRECISIONS = ("fp32", "int8")


def export_bundle(run_dir: Path, models_dir: Path, set_current: bool = True, precision: str = "fp32") -> str:
    """Write a bundle from `run_dir` into `models_dir` and return its version.

    With precision "int8" the encoder and ranker are quantized (see training/quantize.py) and
    the change in held-out ranking quality is recorded in the manifest under "quantization".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    run_dir, models_dir = Path(run_dir), Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    version = time.strftime("%Y%m%d-%H%M%S") + "-" + run_dir.name.removeprefix("run-").replace("-", "")[-6:]
    staging = models_dir / f".staging-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        _write_bundle(run_dir, staging, version, precision)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, models_dir / version)
    if set_current:
        write_current(models_dir, version, previous=usable_current(models_dir))
    logger.info(
        "bundle %s written to %s%s", version, models_dir / version, " (now current)" if set_current else ""
    )
    return version


def _write_bundle(run_dir: Path, staging: Path, version: str, precision: str) -> None:
    logger.info("export 1/4: ranker to ONNX")
    checkpoint = torch.load(run_dir / "model.pt", weights_only=False)
    model = ranker_from_checkpoint(checkpoint)
    export_ranker(model, staging / "ranker.onnx", checkpoint["n_continuous"], checkpoint["embedding_dim"])
    parity = ranker_parity(model, staging / "ranker.onnx", checkpoint)

    logger.info("export 2/4: encoder, tokenizer and catalog")
    shutil.copy(run_dir / "encoder.onnx", staging / "encoder.onnx")
    shutil.copytree(run_dir / "tokenizer", staging / "tokenizer")
    _write_catalog(run_dir, staging)

    logger.info("export 3/4: vocabularies, statistics, user snapshot")
    artifacts = orjson.loads((run_dir / "artifacts.json").read_bytes())
    (staging / "vocabularies.json").write_bytes(orjson.dumps(artifacts["vocabularies"]))
    shutil.copy(run_dir / "interaction_stats.json", staging / "interaction_stats.json")
    shutil.copy(run_dir / "users.jsonl", staging / "users.jsonl")

    quantization = None
    if precision == "int8":
        logger.info("export 3b/4: int8 quantization and its effect on the test lists")
        quantize_models(staging)
        max_query_tokens = json.loads((run_dir / "config.json").read_text())["max_query_tokens"]
        quantization = quality_change(run_dir, staging, artifacts["fusion"]["weights"], max_query_tokens)
        for fp32_model in staging.glob("*.fp32.onnx"):
            fp32_model.unlink()

    logger.info("export 4/4: manifest, checksums and golden requests")
    manifest = _manifest(version, run_dir, staging, checkpoint, artifacts["fusion"], parity)
    manifest["precision"] = precision
    manifest["quantization"] = quantization
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=float))
    _add_golden_requests(staging, manifest)


def _add_golden_requests(staging: Path, manifest: dict) -> None:
    """Score the golden requests with the finished bundle, through the service's own code, and
    add them to the manifest. A service reproduces them before it swaps to this bundle."""
    bundle = load_bundle(staging.parent, staging.name, device="cpu", intra_op_threads=1)
    manifest["golden"] = record_golden(bundle, staging)
    manifest["files"][GOLDEN_FILE] = sha256_of(staging / GOLDEN_FILE)
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=float))


def ranker_parity(model, onnx_path: Path, checkpoint: dict) -> dict:
    """Compare ONNX Runtime with PyTorch on random inputs at several batch sizes."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for rows in PARITY_BATCHES:
        inputs = (
            torch.stack(
                [
                    torch.randint(0, size, (rows,), generator=generator)
                    for size in checkpoint["cardinalities"]
                ],
                dim=1,
            ),
            torch.randn(rows, checkpoint["n_continuous"], generator=generator),
            torch.nn.functional.normalize(
                torch.randn(rows, checkpoint["embedding_dim"], generator=generator), dim=1
            ),
            torch.nn.functional.normalize(
                torch.randn(rows, checkpoint["embedding_dim"], generator=generator), dim=1
            ),
        )
        with torch.no_grad():
            expected = model(*inputs).numpy()
        actual = session.run(
            [RANKER_OUTPUT], dict(zip(RANKER_INPUTS, (x.numpy() for x in inputs), strict=True))
        )[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
    if worst > RANKER_PARITY_TOLERANCE:
        raise RuntimeError(
            f"ranker ONNX differs from PyTorch by {worst:.2e} > {RANKER_PARITY_TOLERANCE:.0e}; not exporting"
        )
    return {
        "ranker_max_abs_diff": worst,
        "tolerance": RANKER_PARITY_TOLERANCE,
        "batch_sizes": list(PARITY_BATCHES),
    }


def _write_catalog(run_dir: Path, staging: Path) -> None:
    catalog = np.load(run_dir / "catalog.npz", allow_pickle=False)
    np.save(staging / "product_embeddings.npy", catalog["embeddings"].astype(np.float32))
    titles = [str(t) for t in catalog["titles"]]
    brands = BrandVocabulary.fit(titles)
    with open(staging / "products.jsonl", "wb") as out:
        for product_id, title in zip(catalog["product_ids"], titles, strict=True):
            attributes = describe_product(title, brands)
            record = {
                "product_id": str(product_id),
                "title": title,
                "brand": attributes.brand,
                "category": attributes.category,
            }
            out.write(orjson.dumps(record) + b"\n")


def _io_spec(path: Path) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(arg) -> dict:
        shape = [d if isinstance(d, int) else str(d) for d in arg.shape]
        return {"name": arg.name, "dtype": arg.type, "shape": shape}

    return {
        "inputs": [describe(a) for a in session.get_inputs()],
        "outputs": [describe(a) for a in session.get_outputs()],
    }


def _manifest(version, run_dir, staging, checkpoint, fusion, parity) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    encoder = json.loads((run_dir / "encoder.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": run_dir.name,
        "encoder": {
            **encoder,
            "max_query_tokens": config["max_query_tokens"],
            "max_title_tokens": config["max_title_tokens"],
            "output": ENCODER_OUTPUT,
            **_io_spec(staging / "encoder.onnx"),
        },
        "ranker": {
            "tasks": list(TASKS),
            "served_tasks": list(SERVED_TASKS),
            **_io_spec(staging / "ranker.onnx"),
        },
        "feature_schema": {
            "categorical": list(CATEGORICAL_FEATURES),
            "continuous": list(CONTINUOUS_FEATURES),
            "user_schema_version": USER_SCHEMA_VERSION,
            "user_key": f"<prefix>:user:v{USER_SCHEMA_VERSION}:<user_id>",
        },
        "fusion": fusion,
        "parity": parity,
        "metrics": {
            "validation": metrics["validation"],
            "test": metrics["test"],
            "label_agreement": metrics["label_agreement"],
            "epochs": sum("epoch" in row for row in metrics["history"]),
            "behaviour": metrics["behaviour"],
            # Every model of `ranker evaluate` on the same split, when the run came from --export.
            "comparison": metrics.get("comparison"),
        },
        "data": {"source": config["source"], "max_queries": config["max_queries"], "seed": config["seed"]},
        "files": {str(p.relative_to(staging)): sha256_of(p) for p in files},
    }
