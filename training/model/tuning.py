"""Fine-tuning of the encoder's top k layers jointly with the ranker, affordable on a CPU.

The layers below the tuned ones never change, so their output for each text is computed once
and cached (`HiddenStateCache`, float16, padding stripped). A training batch then runs only the
top k layers, on the distinct queries and titles of the batch, followed by the mean pooling and
L2 normalization of `SentenceEncoder`. With k = all the cache contains the output of the embedding
layer, which stays frozen.

After training, `merge_into` writes the tuned layers back into a full `SentenceEncoder`, which
is exported to ONNX and re-embeds the whole catalog, so serving uses the tuned encoder.
"""

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.model.encoder import SentenceEncoder

logger = logging.getLogger(__name__)
CACHE_BATCH = 128
LOOKUP_BATCH = 1024


def resolve_tuned_layers(tuned_layers: int, n_layers: int) -> int:
    """Map the configured k to a layer count; any k >= n_layers means all layers."""
    if tuned_layers < 0:
        raise ValueError(f"tuned_layers must be >= 0, got {tuned_layers}")
    return min(tuned_layers, n_layers)


@dataclass
class HiddenStateCache:
    """Hidden states entering the first tuned layer, one float16 [tokens, hidden] tensor per text."""

    states: list[torch.Tensor]

    def padded(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return float32 states [b, tokens, hidden] and the 0/1 mask [b, tokens] of `rows`."""
        chosen = [self.states[int(i)] for i in rows]
        lengths = torch.tensor([len(s) for s in chosen])
        hidden = nn.utils.rnn.pad_sequence(chosen, batch_first=True).float()
        mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).float()
        return hidden, mask


def build_caches(
    encoder: SentenceEncoder,
    tokenizer,
    texts: list[str],
    max_tokens: int,
    tuned_layers: list[int],
    description: str,
) -> dict[int, HiddenStateCache]:
    """Run the frozen encoder once over `texts` and keep the input of the top k layers per k.

    Texts are processed sorted by length so that a batch carries little padding.
    """
    n_layers = int(encoder.model.config.num_hidden_layers)
    wanted = {k: n_layers - resolve_tuned_layers(k, n_layers) for k in tuned_layers if k > 0}
    states: dict[int, list] = {k: [None] * len(texts) for k in wanted}
    order = np.argsort([len(t) for t in texts], kind="stable")
    encoder.eval()
    with torch.no_grad(), tqdm(total=len(texts), desc=description, unit="text", mininterval=2) as bar:
        for start in range(0, len(order), CACHE_BATCH):
            rows = order[start : start + CACHE_BATCH]
            batch = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            output = encoder.model(**batch, output_hidden_states=True)
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            for k, layer in wanted.items():
                hidden = output.hidden_states[layer].to(torch.float16)
                for j, row in enumerate(rows):
                    states[k][row] = hidden[j, : lengths[j]].clone()
            bar.update(len(rows))
    return {k: HiddenStateCache(states[k]) for k in wanted}


class TopLayers(nn.Module):
    """The top k transformer layers of a BERT encoder, then mean pooling and L2 normalization."""

    def __init__(self, encoder: SentenceEncoder, k: int) -> None:
        super().__init__()
        layers = encoder.model.encoder.layer
        self.first = len(layers) - k
        self.layers = nn.ModuleList(copy.deepcopy(layers[self.first :]))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # BERT's additive attention mask [b, 1, 1, tokens]: 0 keeps a token, a large negative hides padding.
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            output = layer(hidden, attention_mask=additive)
            hidden = output[0] if isinstance(output, tuple) else output
        weights = mask.unsqueeze(-1)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def merge_into(self, encoder: SentenceEncoder) -> SentenceEncoder:
        """Return a copy of `encoder` whose top layers are the tuned ones."""
        merged = copy.deepcopy(encoder)
        for offset, layer in enumerate(self.layers):
            merged.model.encoder.layer[self.first + offset].load_state_dict(layer.state_dict())
        return merged.eval()


class TunedEmbeddings(nn.Module):
    """Query and product embeddings computed by shared tuned top layers from cached states."""

    def __init__(self, top: TopLayers, queries: HiddenStateCache, products: HiddenStateCache) -> None:
        super().__init__()
        self.top = top
        self.query_cache = queries
        self.product_cache = products

    def lookup(
        self, query_rows: torch.Tensor, product_rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (query [n, d], product [n, d]) embeddings, each distinct text encoded once."""
        return self._embed(self.query_cache, query_rows), self._embed(self.product_cache, product_rows)

    def _embed(self, cache: HiddenStateCache, rows: torch.Tensor) -> torch.Tensor:
        distinct, inverse = torch.unique(rows, return_inverse=True)
        hidden, mask = cache.padded(distinct)
        return self.top(hidden, mask)[inverse]

    def embed_all(self, cache: HiddenStateCache) -> torch.Tensor:
        """Return float32 [texts, d] embeddings of every cached text, without gradients."""
        self.eval()
        order = np.argsort([len(s) for s in cache.states], kind="stable")
        result = torch.empty(len(order), self.top.layers[0].output.dense.out_features)
        with torch.no_grad():
            for start in range(0, len(order), LOOKUP_BATCH):
                rows = torch.from_numpy(order[start : start + LOOKUP_BATCH])
                hidden, mask = cache.padded(rows)
                result[rows] = self.top(hidden, mask)
        return result
