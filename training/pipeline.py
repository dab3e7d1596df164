"""One training run, end to end: data, simulation, labels, sampling, features, MMoE, evaluation.

Everything the export step needs is written to the run folder:

    config.json          the TrainConfig of the run
    metrics.json         per-epoch history, validation and test metrics, sampling report
    evaluation.png       loss curves and test metrics against the logged and a random order
    model.pt             the ranker's state dict and constructor arguments
    encoder.onnx         the frozen query encoder, already in ONNX
    tokenizer/           the encoder's tokenizer files
    catalog.npz          product ids, titles and embeddings [products, d]
    artifacts.json       vocabularies and fusion weights
    interaction_stats.json  debiased CTR per product and per (query, product), from history sessions
    split.json           the train, validation and test queries
    test_set.npz         the held-out test lists' features, for checking an exported bundle
    users.jsonl          user feature records (what goes to Redis)
    interactions.csv.gz  the simulated interaction log
"""

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import torch
from tqdm import tqdm

from service.engines.encoder import TextEncoder
from service.engines.onnx import create_session
from service.features.attributes import BrandVocabulary, ProductAttributes, describe_product
from service.features.builder import Vocabularies
from service.features.interactions import InteractionStats
from service.features.text import normalize_text
from service.features.user import UserFeatures, encode_user
from training import aggregates
from training.config import TrainConfig
from training.data.adapters import Judgements, load_source
from training.data.splits import QuerySplit, split_queries
from training.dataset import RankingSet, build_ranking_set, save_ranking_set
from training.evaluation import ranking_report
from training.fusion_search import search_fusion_weights
from training.labels import relevance_grades
from training.model.encoder import load_encoder
from training.model.mmoe import SERVED_TASKS, TASKS, MMoERanker, checkpoint_of
from training.model.tuning import TopLayers, TunedEmbeddings, build_caches, resolve_tuned_layers
from training.onnx_export import export_encoder
from training.report import plot_run
from training.sampling import sample_sessions
from training.simulation.behaviour import SimulatedUser, simulate_log
from training.trainer import EmbeddingTables, fine_tune, fit, predict

logger = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass
class Catalog:
    product_ids: list[str]
    titles: list[str]
    embeddings: np.ndarray  # [products, d] float32, unit length
    query_texts: list[str]  # normalized queries
    query_embeddings: np.ndarray  # [queries, d]


@dataclass
class PreparedData:
    """Everything a ranker trains and is evaluated on, shared by every model of a comparison."""

    config: TrainConfig
    judgements: Judgements
    split: QuerySplit
    attributes: dict[str, ProductAttributes]
    vocabularies: Vocabularies
    catalog: Catalog
    log: pd.DataFrame
    simulated_users: list[SimulatedUser]
    stats: InteractionStats
    users: dict[str, UserFeatures]
    labels: pd.DataFrame
    sampling_report: dict
    build: dict  # keyword arguments of build_ranking_set, for more lists on the same features
    train_set: RankingSet
    sets: dict[str, RankingSet]  # "validation", "test"


