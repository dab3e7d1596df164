"""The exported bundle: manifest, checksums, and ONNX-vs-PyTorch parity at several shapes."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.engines.bundle import load_bundle
from service.engines.manifest import BundleError, read_current, sha256_of
from service.engines.ranker import RANKER_INPUTS, RANKER_OUTPUT
from training.model.encoder import load_encoder
from training.model.mmoe import TASKS, ranker_from_checkpoint

# Largest |ONNX - PyTorch| allowed for a unit-length embedding component or a probability.
ENCODER_TOLERANCE = 1e-4
RANKER_TOLERANCE = 1e-4

# Batches of texts whose padded shapes differ from the export example (2 texts, about 8 tokens).
ENCODER_BATCHES = [
    ["drill"],
    ["angle bracket", "deck over paint"],
    ["1/2 in. x 10 ft. copper pipe type m", "cordless drill", "white paint"],
    ["behr premium plus ultra 1 gal. pure white eggshell enamel interior paint and primer in one"] * 4
    + ["x", "faucet"],
]


@pytest.fixture(scope="module")
def manifest(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / "manifest.json").read_text())


def test_manifest_lists_every_file(bundle_dir, manifest):
    on_disk = {str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file()}

    assert set(manifest["files"]) == on_disk - {"manifest.json"}


def test_manifest_checksums_match(bundle_dir, manifest):
    for relative, expected in manifest["files"].items():
        assert sha256_of(bundle_dir / relative) == expected, relative


def test_manifest_describes_model(manifest):
    assert manifest["ranker"]["tasks"] == list(TASKS)
    assert [i["name"] for i in manifest["ranker"]["inputs"]] == list(RANKER_INPUTS)
    assert manifest["encoder"]["dimension"] == 384
    assert set(manifest["fusion"]["weights"]) == set(TASKS)
    assert 0.0 < manifest["metrics"]["test"]["model"]["ndcg@10"] <= 1.0


def test_current_pointer_names_bundle(models_dir, bundle_dir):
    assert read_current(models_dir) == bundle_dir.name


@pytest.mark.parametrize("texts", ENCODER_BATCHES, ids=lambda t: f"batch{len(t)}")
def test_encoder_parity(bundle_dir, texts):
    encoder, tokenizer, _ = load_encoder(None)
    session = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    batch = tokenizer(texts, padding=True, return_tensors="np")
    feeds = {
        "input_ids": batch["input_ids"].astype(np.int64),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }

    onnx_embeddings = session.run(None, feeds)[0]
    with torch.no_grad():
        torch_embeddings = encoder(
            torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])
        ).numpy()

    assert onnx_embeddings.shape == (len(texts), 384)
    assert np.abs(onnx_embeddings - torch_embeddings).max() < ENCODER_TOLERANCE


def test_encoder_padding_invariant(bundle_dir):
    """Padding a text to a longer batch must not change its embedding."""
    bundle = load_bundle(bundle_dir.parent, bundle_dir.name, "cpu", 1)

    alone = bundle.encoder.embed(["drill"])[0]
    padded = bundle.encoder.embed(["drill", "a much longer title that forces padding of the first text"])[0]

    assert np.abs(alone - padded).max() < ENCODER_TOLERANCE


@pytest.mark.parametrize("rows", [1, 5, 333])
def test_ranker_parity(trained_run, bundle_dir, rows):
    checkpoint = torch.load(trained_run / "model.pt", weights_only=False)
    model = ranker_from_checkpoint(checkpoint)
    session = ort.InferenceSession(str(bundle_dir / "ranker.onnx"), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(rows)
    inputs = (
        torch.stack(
            [torch.randint(0, n, (rows,), generator=generator) for n in checkpoint["cardinalities"]], dim=1
        ),
        torch.randn(rows, checkpoint["n_continuous"], generator=generator),
        torch.nn.functional.normalize(torch.randn(rows, 384, generator=generator), dim=1),
        torch.nn.functional.normalize(torch.randn(rows, 384, generator=generator), dim=1),
    )

    with torch.no_grad():
        expected = model(*inputs).numpy()
    actual = session.run([RANKER_OUTPUT], dict(zip(RANKER_INPUTS, (x.numpy() for x in inputs), strict=True)))[
        0
    ]

    assert actual.shape == (rows, len(TASKS))
    assert np.abs(actual - expected).max() < RANKER_TOLERANCE


def _copy_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models" / bundle_dir.name
    shutil.copytree(bundle_dir, target)
    return target


def test_tampered_file_rejected(bundle_dir, tmp_path):
    copy = _copy_bundle(bundle_dir, tmp_path)
    with open(copy / "ranker.onnx", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(BundleError, match="ranker.onnx: sha256 mismatch"):
        load_bundle(copy.parent, copy.name, "cpu", 1)


def test_truncated_file_rejected(bundle_dir, tmp_path):
    copy = _copy_bundle(bundle_dir, tmp_path)
    data = (copy / "encoder.onnx").read_bytes()
    (copy / "encoder.onnx").write_bytes(data[: len(data) // 2])

    with pytest.raises(BundleError, match="encoder.onnx: sha256 mismatch"):
        load_bundle(copy.parent, copy.name, "cpu", 1)


def test_missing_file_rejected(bundle_dir, tmp_path):
    copy = _copy_bundle(bundle_dir, tmp_path)
    (copy / "users.jsonl").unlink()

    with pytest.raises(BundleError, match="users.jsonl: missing"):
        load_bundle(copy.parent, copy.name, "cpu", 1)


def test_manifest_schema_version_rejected(bundle_dir, tmp_path):
    copy = _copy_bundle(bundle_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="schema_version=99"):
        load_bundle(copy.parent, copy.name, "cpu", 1)


def test_feature_schema_mismatch_rejected(bundle_dir, tmp_path):
    copy = _copy_bundle(bundle_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["feature_schema"]["continuous"] = manifest["feature_schema"]["continuous"][:-1]
    (copy / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="feature schema differs"):
        load_bundle(copy.parent, copy.name, "cpu", 1)


def test_no_current_bundle_message(tmp_path):
    with pytest.raises(BundleError, match="ranker up"):
        load_bundle(tmp_path, None, "cpu", 1)


def test_int8_manifest_records_quality(int8_bundle_dir):
    manifest = json.loads((int8_bundle_dir / "manifest.json").read_text())
    quantization = manifest["quantization"]

    assert manifest["precision"] == "int8"
    assert quantization["query_cosine"] > 0.98
    assert abs(quantization["delta"]["ndcg@10"]) < 0.02
    assert quantization["test_fp32"]["lists"] == quantization["test_int8"]["lists"]


def test_int8_bundle_smaller_and_clean(bundle_dir, int8_bundle_dir):
    fp32_size = (bundle_dir / "encoder.onnx").stat().st_size
    int8_size = (int8_bundle_dir / "encoder.onnx").stat().st_size

    assert int8_size < fp32_size / 3
    assert list(int8_bundle_dir.glob("*.fp32.onnx")) == []


def test_int8_bundle_loads_and_ranks(int8_bundle_dir):
    bundle = load_bundle(int8_bundle_dir.parent, int8_bundle_dir.name, "cpu", 1)
    fp32_like = bundle.encoder.embed(["cordless drill"])

    assert fp32_like.shape == (1, 384)
    assert abs(float(np.linalg.norm(fp32_like)) - 1.0) < 1e-3
