"""Multi-gate Mixture-of-Experts ranker (Ma et al., KDD 2018) over tabular and text inputs.

Inputs, for n (user, query, product) rows:
    categorical        int64   [n, 3]   brand, category, user segment ids (0 = unknown)
    continuous         float32 [n, 21]  raw values, standardized inside the graph
    query_embedding    float32 [n, d]   unit length
    product_embedding  float32 [n, d]   unit length
Output:
    task_probabilities float32 [n, len(TASKS)]

The text block (`MMoEConfig.text_block`) is [cosine, q * p, |q - p|] of the two embeddings
("interactions"), the cosine alone ("cosine"), or nothing ("none", the tabular-only baseline,
which cannot be exported because its graph would drop the embedding inputs). The shared bottom
feeds the experts, and each task has a softmax gate over the experts and a tower with a sigmoid
output.

Position bias: in training, each task's logit gets a learned bias per logged position
(`position_bias`), so the towers learn what makes a product attractive rather than where the old
ranker put it. Serving ranks without positions, which is the same as giving every candidate the
same position; the exported graph has no position input.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

TASKS: tuple[str, ...] = ("click", "add_to_cart", "purchase", "relevance")
# Logged positions beyond this share one position-bias entry.
MAX_POSITION = 20
SERVED_TASKS: tuple[str, ...] = ("click", "add_to_cart", "purchase")
TEXT_BLOCKS: tuple[str, ...] = ("interactions", "cosine", "none")


@dataclass(frozen=True)
class MMoEConfig:
    brand_dim: int = 16
    category_dim: int = 8
    segment_dim: int = 4
    bottom_dim: int = 256
    n_experts: int = 6
    expert_dims: tuple[int, int] = (128, 64)
    tower_dim: int = 32
    dropout: float = 0.1
    text_block: str = "interactions"

    def __post_init__(self) -> None:
        if self.text_block not in TEXT_BLOCKS:
            raise ValueError(f"text_block {self.text_block!r} is not one of {TEXT_BLOCKS}")

    def to_dict(self) -> dict:
        return asdict(self)


class MMoERanker(nn.Module):
    def __init__(
        self,
        config: MMoEConfig,
        cardinalities: tuple[int, int, int],
        continuous_mean: np.ndarray,
        continuous_std: np.ndarray,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.cardinalities = tuple(cardinalities)
        self.embedding_dim = embedding_dim
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, dim)
            for size, dim in zip(
                cardinalities, (config.brand_dim, config.category_dim, config.segment_dim), strict=True
            )
        )
        self.register_buffer("continuous_mean", torch.as_tensor(continuous_mean, dtype=torch.float32))
        self.register_buffer("continuous_std", torch.as_tensor(continuous_std, dtype=torch.float32))

        text_dim = {"interactions": 1 + 2 * embedding_dim, "cosine": 1, "none": 0}[config.text_block]
        input_dim = sum(e.embedding_dim for e in self.embeddings) + len(continuous_mean) + text_dim
        self.bottom = nn.Sequential(
            nn.Linear(input_dim, config.bottom_dim), nn.ReLU(), nn.Dropout(config.dropout)
        )
        hidden, out = config.expert_dims
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(config.bottom_dim, hidden), nn.ReLU(), nn.Linear(hidden, out), nn.ReLU())
            for _ in range(config.n_experts)
        )
        self.gates = nn.ModuleList(nn.Linear(config.bottom_dim, config.n_experts) for _ in TASKS)
        # [positions, tasks]; row 0 is unused (positions are 1-based), relevance's column stays 0
        # because the relevance label is already position-debiased.
        self.position_bias = nn.Embedding(MAX_POSITION + 1, len(TASKS))
        nn.init.zeros_(self.position_bias.weight)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(out, config.tower_dim), nn.ReLU(), nn.Linear(config.tower_dim, 1))
            for _ in TASKS
        )

    def forward(
        self,
        categorical: torch.Tensor,
        continuous: torch.Tensor,
        query_embedding: torch.Tensor,
        product_embedding: torch.Tensor,
    ) -> torch.Tensor:
        return torch.sigmoid(self.logits(categorical, continuous, query_embedding, product_embedding))

    def logits(
        self, categorical, continuous, query_embedding, product_embedding, positions=None
    ) -> torch.Tensor:
        embedded = [table(categorical[:, i]) for i, table in enumerate(self.embeddings)]
        standardized = (continuous - self.continuous_mean) / self.continuous_std
        text = text_features(query_embedding, product_embedding, self.config.text_block)
        shared = self.bottom(torch.cat([*embedded, standardized, *text], dim=1))

        experts = torch.stack([expert(shared) for expert in self.experts], dim=1)  # [n, experts, out]
        task_logits = []
        for gate, tower in zip(self.gates, self.towers, strict=True):
            weights = torch.softmax(gate(shared), dim=1).unsqueeze(-1)  # [n, experts, 1]
            task_logits.append(tower((weights * experts).sum(dim=1)))
        logits = torch.cat(task_logits, dim=1)  # [n, tasks]
        if positions is not None:
            bias = self.position_bias(positions.clamp(1, MAX_POSITION))
            logits = logits + bias * self._behavioural_mask
        return logits

    @property
    def _behavioural_mask(self) -> torch.Tensor:
        return torch.tensor([task != "relevance" for task in TASKS], dtype=torch.float32)


def text_features(query_embedding: torch.Tensor, product_embedding: torch.Tensor, block: str) -> list:
    """Return the text block's tensors, each [n, width], for `MMoEConfig.text_block`."""
    if block == "none":
        return []
    cosine = (query_embedding * product_embedding).sum(dim=1, keepdim=True)
    if block == "cosine":
        return [cosine]
    return [cosine, query_embedding * product_embedding, (query_embedding - product_embedding).abs()]


def ranker_from_checkpoint(checkpoint: dict) -> MMoERanker:
    """Rebuild a ranker saved by the training pipeline (see `checkpoint_of`)."""
    n_continuous = checkpoint["n_continuous"]
    stored = dict(checkpoint["model_config"])
    # Checkpoints written before `text_block` had a boolean switch for the same choice.
    if "use_embedding_interactions" in stored:
        stored["text_block"] = "interactions" if stored.pop("use_embedding_interactions") else "cosine"
    config = MMoEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
    model = MMoERanker(
        config,
        tuple(checkpoint["cardinalities"]),
        np.zeros(n_continuous),
        np.ones(n_continuous),
        checkpoint["embedding_dim"],
    )
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def checkpoint_of(model: MMoERanker) -> dict:
    return {
        "state_dict": model.state_dict(),
        "model_config": model.config.to_dict(),
        "cardinalities": model.cardinalities,
        "n_continuous": int(model.continuous_mean.shape[0]),
        "embedding_dim": model.embedding_dim,
    }