def run_training(config: TrainConfig, output_dir: Path, comparison: dict | None = None) -> Path:
    """Train one model and return its run folder.

    `comparison` (metrics of other models on the same split, from `ranker evaluate`) is stored
    in metrics.json and from there in the bundle's manifest.
    """
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    run_dir = output_dir / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    config.save(run_dir / "config.json")
    logger.info("run folder %s", run_dir)

    data = prepare_data(config, run_dir)
    trained = train_ranker(data, config)
    model, history_log, tables = trained.model, trained.history, trained.tables
    if trained.top is not None:
        tables = _export_tuned_encoder(config, data, trained.top, run_dir)

    validation_probs = predict(model, data.sets["validation"], tables)
    fusion = search_fusion_weights(data.sets["validation"], validation_probs)
    metrics = {
        "history": history_log,
        "fusion": fusion,
        "validation": _evaluate(data.sets["validation"], validation_probs, fusion["weights"]),
        "test": _evaluate(data.sets["test"], predict(model, data.sets["test"], tables), fusion["weights"]),
        "sampling": data.sampling_report,
        "label_agreement": _label_agreement(data.labels, data.judgements),
        "rows": {"train": len(data.train_set), **{k: len(v) for k, v in data.sets.items()}},
        "seconds": time.perf_counter() - started,
        "behaviour": "simulated (see docs/simulation.md); human relevance is real",
    }
    if comparison is not None:
        metrics["comparison"] = comparison
    _save_run(run_dir, model, config, metrics, data.vocabularies, data.stats, fusion, data.users)
    plot_run(metrics, run_dir / "evaluation.png")
    logger.info(
        "step 7/7 done in %.0fs; test NDCG@10 %.4f (logged order %.4f, random order %.4f)",
        metrics["seconds"],
        metrics["test"]["model"]["ndcg@10"],
        metrics["test"]["logged_order"]["ndcg@10"],
        metrics["test"]["random_order"]["ndcg@10"],
    )
    return run_dir


def prepare_data(config: TrainConfig, run_dir: Path) -> PreparedData:
    """Steps 1-5: data, split, attributes, embeddings, simulation, labels, sampling, features.

    Writes split.json, encoder.onnx, tokenizer/, encoder.json, catalog.npz, interactions.csv.gz
    and test_set.npz into `run_dir`.
    """
    judgements = _load_judgements(config)
    split = split_queries(judgements, config.validation_share, config.test_share, config.seed)
    (run_dir / "split.json").write_text(
        json.dumps({k: sorted(getattr(split, k)) for k in ("train", "validation", "test")})
    )
    logger.info(
        "step 1/7 data: %d pairs, %d queries (%d train, %d validation, %d test)",
        len(judgements.frame),
        len(judgements.queries),
        len(split.train),
        len(split.validation),
        len(split.test),
    )

    products = judgements.products()
    brands = BrandVocabulary.fit(products["title"])
    attributes = {
        pid: describe_product(title, brands)
        for pid, title in zip(products["product_id"], products["title"], strict=True)
    }
    vocabularies = Vocabularies.build(sorted(brands.brands))
    logger.info("step 2/7 attributes: %d brands in the vocabulary", len(brands.brands))

    catalog = _embed_catalog(config, judgements, products, run_dir)

    log, simulated_users = simulate_log(config.simulation, judgements, split, attributes)
    log.to_csv(run_dir / "interactions.csv.gz", index=False)
    logger.info(
        "step 4/7 simulation: %d users, %d sessions, %d impressions, click rate %.3f",
        len(simulated_users),
        log["request_id"].nunique(),
        len(log),
        log["click"].mean(),
    )

    history = log[log["phase"] == "history"]
    stats = aggregates.interaction_stats(history, config.labels.examination_eta)
    users = aggregates.user_features(history, attributes, {u.user_id: u.segment for u in simulated_users})
    query_index = {q: i for i, q in enumerate(catalog.query_texts)}
    product_index = {p: i for i, p in enumerate(catalog.product_ids)}

    train_log = log[(log["phase"] == "train") & (log["split"] == "train")]
    cosine = _pair_cosine(train_log, catalog, query_index, product_index)
    labels = relevance_grades(train_log, cosine, config.labels)
    grades = dict(
        zip(zip(labels["normalized_query"], labels["product_id"], strict=True), labels["grade"], strict=True)
    )
    sampled, sampling_report = sample_sessions(train_log, config.sampling)
    logger.info(
        "step 5/7 labels for %d pairs; sampling turned %d sessions into %d (purchases repeated)",
        len(labels),
        train_log["request_id"].nunique(),
        len(sampled),
    )

    human = dict(
        zip(
            zip(judgements.frame["query"], judgements.frame["product_id"], strict=True),
            judgements.frame["relevance"],
            strict=True,
        )
    )
    build = dict(
        users=users,
        attributes=attributes,
        stats=stats,
        vocabularies=vocabularies,
        query_index=query_index,
        product_index=product_index,
        human=human,
        label_grades=grades,
    )
    train_set = build_ranking_set(
        log,
        sampled,
        description="features train",
        pair_stats_dropout=config.pair_stats_dropout,
        seed=config.seed,
        **build,
    )
    sets = {
        name: build_ranking_set(log, _request_ids(log, name), description=f"features {name}", **build)
        for name in ("validation", "test")
    }
    save_ranking_set(sets["test"], catalog.query_texts, run_dir / "test_set.npz")
    return PreparedData(
        config=config,
        judgements=judgements,
        split=split,
        attributes=attributes,
        vocabularies=vocabularies,
        catalog=catalog,
        log=log,
        simulated_users=simulated_users,
        stats=stats,
        users=users,
        labels=labels,
        sampling_report=sampling_report,
        build=build,
        train_set=train_set,
        sets=sets,
    )


