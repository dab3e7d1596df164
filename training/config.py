"""The typed configuration of one training run, saved as config.json in the run folder."""

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from training.labels import LabelConfig
from training.model.mmoe import MMoEConfig
from training.sampling import SamplingConfig
from training.simulation.behaviour import SimulationConfig

STOPPING_RULES = ("validation_ndcg", "validation_loss")


@dataclass(frozen=True)
class OptimizerConfig:
    epochs: int = 12
    batch_size: int = 512
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    # Early stopping keeps the epoch with the best validation score and stops after `patience`
    # epochs without a better one. "validation_ndcg": NDCG@10 against the validation lists' human
    # grades of the trained heads' equal-weight fused score (the measure the evaluation selects
    # models by). "validation_loss": the behavioural tasks' loss, which keeps improving for
    # epochs after the human NDCG@10 has peaked, as the heads fit the simulated users' tastes.
    stopping: str = "validation_ndcg"
    patience: int = 3
    # Loss weight per task head, in TASKS order: click, add_to_cart, purchase, relevance.
    task_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.5)
    # Encoder fine-tuning (TrainConfig.tuned_layers > 0) runs after the ranker has trained with
    # the frozen encoder: this many joint steps, each on `tuning_lists` whole result lists. One
    # MiniLM layer costs about 3.5 MFLOP per token forward, so a step of 16 lists (about 100
    # titles of up to 64 tokens) with 2 tuned layers takes seconds on a 2-core CPU.
    tuning_steps: int = 100
    tuning_lists: int = 16
    # Pre-trained encoder weights need much smaller steps than the ranker; the ranker continues
    # at learning_rate * tuning_ranker_scale.
    encoder_learning_rate: float = 3e-5
    tuning_ranker_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.stopping not in STOPPING_RULES:
            raise ValueError(f"stopping {self.stopping!r} is not one of {STOPPING_RULES}")


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str = "data"
    source: str = "home_depot"
    # Keep this many queries, drawn with the seed (None = all); tests and smoke runs use a slice.
    max_queries: int | None = None
    seed: int = 7
    validation_share: float = 0.1
    test_share: float = 0.1
    encoder_path: str | None = None
    # Top encoder layers trained jointly with the ranker: 0 keeps the encoder frozen, a number at
    # least the encoder's depth (6 for MiniLM) tunes every transformer layer.
    tuned_layers: int = 0
    max_query_tokens: int = 32
    max_title_tokens: int = 64
    use_relevance_labels: bool = True
    # Share of training lists built without query-product statistics (see build_ranking_set).
    pair_stats_dropout: float = 0.5
    threads: int = 2
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    model: MMoEConfig = field(default_factory=MMoEConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


def _from_dict(kind: type, data: dict[str, Any]) -> Any:
    """Rebuild nested frozen dataclasses from their asdict() form; lists become tuples."""
    values = {}
    for item in fields(kind):
        if item.name not in data:
            continue
        value = data[item.name]
        factory = item.default_factory
        if isinstance(factory, type) and is_dataclass(factory):
            value = _from_dict(factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return kind(**values)
