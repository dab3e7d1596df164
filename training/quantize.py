"""int8 dynamic quantization of a bundle's encoder and ranker, and its effect on ranking quality.

Weights become int8 and activations are quantized per batch at run time (ONNX Runtime's
`quantize_dynamic`). The encoder is quantized per output channel, which keeps query embeddings
closer to fp32 than one scale per tensor does. Product embeddings in the bundle stay those of
the fp32 encoder. At serving time only queries, and titles of products the bundle does not
know, go through the int8 encoder.
"""

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from service.engines.encoder import TextEncoder
from service.engines.ranker import RANKER_INPUTS, RANKER_OUTPUT
from service.pipeline.fusion import fuse_scores
from training.dataset import RankingSet, load_ranking_set
from training.evaluation import ranking_report
from training.model.mmoe import SERVED_TASKS, TASKS

logger = logging.getLogger(__name__)
SCORE_BATCH = 8192


def quantize_models(staging: Path) -> None:
    """Replace encoder.onnx and ranker.onnx in `staging` with int8 versions."""
    for name, per_channel in (("encoder", True), ("ranker", False)):
        source = staging / f"{name}.onnx"
        fp32 = staging / f"{name}.fp32.onnx"
        shutil.move(source, fp32)
        with _root_logging_at(logging.WARNING):
            quantize_dynamic(fp32, source, per_channel=per_channel, weight_type=QuantType.QInt8)
        logger.info(
            "quantized %s to int8: %.1f MB -> %.1f MB",
            name,
            fp32.stat().st_size / 1e6,
            source.stat().st_size / 1e6,
        )


@contextmanager
def _root_logging_at(level: int) -> Iterator[None]:
    """Raise the root logger's level for a while: the quantizer logs one INFO line per tensor."""
    previous = logging.root.level
    logging.root.setLevel(level)
    try:
        yield
    finally:
        logging.root.setLevel(previous)


def quality_change(
    run_dir: Path, staging: Path, fusion_weights: dict[str, float], max_query_tokens: int
) -> dict:
    """Compare fp32 and int8 models on the run's held-out test lists.

    Returns the test metrics of both, their difference, and the mean cosine similarity of fp32
    and int8 query embeddings. Expects `<name>.fp32.onnx` beside the int8 `<name>.onnx`.
    """
    test_set = run_dir / "test_set.npz"
    if not test_set.is_file():
        raise FileNotFoundError(
            f"{test_set} not found: int8 export measures quality on the run's test lists, which runs "
            "trained before this version did not save. Train again, or export with --precision fp32."
        )
    data, query_texts = load_ranking_set(test_set)
    product_embeddings = np.load(staging / "product_embeddings.npy")
    queries = sorted(set(data.query_rows.tolist()))
    texts = [query_texts[i] for i in queries]
    tokenizer = staging / "tokenizer" / "tokenizer.json"

    results, embeddings = {}, {}
    for precision, suffix in (("fp32", ".fp32.onnx"), ("int8", ".onnx")):
        encoder = TextEncoder(_session(staging / f"encoder{suffix}"), tokenizer, max_query_tokens)
        table = np.zeros((len(query_texts), encoder.dimension), dtype=np.float32)
        table[queries] = encoder.embed_many(texts)
        embeddings[precision] = table[queries]
        probabilities = _score(_session(staging / f"ranker{suffix}"), data, table, product_embeddings)
        results[precision] = _report(data, probabilities, fusion_weights)

    cosine = float((embeddings["fp32"] * embeddings["int8"]).sum(axis=1).mean())
    delta = {metric: results["int8"][metric] - results["fp32"][metric] for metric in results["fp32"]}
    logger.info(
        "int8 vs fp32 on %d test lists: NDCG@10 %+.4f, query embedding cosine %.4f",
        int(results["fp32"]["lists"]),
        delta["ndcg@10"],
        cosine,
    )
    return {
        "test_fp32": results["fp32"],
        "test_int8": results["int8"],
        "delta": delta,
        "query_cosine": cosine,
    }


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _score(session, data: RankingSet, query_table: np.ndarray, product_table: np.ndarray) -> np.ndarray:
    outputs = []
    for start in range(0, len(data), SCORE_BATCH):
        rows = slice(start, start + SCORE_BATCH)
        inputs = (
            data.categorical[rows],
            data.continuous[rows],
            query_table[data.query_rows[rows]],
            product_table[data.product_rows[rows]],
        )
        outputs.append(session.run([RANKER_OUTPUT], dict(zip(RANKER_INPUTS, inputs, strict=True)))[0])
    return np.concatenate(outputs)


def _report(data: RankingSet, probabilities: np.ndarray, fusion_weights: dict[str, float]) -> dict:
    outcomes = {task: data.targets[:, i] for i, task in enumerate(SERVED_TASKS)}
    scores = fuse_scores(probabilities, TASKS, fusion_weights)
    return ranking_report(data.list_ids, scores, data.human_relevance, outcomes)