@dataclass
class TrainedRanker:
    model: MMoERanker
    history: list[dict]
    tables: EmbeddingTables  # embeddings to predict with, from the tuned encoder where there is one
    top: TopLayers | None  # the tuned encoder layers, None when the encoder stayed frozen


def train_ranker(
    data: PreparedData,
    config: TrainConfig,
    train_set: RankingSet | None = None,
    caches: dict | None = None,
    warm_start: "TrainedRanker | None" = None,
) -> TrainedRanker:
    """Step 6: train an MMoE on `data` with `config`'s model, label and encoder switches.

    With `tuned_layers` > 0 the ranker first trains with the frozen encoder (or starts from
    `warm_start`, a ranker already trained so with the same config otherwise), then fine-tunes
    with the encoder's top layers for `optimizer.tuning_steps` steps. `train_set` replaces the
    prepared (sampled) training set, for the ablation without sampling. `caches` maps a
    tuned-layer count to (query, title) HiddenStateCache pairs built earlier, so that several
    fine-tuned models share one pass of the frozen encoder.
    """
    train_set = train_set if train_set is not None else data.train_set
    model = MMoERanker(
        config.model,
        data.vocabularies.cardinalities(),
        train_set.continuous.mean(axis=0),
        train_set.continuous.std(axis=0) + 1e-6,
        data.catalog.embeddings.shape[1],
    )
    tables = EmbeddingTables(
        torch.from_numpy(data.catalog.query_embeddings), torch.from_numpy(data.catalog.embeddings)
    )
    if warm_start is not None:
        model.load_state_dict(warm_start.model.state_dict())
        history_log = list(warm_start.history)
    else:
        logger.info(
            "step 6/7 training MMoE on %d rows (%d parameters)",
            len(train_set),
            sum(p.numel() for p in model.parameters()),
        )
        history_log = fit(
            model,
            train_set,
            data.sets["validation"],
            tables,
            config.optimizer,
            config.use_relevance_labels,
            config.seed,
        )
    if config.tuned_layers == 0:
        return TrainedRanker(model, history_log, tables, None)

    tuned = _tuned_embeddings(config, data, caches or {})
    tuning = fine_tune(
        model,
        tuned,
        train_set,
        data.sets["validation"],
        config.optimizer,
        config.use_relevance_labels,
        config.seed,
    )
    history_log = [*history_log, {"fine_tuning": len(tuned.top.layers), **tuning}]
    fixed = EmbeddingTables(tuned.embed_all(tuned.query_cache), tuned.embed_all(tuned.product_cache))
    return TrainedRanker(model, history_log, fixed, tuned.top)


def _tuned_embeddings(config: TrainConfig, data: PreparedData, caches: dict) -> TunedEmbeddings:
    encoder, _, _ = load_encoder(Path(config.encoder_path) if config.encoder_path else None)
    n_layers = int(encoder.model.config.num_hidden_layers)
    k = resolve_tuned_layers(config.tuned_layers, n_layers)
    if k not in caches:
        caches = {**caches, **build_text_caches(config, data, [k])}
    queries, titles = caches[k]
    return TunedEmbeddings(TopLayers(encoder, k), queries, titles)


