"""The work behind `ranker evaluate`: run the grid, write the report, optionally export the winner."""

import argparse
import dataclasses
import logging
from pathlib import Path

from training.config import TrainConfig
from training.experiments.grid import full_options, quick_options, run_evaluation

logger = logging.getLogger(__name__)
EXPORTED_SOURCE = "home_depot"
COMPARED_METRICS = ("validation/ndcg@10", "test/ndcg@10", "heldout/click_mrr", "heldout/add_to_cart_mrr")
COMPARED_METRICS += ("heldout/purchase_mrr",)


def evaluate_command(args: argparse.Namespace) -> Path:
    """Run `ranker evaluate` and return the report folder."""
    make_options = quick_options if args.quick else full_options
    options = make_options(str(args.data_dir), Path(args.output), args.seed, args.threads)
    results = run_evaluation(options)
    logger.info("evaluation finished in %.0fs; report in %s", results["seconds"], options.output_dir)
    if args.export:
        export_winner(results, args)
    return options.output_dir


def comparison_of(report: dict) -> dict:
    """Return the manifest's record of the winner and every compared model (means, 95 % intervals)."""
    return {
        "winner": report["winner"]["name"],
        "selected_by": "validation NDCG@10 against human grades",
        "evaluated_on": report["data"],
        "behaviour": "simulated (docs/simulation.md); human relevance is real",
        "models": {
            name: {metric: entry[metric] for metric in COMPARED_METRICS}
            for name, entry in report["models"].items()
        },
    }


def export_winner(results: dict, args: argparse.Namespace) -> str:
    """Train the Home Depot winner with the full pipeline and export it as the current bundle."""
    from training.export import export_bundle
    from training.pipeline import run_training

    report = results["sources"].get(EXPORTED_SOURCE)
    if report is None:
        raise ValueError(f"--export needs the {EXPORTED_SOURCE} source in the evaluation")
    # The winner's switches, trained on all the data with the default size and epochs: the
    # evaluation may have used a slice to fit every model into its time budget.
    chosen = TrainConfig.from_dict(report["winner"]["config"])
    defaults = TrainConfig()
    config = dataclasses.replace(
        chosen,
        max_queries=None,
        simulation=dataclasses.replace(chosen.simulation, n_users=defaults.simulation.n_users),
        optimizer=dataclasses.replace(chosen.optimizer, epochs=defaults.optimizer.epochs),
    )
    logger.info("exporting the winner %s, trained on all of %s", report["winner"]["name"], config.source)
    run_dir = run_training(config, Path(args.runs_dir), comparison=comparison_of(report))
    version = export_bundle(run_dir, Path(args.models_dir), set_current=True)
    logger.info("bundle %s from run %s is now current", version, run_dir)
    return version
