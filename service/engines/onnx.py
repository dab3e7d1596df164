"""ONNX Runtime session creation with the CUDA provider when present, the CPU one otherwise."""

import logging
from pathlib import Path

import onnxruntime as ort

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def requested_providers(device: str) -> list[str]:
    """Return providers for `device` ("auto", "cpu" or "cuda"), best first."""
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError(
            f"RANKER_DEVICE=cuda but ONNX Runtime offers only {available}; install the `gpu` extra "
            "(onnxruntime-gpu) with a CUDA runtime, or set RANKER_DEVICE=auto"
        )
    return [CPU]


def create_session(path: Path, device: str, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads fight numpy and the event loop for the same few cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=requested_providers(device))
    logger.info("loaded %s with providers %s", path.name, session.get_providers())
    return session


def provider_in_use(session: ort.InferenceSession) -> str:
    """Return the first provider of the session; ONNX Runtime drops ones that failed to load."""
    return session.get_providers()[0]
