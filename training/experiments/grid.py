"""`ranker evaluate`: every model and ablation on the same data, with intervals, in one report.

Per relevance set: prepare the data once (split, simulated sessions, labels, sampling,
features), then train and score reference floors, baselines and MMoE variants on it. Human
metrics (NDCG@5, NDCG@10, MRR against the human grades) come from the test queries' logged
lists. Per-task metrics come from sessions of held-out users (`heldout.py`). The MMoE variant
with the best validation NDCG@10 is the winner, which `--export` trains and exports as the
serving bundle with every model's metrics in its manifest.
"""

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from service.features.text import normalize_text
from service.pipeline.fusion import fuse_scores
from training.config import OptimizerConfig, TrainConfig
from training.dataset import RankingSet, build_ranking_set
from training.experiments import baselines
from training.experiments.heldout import HeldOutConfig, build_heldout_sessions, per_task_values
from training.experiments.report import write_report
from training.experiments.statistics import (
    human_values,
    interval,
    label_agreement,
    list_queries,
    paired_delta,
    per_query_means,
)
from training.fusion_search import search_fusion_weights
from training.model.mmoe import TASKS, MMoEConfig
from training.pipeline import PreparedData, TrainedRanker, build_text_caches, prepare_data, train_ranker
from training.sampling import SamplingConfig, sample_sessions
from training.simulation.behaviour import SimulationConfig
from training.trainer import EmbeddingTables, fit, predict

logger = logging.getLogger(__name__)
ALL_BASELINES = (
    "xgboost_rank",
    "xgboost_per_task",
    "lightgbm_lambdamart",
    "tabnet",
    "ft_transformer",
    "dcn_v2",
    "mmoe_tabular",
)
REFERENCE = "mmoe_frozen"  # the MMoE with every switch on and the encoder frozen
HUMAN_REPORTED = ("ndcg@5", "ndcg@10", "mrr_human")
TASK_REPORTED = ("click_mrr", "add_to_cart_mrr", "purchase_mrr", "click_ndcg@10", "add_to_cart_ndcg@10")
TASK_REPORTED += ("purchase_ndcg@10",)


@dataclass(frozen=True)
class SourcePlan:
    source: str
    max_queries: int | None
    users: int


@dataclass(frozen=True)
class EvaluationOptions:
    data_dir: str
    output_dir: Path
    sources: tuple[SourcePlan, ...]
    seed: int = 7
    threads: int = 2
    epochs: int = 12
    # Tuned top-layer counts tried besides the frozen encoder; 6 (or more) tunes all layers.
    tuned_layers: tuple[int, ...] = (1, 2)
    # Joint encoder and ranker steps of each fine-tuned variant, after the frozen reference.
    tuning_steps: int = 100
    # The neural baselines (TabNet, FT-Transformer, DCN-V2) stop after at most this many epochs,
    # because each of their epochs costs minutes on a 2-core CPU.
    baseline_epochs: int = 4
    baselines: tuple[str, ...] = ALL_BASELINES
    heldout: HeldOutConfig = field(default_factory=HeldOutConfig)
    resamples: int = 1000
    quick: bool = False


def full_options(data_dir: str, output_dir: Path, seed: int, threads: int) -> EvaluationOptions:
    """Return the documented evaluation (docs/results.md): all of Home Depot and of CrowdFlower,
    every model, and fine-tuning of the top 1, 2 and all 6 encoder layers. It is sized to finish
    within an hour on a 2-core CPU."""
    return EvaluationOptions(
        data_dir=data_dir,
        output_dir=output_dir,
        # CrowdFlower lists hold about 39 products, so few users already give many rows.
        sources=(SourcePlan("home_depot", None, 1000), SourcePlan("crowdflower", None, 40)),
        seed=seed,
        threads=threads,
        epochs=8,
        tuned_layers=(1, 2, 6),
        tuning_steps=60,
        baseline_epochs=4,
        heldout=HeldOutConfig(n_users=500),
    )


