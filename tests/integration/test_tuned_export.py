"""A run with a fine-tuned encoder exports that encoder and re-embeds its catalog with it."""

import json
from pathlib import Path

import numpy as np
import pytest

from service.engines.encoder import TextEncoder
from service.engines.manifest import read_current
from service.engines.onnx import create_session

pytestmark = pytest.mark.integration
# Tiny on purpose: this checks the export path, not the model's quality.
QUERIES = 120
USERS = 40
COMPARISON = {"winner": "mmoe_tuned_top1", "models": {}}


@pytest.fixture(scope="module")
def tuned_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from training.config import OptimizerConfig, TrainConfig
    from training.export import export_bundle
    from training.pipeline import run_training
    from training.simulation.behaviour import SimulationConfig

    config = TrainConfig(
        data_dir=str(data_dir),
        max_queries=QUERIES,
        tuned_layers=1,
        simulation=SimulationConfig(n_users=USERS),
        optimizer=OptimizerConfig(epochs=1, tuning_steps=3, tuning_lists=4),
    )
    run_dir = run_training(config, tmp_path_factory.mktemp("runs"), comparison=COMPARISON)
    models = tmp_path_factory.mktemp("models")
    export_bundle(run_dir, models, set_current=True)
    return run_dir, models / read_current(models)


def test_manifest_records_tuning(tuned_bundle):
    _, bundle = tuned_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())

    assert manifest["encoder"]["tuned_layers"] == 1
    assert manifest["metrics"]["comparison"] == COMPARISON


def test_history_records_fine_tuning(tuned_bundle):
    run_dir, _ = tuned_bundle
    history = json.loads((run_dir / "metrics.json").read_text())["history"]

    assert history[-1]["fine_tuning"] == 1
    assert history[-1]["steps"] == 3


def test_catalog_from_tuned_encoder(tuned_bundle):
    _, bundle = tuned_bundle
    products = [json.loads(line) for line in (bundle / "products.jsonl").read_text().splitlines()[:20]]
    manifest = json.loads((bundle / "manifest.json").read_text())
    encoder = TextEncoder(
        create_session(bundle / "encoder.onnx", "cpu", 1),
        bundle / "tokenizer" / "tokenizer.json",
        manifest["encoder"]["max_title_tokens"],
    )

    embedded = encoder.embed_many([p["title"] for p in products])
    stored = np.load(bundle / "product_embeddings.npy")[: len(products)]

    assert np.abs(embedded - stored).max() < 1e-4


def test_tuned_encoder_differs_from_base(tuned_bundle, data_dir):
    from training.model.encoder import load_encoder

    _, bundle = tuned_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    base, tokenizer, _ = load_encoder(None)
    title = json.loads((bundle / "products.jsonl").read_text().splitlines()[0])["title"]
    batch = tokenizer([title], return_tensors="pt")
    tuned = TextEncoder(
        create_session(bundle / "encoder.onnx", "cpu", 1),
        bundle / "tokenizer" / "tokenizer.json",
        manifest["encoder"]["max_title_tokens"],
    ).embed_many([title])

    original = base(batch["input_ids"], batch["attention_mask"]).detach().numpy()

    assert np.abs(tuned - original).max() > 1e-4