def _export_tuned_encoder(config: TrainConfig, data: PreparedData, top: TopLayers, run_dir: Path):
    """Replace the run's encoder.onnx and catalog.npz with the tuned encoder's; return its tables.

    The tables come from the exported ONNX graph, as in `_embed_catalog`, so evaluation and
    serving see the same embeddings.
    """
    encoder, tokenizer, _ = load_encoder(Path(config.encoder_path) if config.encoder_path else None)
    export_encoder(
        top.merge_into(encoder),
        tokenizer,
        run_dir / "encoder.onnx",
        max_tokens=max(config.max_title_tokens, config.max_query_tokens),
    )
    info = json.loads((run_dir / "encoder.json").read_text())
    info["tuned_layers"] = len(top.layers)
    (run_dir / "encoder.json").write_text(json.dumps(info, indent=2))
    embeddings, query_embeddings = _embed_texts(
        config, run_dir, data.catalog.titles, data.catalog.query_texts, "re-embedding with the tuned encoder"
    )
    np.savez(
        run_dir / "catalog.npz",
        product_ids=np.array(data.catalog.product_ids, dtype=str),
        titles=np.array(data.catalog.titles, dtype=str),
        embeddings=embeddings,
    )
    return EmbeddingTables(torch.from_numpy(query_embeddings), torch.from_numpy(embeddings))


def build_text_caches(config: TrainConfig, data: PreparedData, tuned_layers: list[int]) -> dict:
    """Return {k: (query cache, title cache)} from one pass of the frozen encoder over all texts."""
    encoder, tokenizer, _ = load_encoder(Path(config.encoder_path) if config.encoder_path else None)
    queries = build_caches(
        encoder,
        tokenizer,
        data.catalog.query_texts,
        config.max_query_tokens,
        tuned_layers,
        "encoder cache queries",
    )
    titles = build_caches(
        encoder, tokenizer, data.catalog.titles, config.max_title_tokens, tuned_layers, "encoder cache titles"
    )
    return {k: (queries[k], titles[k]) for k in queries}


def _load_judgements(config: TrainConfig) -> Judgements:
    judgements = load_source(config.source, Path(config.data_dir))
    if config.max_queries is None or config.max_queries >= len(judgements.queries):
        return judgements
    rng = np.random.default_rng(config.seed)
    kept = set(rng.choice(judgements.queries, size=config.max_queries, replace=False))
    frame = judgements.frame[judgements.frame["query"].isin(kept)].reset_index(drop=True)
    return Judgements(frame)


def _embed_catalog(
    config: TrainConfig, judgements: Judgements, products: pd.DataFrame, run_dir: Path
) -> Catalog:
    """Export the encoder to ONNX and embed every title and query with that same graph."""
    encoder, tokenizer, folder = load_encoder(Path(config.encoder_path) if config.encoder_path else None)
    export_encoder(
        encoder,
        tokenizer,
        run_dir / "encoder.onnx",
        max_tokens=max(config.max_title_tokens, config.max_query_tokens),
    )
    (run_dir / "tokenizer").mkdir()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy(folder / name, run_dir / "tokenizer" / name)
    encoder_info = {
        "name": folder.name if folder.name != "model" else "all-MiniLM-L6-v2",
        "path": str(folder),
        "dimension": encoder.dimension,
        "layers": int(encoder.model.config.num_hidden_layers),
    }
    (run_dir / "encoder.json").write_text(json.dumps(encoder_info, indent=2))

    titles = products["title"].tolist()
    queries = sorted({normalize_text(q) for q in judgements.queries})
    embeddings, query_embeddings = _embed_texts(
        config, run_dir, titles, queries, "step 3/7 embedding titles and queries"
    )
    np.savez(
        run_dir / "catalog.npz",
        product_ids=np.array(products["product_id"].tolist(), dtype=str),
        titles=np.array(titles, dtype=str),
        embeddings=embeddings,
    )
    return Catalog(products["product_id"].tolist(), titles, embeddings, queries, query_embeddings)


