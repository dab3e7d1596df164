"""The MMoE ranker graph in ONNX Runtime."""

import numpy as np
import onnxruntime as ort

RANKER_INPUTS = ("categorical", "continuous", "query_embedding", "product_embedding")
RANKER_OUTPUT = "task_probabilities"


class RankerModel:
    """Score candidates: task probabilities float32 [candidates, tasks]."""

    def __init__(self, session: ort.InferenceSession, tasks: tuple[str, ...]) -> None:
        names = tuple(i.name for i in session.get_inputs())
        if names != RANKER_INPUTS:
            raise ValueError(f"ranker graph inputs are {names}, expected {RANKER_INPUTS}")
        self.session = session
        self.tasks = tasks

    def score(
        self,
        categorical: np.ndarray,
        continuous: np.ndarray,
        query_embedding: np.ndarray,
        product_embedding: np.ndarray,
    ) -> np.ndarray:
        feeds = dict(
            zip(RANKER_INPUTS, (categorical, continuous, query_embedding, product_embedding), strict=True)
        )
        return self.session.run([RANKER_OUTPUT], feeds)[0]
