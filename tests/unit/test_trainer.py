"""Tests of the training loop's early-stopping rules on a small synthetic ranking set."""

import dataclasses

import numpy as np
import pytest
import torch

from training.config import OptimizerConfig
from training.dataset import RankingSet
from training.model.mmoe import TASKS, MMoEConfig, MMoERanker
from training.trainer import EmbeddingTables, fit, validation_ndcg

EMBEDDING_DIM = 8
LIST_SIZE = 5


def _ranking_set(n_lists: int, seed: int) -> RankingSet:
    """Lists whose human grade and relevance label follow the first continuous feature."""
    rng = np.random.default_rng(seed)
    n = n_lists * LIST_SIZE
    continuous = rng.normal(size=(n, 21)).astype(np.float32)
    relevance = (continuous[:, 0] > 0).astype(np.float32)
    click = (rng.random(n) < 0.2 + 0.5 * relevance).astype(np.float32)
    targets = np.stack([click, click * 0.5, click * 0.1, relevance], axis=1).astype(np.float32)
    return RankingSet(
        list_ids=np.repeat(np.arange(n_lists), LIST_SIZE),
        categorical=np.zeros((n, 3), dtype=np.int64),
        continuous=continuous,
        query_rows=np.repeat(np.arange(n_lists), LIST_SIZE) % 4,
        product_rows=np.arange(n) % 16,
        targets=targets,
        human_relevance=relevance,
        positions=np.tile(np.arange(1, LIST_SIZE + 1), n_lists),
    )


def _tables() -> EmbeddingTables:
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, EMBEDDING_DIM, generator=generator), dim=1)
    products = torch.nn.functional.normalize(torch.randn(16, EMBEDDING_DIM, generator=generator), dim=1)
    return EmbeddingTables(queries, products)


def _model() -> MMoERanker:
    torch.manual_seed(0)
    config = MMoEConfig(bottom_dim=16, n_experts=2, expert_dims=(8, 8), tower_dim=4)
    return MMoERanker(config, (2, 2, 2), np.zeros(21), np.ones(21), EMBEDDING_DIM)


class _FixedProbabilities(torch.nn.Module):
    """A stand-in ranker that returns the same probabilities [n, tasks] for any input."""

    def __init__(self, probabilities: np.ndarray) -> None:
        super().__init__()
        self.probabilities = torch.from_numpy(probabilities)

    def forward(self, categorical, continuous, query_embedding, product_embedding) -> torch.Tensor:
        return self.probabilities[: len(categorical)]


def test_unknown_stopping_rule_raises():
    with pytest.raises(ValueError, match="validation_auc"):
        OptimizerConfig(stopping="validation_auc")


def test_validation_ndcg_uses_weighted_heads():
    data = _ranking_set(n_lists=6, seed=1)
    # The relevance head orders each list by its human grade, the click head reverses it.
    probabilities = np.full((len(data), len(TASKS)), 0.5, dtype=np.float32)
    probabilities[:, TASKS.index("relevance")] = 0.1 + 0.8 * data.human_relevance
    probabilities[:, TASKS.index("click")] = 0.9 - 0.8 * data.human_relevance
    model = _FixedProbabilities(probabilities)
    relevance_only = torch.tensor([0.0, 0.0, 0.0, 1.0])
    click_only = torch.tensor([1.0, 0.0, 0.0, 0.0])

    assert validation_ndcg(model, data, _tables(), relevance_only) == pytest.approx(1.0)
    assert validation_ndcg(model, data, _tables(), click_only) < 0.9


@pytest.mark.parametrize("stopping", ["validation_ndcg", "validation_loss"])
def test_fit_keeps_best_epoch(stopping):
    train, validation = _ranking_set(n_lists=60, seed=2), _ranking_set(n_lists=20, seed=3)
    config = OptimizerConfig(epochs=4, batch_size=64, patience=4, stopping=stopping)
    model = _model()

    history = fit(model, train, validation, _tables(), config, use_relevance_labels=True, seed=0)

    best = max(history, key=lambda record: record["stopping_score"])
    weights = torch.tensor(config.task_weights)
    assert len(history) == 4
    if stopping == "validation_ndcg":
        assert validation_ndcg(model, validation, _tables(), weights) == pytest.approx(best["stopping_score"])
    else:
        assert best["stopping_score"] == pytest.approx(-min(r["validation_loss"] for r in history))


def test_fit_stops_after_patience():
    train, validation = _ranking_set(n_lists=60, seed=2), _ranking_set(n_lists=20, seed=3)
    config = dataclasses.replace(OptimizerConfig(epochs=30, batch_size=64), patience=1)

    history = fit(_model(), train, validation, _tables(), config, use_relevance_labels=True, seed=0)

    assert len(history) < 30
    assert history[-1]["stopping_score"] <= max(r["stopping_score"] for r in history[:-1])