def quick_options(data_dir: str, output_dir: Path, seed: int, threads: int) -> EvaluationOptions:
    """Return a Home Depot slice for CI: every model kind once, one fine-tuned variant, few epochs."""
    return EvaluationOptions(
        data_dir=data_dir,
        output_dir=output_dir,
        sources=(SourcePlan("home_depot", 500, 150),),
        seed=seed,
        threads=threads,
        epochs=3,
        tuned_layers=(1,),
        tuning_steps=10,
        baseline_epochs=2,
        heldout=HeldOutConfig(n_users=80, replicates=4),
        resamples=300,
        quick=True,
    )


@dataclass
class ModelScores:
    kind: str  # "floor", "baseline" or "mmoe"
    scores: dict[str, np.ndarray]  # set name -> float [rows]
    seconds: float
    config: TrainConfig | None = None  # MMoE variants only


def run_evaluation(options: EvaluationOptions) -> dict:
    """Run the grid on every planned source; write metrics.json and return it."""
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "options": _describe(options),
        "behaviour": "simulated users and sessions (docs/simulation.md); human relevance grades are real",
        "sources": {},
    }
    for plan in options.sources:
        results["sources"][plan.source] = evaluate_source(options, plan)
        results["seconds"] = time.perf_counter() - started
        # Written after every source, so a failure in a later one keeps the earlier results.
        _write(results, options.output_dir)
    return results


def fresh_folder(path: Path) -> Path:
    """Create `path` empty: a rerun into the same report folder must not meet the files (the
    tokenizer folder, the encoder graph) that the previous run prepared there."""
    if path.exists():
        logger.info("removing the previous run's prepared data in %s", path)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def evaluate_source(options: EvaluationOptions, plan: SourcePlan) -> dict:
    started = time.perf_counter()
    config = _base_config(options, plan)
    work = fresh_folder(options.output_dir / plan.source / "data")
    data = prepare_data(config, work)
    sessions = build_heldout_sessions(data, options.heldout)
    sets = {"validation": data.sets["validation"], "test": data.sets["test"], "heldout": sessions.data}
    prepared_seconds = time.perf_counter() - started

    models: dict[str, ModelScores] = {}
    models.update(_floors(data, sets, options.seed))
    for name in options.baselines:
        models[name] = _timed(lambda name=name: _baseline(name, data, sets, config, options), "baseline")
        logger.info("evaluate %s: %s trained in %.0fs", plan.source, name, models[name].seconds)
    shared = SharedTraining()
    for name, variant in _mmoe_variants(config, options).items():
        models[name] = _timed(lambda v=variant: _mmoe(v, data, sets, options, shared), "mmoe", variant)
        logger.info("evaluate %s: %s trained in %.0fs", plan.source, name, models[name].seconds)

    report = _summarize(models, sets, sessions, options)
    report["label_agreement"] = label_agreement(data.labels, data.judgements.frame)
    report["data"] = {
        "queries": len(data.judgements.queries),
        "pairs": len(data.judgements.frame),
        "users": config.simulation.n_users,
        "heldout_users": options.heldout.n_users,
        "rows": {"train": len(data.train_set), **{k: len(v) for k, v in sets.items()}},
        "prepare_seconds": prepared_seconds,
    }
    report["winner"] = _winner(report, models)
    report["seconds"] = time.perf_counter() - started
    return report


def _base_config(options: EvaluationOptions, plan: SourcePlan) -> TrainConfig:
    return TrainConfig(
        data_dir=options.data_dir,
        source=plan.source,
        max_queries=plan.max_queries,
        seed=options.seed,
        threads=options.threads,
        simulation=SimulationConfig(seed=options.seed, n_users=plan.users),
        optimizer=OptimizerConfig(epochs=options.epochs),
    )


def _mmoe_variants(base: TrainConfig, options: EvaluationOptions) -> dict[str, TrainConfig]:
    """Return the MMoE reference, one ablation per switch, and the fine-tuned encoder variants."""
    variants = {
        REFERENCE: base,
        "mmoe_no_relevance_labels": dataclasses.replace(base, use_relevance_labels=False),
        "mmoe_no_sampling": dataclasses.replace(base, sampling=SamplingConfig(enabled=False)),
        "mmoe_no_interactions": dataclasses.replace(base, model=MMoEConfig(text_block="cosine")),
    }
    tuning = dataclasses.replace(base.optimizer, tuning_steps=options.tuning_steps)
    for k in options.tuned_layers:
        name = "mmoe_tuned_all" if k >= 6 else f"mmoe_tuned_top{k}"
        variants[name] = dataclasses.replace(base, tuned_layers=k, optimizer=tuning)
    return variants


