"""The evaluation report: a Markdown table and PNG plots written from metrics.json."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402

TASKS = ("click", "add_to_cart", "purchase")


def write_report(results: dict, output_dir: Path) -> None:
    """Write results.md and three PNGs per source: NDCG@10, ablation deltas, per-task MRR."""
    lines = [
        "# Evaluation results",
        "",
        "Behaviour (users, sessions, clicks, add-to-cart, purchases) is simulated with the project's",
        "seeded simulator; human relevance grades are real. Intervals are 95 % bootstrap intervals",
        "over queries.",
        "",
    ]
    for source, report in results["sources"].items():
        lines += _source_section(source, report)
        _plot_ndcg(source, report, output_dir / f"ndcg10_{source}.png")
        _plot_ablations(source, report, output_dir / f"ablations_{source}.png")
        _plot_task_mrr(source, report, output_dir / f"task_mrr_{source}.png")
    lines += [f"Total wall time: {results.get('seconds', float('nan')):.0f} s.", ""]
    (output_dir / "results.md").write_text("\n".join(lines))


def _cell(entry: dict) -> str:
    if entry["low"] != entry["low"]:  # NaN: too few queries for an interval
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _source_section(source: str, report: dict) -> list[str]:
    data = report["data"]
    lines = [
        f"## {source}",
        "",
        f"{data['queries']} queries, {data['pairs']} judged pairs, {data['users']} simulated users, "
        f"{data['heldout_users']} held-out users; rows: {data['rows']}.",
        "",
        "| model | kind | test NDCG@5 | test NDCG@10 | test MRR (human) | click MRR | add-to-cart MRR "
        "| purchase MRR | validation NDCG@10 | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ordered = sorted(report["models"].items(), key=lambda item: -item[1]["test/ndcg@10"]["mean"])
    for name, entry in ordered:
        lines.append(
            f"| {name} | {entry['kind']} | {_cell(entry['test/ndcg@5'])} | {_cell(entry['test/ndcg@10'])} "
            f"| {_cell(entry['test/mrr_human'])} | {_cell(entry['heldout/click_mrr'])} "
            f"| {_cell(entry['heldout/add_to_cart_mrr'])} | {_cell(entry['heldout/purchase_mrr'])} "
            f"| {entry['validation/ndcg@10']['mean']:.3f} | {entry['seconds']:.0f} |"
        )
    lines += ["", "Ablations and fine-tuning, paired difference against `mmoe_frozen` (95 % interval):", ""]
    lines += [
        "| variant | test NDCG@10 | click MRR | add-to-cart MRR | purchase MRR |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, delta in report["ablation_deltas"].items():
        lines.append(
            f"| {name} | {_signed(delta['test/ndcg@10'])} | {_signed(delta['heldout/click_mrr'])} "
            f"| {_signed(delta['heldout/add_to_cart_mrr'])} | {_signed(delta['heldout/purchase_mrr'])} |"
        )
    agreement = report["label_agreement"]
    lines += [
        "",
        f"Generated relevance labels against the human grades ({agreement.get('pairs', 0)} pairs): "
        f"Spearman {_number(agreement, 'spearman')}, Kendall {_number(agreement, 'kendall')}, "
        f"NDCG@10 of the label order {_number(agreement, 'ndcg@10_label_order')} "
        f"(encoder cosine alone: Spearman {_number(agreement, 'cosine_spearman')}, "
        f"NDCG@10 {_number(agreement, 'ndcg@10_cosine_order')}).",
        "",
        f"Winner on validation NDCG@10: `{report['winner']['name']}` "
        f"({report['winner']['validation_ndcg@10']:.3f}). Source wall time {report['seconds']:.0f} s.",
        "",
    ]
    return lines


def _number(values: dict, key: str) -> str:
    return f"{values[key]:.3f}" if key in values else "n/a"


def _signed(entry: dict) -> str:
    return f"{entry['mean']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]"


def _plot_ndcg(source: str, report: dict, path: Path) -> None:
    ordered = sorted(report["models"].items(), key=lambda item: item[1]["test/ndcg@10"]["mean"])
    names = [name for name, _ in ordered]
    means = [entry["test/ndcg@10"]["mean"] for _, entry in ordered]
    errors = [
        [m - entry["test/ndcg@10"]["low"] for m, (_, entry) in zip(means, ordered, strict=True)],
        [entry["test/ndcg@10"]["high"] - m for m, (_, entry) in zip(means, ordered, strict=True)],
    ]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    axis.barh(names, means, xerr=errors, color="tab:blue", capsize=3)
    axis.set_xlim(min(means) - 0.05, 1.0)
    axis.set_xlabel("test NDCG@10 against human grades (95 % bootstrap interval over queries)")
    axis.set_title(f"{source}: held-out queries")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_ablations(source: str, report: dict, path: Path) -> None:
    deltas = report["ablation_deltas"]
    names = list(deltas)
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(names) + 1.8), sharey=True)
    for axis, key, label in (
        (axes[0], "test/ndcg@10", "test NDCG@10"),
        (axes[1], "heldout/purchase_mrr", "purchase MRR (held-out users)"),
    ):
        means = [deltas[n][key]["mean"] for n in names]
        errors = [
            [m - deltas[n][key]["low"] for m, n in zip(means, names, strict=True)],
            [deltas[n][key]["high"] - m for m, n in zip(means, names, strict=True)],
        ]
        axis.barh(names, means, xerr=errors, color="tab:orange", capsize=3)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_xlabel(f"change in {label} vs mmoe_frozen")
    figure.suptitle(f"{source}: ablations (simulated behaviour)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_task_mrr(source: str, report: dict, path: Path) -> None:
    models = report["models"]
    names = sorted(models, key=lambda n: models[n]["heldout/purchase_mrr"]["mean"])
    figure, axis = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    height = 0.8 / len(TASKS)
    for i, task in enumerate(TASKS):
        values = [models[n][f"heldout/{task}_mrr"]["mean"] for n in names]
        axis.barh([j + i * height for j in range(len(names))], values, height, label=task)
    axis.set_yticks([j + height for j in range(len(names))], names)
    axis.set_xlabel("MRR on simulated sessions of held-out users")
    axis.set_title(f"{source}: per-task MRR (simulated behaviour)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
