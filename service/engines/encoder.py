"""Query and title encoder: a Hugging Face fast tokenizer and an ONNX sentence-embedding graph."""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ENCODER_INPUTS = ("input_ids", "attention_mask")
ENCODER_OUTPUT = "sentence_embedding"


class TextEncoder:
    """Embed texts into unit-length float32 vectors [n, dimension]."""

    def __init__(self, session: ort.InferenceSession, tokenizer_file: Path, max_tokens: int) -> None:
        self.session = session
        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.dimension = int(session.get_outputs()[0].shape[-1])

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (input_ids, attention_mask), int64 [n, longest], right-padded with 0."""
        encodings = self.tokenizer.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encodings)
        input_ids = np.zeros((len(encodings), longest), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1
        return input_ids, attention_mask

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        input_ids, attention_mask = self.tokenize(texts)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([ENCODER_OUTPUT], feeds)[0]

    def embed_many(
        self,
        texts: Sequence[str],
        batch_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed a large list in batches of similar length, which wastes little on padding."""
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]
        order = np.argsort(lengths, kind="stable")
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            result[rows] = self.embed([texts[i] for i in rows])
            if progress is not None:
                progress(len(rows))
        return result
