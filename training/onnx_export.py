"""ONNX export of the sentence encoder and the MMoE ranker with torch's dynamo exporter.

The legacy TorchScript exporter (`dynamo=False`) produced encoder embeddings that differed from
PyTorch by up to about 0.5 with torch 2.13 and transformers 5, so both graphs go through
`torch.onnx.export(..., dynamo=True)` with opset 18 and symbolic batch and sequence sizes.
"""

import logging
from pathlib import Path

import torch

from service.engines.encoder import ENCODER_OUTPUT
from service.engines.ranker import RANKER_INPUTS, RANKER_OUTPUT
from training.model.encoder import SentenceEncoder
from training.model.mmoe import MMoERanker

logger = logging.getLogger(__name__)
OPSET = 18


def export_encoder(encoder: SentenceEncoder, tokenizer, path: Path, max_tokens: int) -> None:
    example = tokenizer(["cordless drill", "angle bracket for deck posts"], padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=max_tokens)
    program = torch.onnx.export(
        encoder.eval(),
        (example["input_ids"], example["attention_mask"]),
        dynamo=True,
        opset_version=OPSET,
        input_names=["input_ids", "attention_mask"],
        output_names=[ENCODER_OUTPUT],
        dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
        verbose=False,
    )
    _save(program, path)


def export_ranker(model: MMoERanker, path: Path, n_continuous: int, embedding_dim: int) -> None:
    rows = 3
    example = (
        torch.ones((rows, 3), dtype=torch.int64),
        torch.zeros((rows, n_continuous), dtype=torch.float32),
        torch.nn.functional.normalize(torch.randn(rows, embedding_dim), dim=1),
        torch.nn.functional.normalize(torch.randn(rows, embedding_dim), dim=1),
    )
    candidates = torch.export.Dim("candidates")
    program = torch.onnx.export(
        model.eval(),
        example,
        dynamo=True,
        opset_version=OPSET,
        input_names=list(RANKER_INPUTS),
        output_names=[RANKER_OUTPUT],
        dynamic_shapes={name: {0: candidates} for name in RANKER_INPUTS},
        verbose=False,
    )
    _save(program, path)


def _save(program, path: Path) -> None:
    # Weights stay inside the .onnx file: one file per graph is simpler to checksum and swap.
    program.save(str(path), external_data=False)
    logger.info("exported %s (%.1f MB)", path.name, path.stat().st_size / 1e6)
