"""Plots of a training run: loss curves and held-out metrics per ranker."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SCORERS = ("model", "logged_order", "random_order")
METRICS = ("ndcg@5", "ndcg@10", "mrr_human", "click_mrr", "add_to_cart_mrr", "purchase_mrr")


def plot_run(metrics: dict, path: Path) -> None:
    """Write a PNG with the per-epoch losses and the test metrics of the model and two baselines."""
    figure, (losses, bars) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 2]})

    # Epoch rows only: a fine-tuning record (no "epoch" key) may close the history.
    history = [row for row in metrics["history"] if "epoch" in row]
    epochs = [row["epoch"] for row in history]
    losses.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    losses.plot(epochs, [row["validation_loss"] for row in history], marker="o", label="validation")
    losses.set_xlabel("epoch")
    losses.set_ylabel("weighted BCE")
    losses.set_title("Training loss")
    losses.legend()

    test = metrics["test"]
    width = 0.8 / len(SCORERS)
    positions = np.arange(len(METRICS))
    for i, scorer in enumerate(SCORERS):
        values = [test[scorer][metric] for metric in METRICS]
        bars.bar(positions + i * width, values, width, label=scorer.replace("_", " "))
    bars.set_xticks(positions + width * (len(SCORERS) - 1) / 2, METRICS)
    bars.set_ylim(0, 1)
    bars.set_title(f"Held-out test lists ({int(test['model']['lists'])}); behaviour is simulated")
    bars.legend(loc="lower right")

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