def _embed_texts(
    config: TrainConfig, run_dir: Path, titles: list[str], queries: list[str], description: str
) -> tuple[np.ndarray, np.ndarray]:
    """Embed titles and queries with the run's encoder.onnx; return float32 [texts, d] each."""
    session = create_session(run_dir / "encoder.onnx", "cpu", config.threads)
    with tqdm(total=len(titles) + len(queries), desc=description, unit="text") as bar:
        embeddings = TextEncoder(
            session, run_dir / "tokenizer" / "tokenizer.json", config.max_title_tokens
        ).embed_many(titles, progress=bar.update)
        query_embeddings = TextEncoder(
            session, run_dir / "tokenizer" / "tokenizer.json", config.max_query_tokens
        ).embed_many(queries, progress=bar.update)
    return embeddings, query_embeddings


def _pair_cosine(log: pd.DataFrame, catalog: Catalog, query_index: dict, product_index: dict) -> dict:
    pairs = log[["normalized_query", "product_id"]].drop_duplicates()
    q = catalog.query_embeddings[[query_index[x] for x in pairs["normalized_query"]]]
    p = catalog.embeddings[[product_index[x] for x in pairs["product_id"]]]
    return dict(
        zip(
            zip(pairs["normalized_query"], pairs["product_id"], strict=True),
            (q * p).sum(axis=1).tolist(),
            strict=True,
        )
    )


def _request_ids(log: pd.DataFrame, split_name: str) -> list[str]:
    return sorted(log.loc[log["split"] == split_name, "request_id"].unique())


def _evaluate(data: RankingSet, probabilities: np.ndarray, weights: dict[str, float]) -> dict:
    """Metrics of the fused model score, each task head alone, and the input (logged) order."""
    from service.pipeline.fusion import fuse_scores

    outcomes = {task: data.targets[:, i] for i, task in enumerate(SERVED_TASKS)}
    # The logged order is the simulated production ranker's; ties in a constant score keep it.
    random_scores = np.random.default_rng(0).random(len(data))
    scorers = {
        "model": fuse_scores(probabilities, TASKS, weights),
        "logged_order": np.zeros(len(data)),
        "random_order": random_scores,
    }
    scorers.update({f"head_{task}": probabilities[:, i] for i, task in enumerate(TASKS)})
    return {
        name: ranking_report(data.list_ids, scores, data.human_relevance, outcomes)
        for name, scores in scorers.items()
    }


def _label_agreement(labels: pd.DataFrame, judgements: Judgements) -> dict:
    """Spearman correlation between generated relevance grades and the human relevance."""
    human = judgements.frame.assign(normalized_query=judgements.frame["query"].map(normalize_text))
    merged = labels.merge(
        human[["normalized_query", "product_id", "relevance"]], on=["normalized_query", "product_id"]
    )
    if len(merged) < 3:
        return {"pairs": len(merged), "spearman": float("nan")}
    return {
        "pairs": len(merged),
        "spearman": float(merged["score"].corr(merged["relevance"], method="spearman")),
        "spearman_cosine_only": float(merged["cosine"].corr(merged["relevance"], method="spearman")),
        "spearman_ctr_only": float(merged["ctr"].corr(merged["relevance"], method="spearman")),
    }


def _save_run(run_dir, model, config, metrics, vocabularies, stats, fusion, users) -> None:
    torch.save(checkpoint_of(model), run_dir / "model.pt")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    artifacts = {
        "vocabularies": {
            "brands": vocabularies.brands,
            "categories": vocabularies.categories,
            "segments": vocabularies.segments,
        },
        "fusion": fusion,
    }
    (run_dir / "artifacts.json").write_bytes(orjson.dumps(artifacts))
    (run_dir / "interaction_stats.json").write_bytes(stats.to_bytes())
    with open(run_dir / "users.jsonl", "wb") as out:
        for user_id, features in users.items():
            out.write(orjson.dumps({"user_id": user_id, **orjson.loads(encode_user(features))}) + b"\n")