def _timed(train, kind: str, config: TrainConfig | None = None) -> ModelScores:
    started = time.perf_counter()
    scores = train()
    return ModelScores(kind, scores, time.perf_counter() - started, config)


def _frozen_tables(data: PreparedData) -> EmbeddingTables:
    return EmbeddingTables(
        torch.from_numpy(data.catalog.query_embeddings), torch.from_numpy(data.catalog.embeddings)
    )


def _floors(data: PreparedData, sets: dict[str, RankingSet], seed: int) -> dict[str, ModelScores]:
    """Reference floors: input (logged) order, random order, BM25 over titles, zero-shot cosine."""
    from rank_bm25 import BM25Okapi

    started = time.perf_counter()
    titles = [normalize_text(t).split() for t in data.catalog.titles]
    bm25 = BM25Okapi(titles)
    tables = _frozen_tables(data)
    floors = {name: {} for name in ("input_order", "random_order", "bm25", "encoder_cosine")}
    for set_name, rows in sets.items():
        floors["input_order"][set_name] = np.zeros(len(rows))
        floors["random_order"][set_name] = np.random.default_rng(seed).random(len(rows))
        floors["bm25"][set_name] = _bm25_scores(bm25, data.catalog.query_texts, rows)
        queries, products = tables.lookup(
            torch.from_numpy(rows.query_rows), torch.from_numpy(rows.product_rows)
        )
        floors["encoder_cosine"][set_name] = (queries * products).sum(dim=1).numpy()
    seconds = time.perf_counter() - started
    return {name: ModelScores("floor", scores, seconds / len(floors)) for name, scores in floors.items()}


def _bm25_scores(bm25, query_texts: list[str], rows: RankingSet) -> np.ndarray:
    """BM25 of each row's query against its title, with IDF over the whole catalog."""
    scores = np.zeros(len(rows))
    for start in np.flatnonzero(np.r_[True, rows.list_ids[1:] != rows.list_ids[:-1]]):
        end = start + int((rows.list_ids == rows.list_ids[start]).sum())
        query = query_texts[rows.query_rows[start]].split()
        scores[start:end] = bm25.get_batch_scores(query, rows.product_rows[start:end].tolist())
    return scores


def _baseline(name: str, data: PreparedData, sets, config: TrainConfig, options) -> dict[str, np.ndarray]:
    tables = _frozen_tables(data)
    train, validation = data.train_set, sets["validation"]
    if name == "xgboost_rank":
        score = baselines.fit_xgboost_ranker(train, validation, tables, options.threads, options.seed)
        return {set_name: score(rows) for set_name, rows in sets.items()}
    if name == "lightgbm_lambdamart":
        score = baselines.fit_lightgbm_ranker(train, validation, tables, options.threads, options.seed)
        return {set_name: score(rows) for set_name, rows in sets.items()}
    if name == "xgboost_per_task":
        probabilities = baselines.fit_xgboost_per_task(
            train, validation, tables, options.threads, options.seed
        )
        return _fused({set_name: probabilities(rows) for set_name, rows in sets.items()}, sets)
    if name == "mmoe_tabular":
        tabular = dataclasses.replace(config, model=MMoEConfig(text_block="none"))
        return _mmoe(tabular, data, sets, options, SharedTraining())
    network = baselines.tabular_network(
        name, data.vocabularies.cardinalities(), train.continuous.shape[1] + 1
    )
    model = baselines.TabularRanker(
        network, name, train.continuous.mean(axis=0), train.continuous.std(axis=0) + 1e-6
    )
    capped = dataclasses.replace(config.optimizer, epochs=min(options.baseline_epochs, options.epochs))
    fit(model, train, validation, tables, capped, config.use_relevance_labels, config.seed)
    return _fused({set_name: predict(model, rows, tables) for set_name, rows in sets.items()}, sets)


@dataclass
class SharedTraining:
    """Encoder caches and the trained reference, shared by the MMoE variants of one source."""

    caches: dict | None = None
    reference: TrainedRanker | None = None


