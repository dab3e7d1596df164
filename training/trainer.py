"""The MMoE training loop: per-task weighted binary cross-entropy, early stopping on validation.

Any module with the ranker's `logits(categorical, continuous, query_embedding, product_embedding,
positions)` and `forward` trains here, which is how the neural baselines share the loss, the
position bias and the stopping rule. `fit` uses fixed embedding tables; `fine_tune` then trains
the top encoder layers (`TunedEmbeddings`) together with the ranker for a fixed number of steps.
"""

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from service.pipeline.fusion import fuse_scores
from training.config import OptimizerConfig
from training.dataset import RankingSet
from training.evaluation import list_boundaries, ranking_report
from training.model.mmoe import TASKS, MMoERanker

logger = logging.getLogger(__name__)
PREDICT_BATCH = 8192


@dataclass
class EmbeddingTables:
    queries: torch.Tensor  # [n_queries, d]
    products: torch.Tensor  # [n_products, d]

    def lookup(
        self, query_rows: torch.Tensor, product_rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.queries[query_rows], self.products[product_rows]


def _batch_inputs(data: RankingSet, rows: np.ndarray, tables) -> tuple[torch.Tensor, ...]:
    """Return the model inputs of `rows`; `tables` is EmbeddingTables or TunedEmbeddings."""
    queries, products = tables.lookup(
        torch.from_numpy(data.query_rows[rows]), torch.from_numpy(data.product_rows[rows])
    )
    return (
        torch.from_numpy(data.categorical[rows]),
        torch.from_numpy(data.continuous[rows]),
        queries,
        products,
    )


def _gradient_step(model, optimizer, train, rows: np.ndarray, tables, weights) -> float:
    """Take one optimizer step on the training rows `rows`; return the batch's mean loss."""
    positions = torch.from_numpy(train.positions[rows])
    logits = model.logits(*_batch_inputs(train, rows, tables), positions=positions)
    loss = task_loss(logits, torch.from_numpy(train.targets[rows]), weights)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def task_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over tasks of the mean BCE; missing targets (NaN) are left out."""
    present = ~torch.isnan(targets)
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(targets), reduction="none"
    )
    per_task = (losses * present).sum(dim=0) / present.sum(dim=0).clamp(min=1)
    return (per_task * weights).sum()


def predict(model: MMoERanker, data: RankingSet, tables: EmbeddingTables) -> np.ndarray:
    """Return task probabilities [n, len(TASKS)]."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(data), PREDICT_BATCH):
            rows = np.arange(start, min(start + PREDICT_BATCH, len(data)))
            outputs.append(model(*_batch_inputs(data, rows, tables)).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, len(TASKS)), np.float32)


def validation_loss(model: MMoERanker, data: RankingSet, tables, weights: torch.Tensor) -> float:
    model.eval()
    if isinstance(tables, nn.Module):
        tables.eval()
    total, batches = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), PREDICT_BATCH):
            rows = np.arange(start, min(start + PREDICT_BATCH, len(data)))
            logits = model.logits(
                *_batch_inputs(data, rows, tables), positions=torch.from_numpy(data.positions[rows])
            )
            total += float(task_loss(logits, torch.from_numpy(data.targets[rows]), weights))
            batches += 1
    return total / max(batches, 1)