def _mmoe(config: TrainConfig, data: PreparedData, sets, options, shared: SharedTraining) -> dict:
    """Train one MMoE variant and return its fused scores per set.

    Fine-tuned variants start from the trained reference (the frozen-encoder MMoE with the same
    switches) instead of training it again, then run their joint fine-tuning steps.
    """
    train_set = None
    if not config.sampling.enabled:
        train_set = _unsampled_train_set(data, config)
    warm_start = None
    if config.tuned_layers > 0:
        if shared.caches is None:
            shared.caches = build_text_caches(config, data, list(options.tuned_layers))
        warm_start = shared.reference
    trained = train_ranker(data, config, train_set=train_set, caches=shared.caches, warm_start=warm_start)
    if shared.reference is None and config.tuned_layers == 0:
        shared.reference = trained
    return _fused({name: predict(trained.model, rows, trained.tables) for name, rows in sets.items()}, sets)


def _unsampled_train_set(data: PreparedData, config: TrainConfig) -> RankingSet:
    log = data.log
    train_log = log[(log["phase"] == "train") & (log["split"] == "train")]
    request_ids, _ = sample_sessions(train_log, config.sampling)
    return build_ranking_set(
        log,
        request_ids,
        description="features train, no sampling",
        pair_stats_dropout=config.pair_stats_dropout,
        seed=config.seed,
        **data.build,
    )


def _fused(probabilities: dict[str, np.ndarray], sets: dict[str, RankingSet]) -> dict[str, np.ndarray]:
    """Fuse task probabilities into one score with weights chosen on validation, as in serving."""
    fusion = search_fusion_weights(sets["validation"], probabilities["validation"])
    return {name: fuse_scores(p, TASKS, fusion["weights"]) for name, p in probabilities.items()}


def _summarize(models: dict[str, ModelScores], sets, sessions, options: EvaluationOptions) -> dict:
    """Means with 95 % intervals per model, and ablation deltas against the reference MMoE."""
    queries = {name: list_queries(rows.list_ids, rows.query_rows) for name, rows in sets.items()}
    per_query: dict[str, dict] = {}
    summary: dict[str, dict] = {}
    for name, model in models.items():
        values = {}
        for set_name in ("validation", "test"):
            rows = sets[set_name]
            for metric, v in human_values(
                rows.list_ids, model.scores[set_name], rows.human_relevance
            ).items():
                values[f"{set_name}/{metric}"] = per_query_means(v, queries[set_name])
        for metric, v in per_task_values(sessions, model.scores["heldout"]).items():
            values[f"heldout/{metric}"] = per_query_means(v, queries["heldout"])
        per_query[name] = values
        summary[name] = {
            "kind": model.kind,
            "seconds": model.seconds,
            **{key: interval(v, options.seed, options.resamples) for key, v in values.items()},
        }

    deltas = {}
    if REFERENCE in per_query:
        reference = per_query[REFERENCE]
        for name, values in per_query.items():
            if models[name].kind != "mmoe" or name == REFERENCE:
                continue
            deltas[name] = {
                key: paired_delta(values[key], reference[key], options.seed, options.resamples)
                for key in (
                    "test/ndcg@10",
                    *(f"heldout/{m}" for m in ("click_mrr", "add_to_cart_mrr", "purchase_mrr")),
                )
            }
    return {"models": summary, "ablation_deltas": deltas}


def _winner(report: dict, models: dict[str, ModelScores]) -> dict:
    """Pick the MMoE variant with the best validation NDCG@10 (tabular-only is not servable)."""
    candidates = {
        name: report["models"][name]["validation/ndcg@10"]["mean"]
        for name, model in models.items()
        if model.kind == "mmoe" and model.config is not None
    }
    best = max(candidates, key=candidates.get)
    return {
        "name": best,
        "validation_ndcg@10": candidates[best],
        "candidates": candidates,
        "config": models[best].config.to_dict(),
    }


def _describe(options: EvaluationOptions) -> dict:
    described = dataclasses.asdict(options)
    described["output_dir"] = str(options.output_dir)
    return described


def _write(results: dict, output_dir: Path) -> None:
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=float))
    write_report(results, output_dir)