def _loss_weights(config: OptimizerConfig, use_relevance_labels: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (training, validation) task weights; validation lists have no relevance labels."""
    weights = torch.tensor(config.task_weights, dtype=torch.float32)
    if not use_relevance_labels:
        weights[TASKS.index("relevance")] = 0.0
    validation_weights = weights.clone()
    validation_weights[TASKS.index("relevance")] = 0.0
    return weights, validation_weights


def validation_ndcg(model: MMoERanker, data: RankingSet, tables, weights: torch.Tensor) -> float:
    """Return NDCG@10 against human grades of the heads with weight > 0, fused with equal weights.

    NOTE: the value is NaN when no list has a relevant product, and a NaN epoch never counts as
    an improvement, so early stopping then keeps the last epoch's weights.
    """
    fusion = {task: 1.0 for task, weight in zip(TASKS, weights.tolist(), strict=True) if weight > 0}
    scores = fuse_scores(predict(model, data, tables), TASKS, fusion)
    return ranking_report(data.list_ids, scores, data.human_relevance, {})["ndcg@10"]


def _stopping_score(
    model, validation: RankingSet, tables, config: OptimizerConfig, weights, val_loss: float
) -> float:
    """Return the validation score that early stopping maximizes (see OptimizerConfig.stopping).

    `weights` are the training loss weights, which name the heads that train; `val_loss` is the
    epoch's behavioural validation loss.
    """
    if config.stopping == "validation_ndcg":
        return validation_ndcg(model, validation, tables, weights)
    return -val_loss


def fine_tune(
    model: MMoERanker,
    tuned: nn.Module,
    train: RankingSet,
    validation: RankingSet,
    config: OptimizerConfig,
    use_relevance_labels: bool,
    seed: int,
) -> dict[str, float]:
    """Train the ranker and the tuned encoder layers together for `config.tuning_steps` steps.

    Runs after `fit` with the frozen encoder. Each step takes `config.tuning_lists` whole lists,
    so its distinct texts (one query and a few titles per list) bound the encoder's cost.
    Returns the validation loss before and after, and the time taken.
    """
    started = time.perf_counter()
    generator = np.random.default_rng(seed)
    weights, validation_weights = _loss_weights(config, use_relevance_labels)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "lr": config.learning_rate * config.tuning_ranker_scale},
            {"params": list(tuned.parameters()), "lr": config.encoder_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    lists = list_boundaries(train.list_ids)
    before = validation_loss(model, validation, tuned, validation_weights)
    for _ in tqdm(range(config.tuning_steps), desc="fine-tuning encoder", unit="step", mininterval=5):
        model.train()
        tuned.train()
        chosen = generator.choice(len(lists), size=min(config.tuning_lists, len(lists)), replace=False)
        rows = np.concatenate([np.arange(lists[i].start, lists[i].stop) for i in chosen])
        _gradient_step(model, optimizer, train, rows, tuned, weights)
    after = validation_loss(model, validation, tuned, validation_weights)
    model.eval()
    tuned.eval()
    logger.info(
        "fine-tuning: %d steps, validation_loss %.4f -> %.4f, %.0fs",
        config.tuning_steps,
        before,
        after,
        time.perf_counter() - started,
    )
    return {
        "steps": config.tuning_steps,
        "validation_loss_before": before,
        "validation_loss_after": after,
        "seconds": time.perf_counter() - started,
    }


def fit(
    model: MMoERanker,
    train: RankingSet,
    validation: RankingSet,
    tables,
    config: OptimizerConfig,
    use_relevance_labels: bool,
    seed: int,
) -> list[dict[str, float]]:
    """Train in place and keep the weights of the best validation epoch; return per-epoch history."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    # Validation lists have no relevance labels, so their loss covers the behavioural tasks only.
    weights, validation_weights = _loss_weights(config, use_relevance_labels)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    trained = nn.ModuleList([model])

    best_score, best_state, stale, history = -float("inf"), None, 0, []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        trained.train()
        order = generator.permutation(len(train))
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            running += _gradient_step(model, optimizer, train, rows, tables, weights) * len(rows)

        val_loss = validation_loss(model, validation, tables, validation_weights)
        score = _stopping_score(model, validation, tables, config, weights, val_loss)
        record = {
            "epoch": epoch,
            "train_loss": running / len(train),
            "validation_loss": val_loss,
            "stopping_score": score,
            "seconds": time.perf_counter() - started,
        }
        history.append(record)
        improved = score > best_score + 1e-5
        logger.info(
            "epoch %d/%d  train_loss %.4f  validation_loss %.4f  %s %.4f  %.1fs%s",
            epoch,
            config.epochs,
            record["train_loss"],
            val_loss,
            config.stopping,
            score,
            record["seconds"],
            "  (best)" if improved else "",
        )
        if improved:
            best_score, best_state, stale = score, copy.deepcopy(trained.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                logger.info("early stopping: no better %s for %d epochs", config.stopping, stale)
                break

    if best_state is not None:
        trained.load_state_dict(best_state)
    trained.eval()
    return history
