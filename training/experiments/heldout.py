"""Per-task metrics on simulated sessions of users that no model trained on.

New users are drawn from the same simulator (docs/simulation.md) with their own seed and ids
(`h000000` ...). Each gets history sessions on training queries, which give them user features
as a production system would have, but none of their sessions is a training example. They then
issue the held-out test queries. Each model ranks every such session, the simulator responds to
that ranking (position bias included), and click, add-to-cart and purchase MRR and NDCG@10 are
measured on the model's own order. All models see the same random draws per session and
product (common random numbers), so they differ only through their rankings.
"""

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.features.text import normalize_text
from training import aggregates
from training.dataset import RankingSet, build_ranking_set
from training.evaluation import list_boundaries
from training.simulation.behaviour import (
    SessionSimulator,
    SimulatedUser,
    simulate_ranked_outcomes,
    simulate_users,
)

logger = logging.getLogger(__name__)
BEHAVIOUR_TASKS = ("click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class HeldOutConfig:
    n_users: int = 500
    sessions_per_query: int = 3
    # Independent simulations of each session per ranking; more replicates, less noise.
    replicates: int = 8
    seed: int = 1009


@dataclass
class HeldOutSessions:
    data: RankingSet  # one list per session, rows in judged order
    users: list[SimulatedUser]  # latent user of each list
    probabilities: list[np.ndarray]  # [products, 3] attraction, add-to-cart, purchase per list
    uniforms: list[np.ndarray]  # [replicates, products, 4] random draws per list
    examination_eta: float


def build_heldout_sessions(prepared, config: HeldOutConfig) -> HeldOutSessions:
    """Simulate new users' histories and one feature list per (test query, new user) session."""
    rng = np.random.default_rng(config.seed)
    simulation = prepared.config.simulation
    brand_popularity = pd.Series([a.brand for a in prepared.attributes.values()]).value_counts()
    brand_popularity = brand_popularity[brand_popularity.index != "<unknown>"]
    drawn = simulate_users(dataclasses.replace(simulation, n_users=config.n_users), brand_popularity, rng)
    users = [dataclasses.replace(u, user_id=f"h{i:06d}") for i, u in enumerate(drawn)]
    simulator = SessionSimulator(simulation, prepared.judgements, prepared.attributes)

    features = _user_features(prepared, simulator, users, rng)
    log = _test_sessions(prepared, users, config, rng)
    request_ids = list(dict.fromkeys(log["request_id"]))
    build = {**prepared.build, "users": features}
    data = build_ranking_set(log, request_ids, description="features held-out users", **build)

    by_id = {u.user_id: u for u in users}
    sessions = HeldOutSessions(data, [], [], [], simulation.examination_eta)
    for _, rows in log.groupby("request_id", sort=False):
        user = by_id[rows["user_id"].iat[0]]
        sessions.users.append(user)
        sessions.probabilities.append(
            np.array(
                [
                    simulator.response_probabilities(user, product_id, relevance)
                    for product_id, relevance in zip(rows["product_id"], rows["relevance"], strict=True)
                ]
            )
        )
        sessions.uniforms.append(rng.random((config.replicates, len(rows), 4)))
    logger.info("held-out users: %d users, %d test sessions", len(users), len(sessions.users))
    return sessions


def _user_features(prepared, simulator: SessionSimulator, users: list[SimulatedUser], rng) -> dict:
    """Features of the new users from their own history sessions on training queries."""
    simulation = prepared.config.simulation
    train_queries = np.array(sorted(prepared.split.train), dtype=object)
    rows = []
    for user in users:
        mean = simulation.mean_sessions_per_user * user.activity * simulation.history_share
        for number, query in enumerate(rng.choice(train_queries, size=1 + rng.poisson(mean))):
            for product_id, position, click, atc, purchase in simulator.session(
                rng, user, query, simulation.logging_quality
            ):
                rows.append(
                    (f"{user.user_id}-{number}", user.user_id, product_id, position, click, atc, purchase)
                )
    own = pd.DataFrame(
        rows, columns=["request_id", "user_id", "product_id", "position", "click", "add_to_cart", "purchase"]
    )
    # Population click shares come from the whole history, as for the training users.
    history = prepared.log[prepared.log["phase"] == "history"][own.columns]
    segments = {u.user_id: u.segment for u in users}
    combined = aggregates.user_features(pd.concat([history, own]), prepared.attributes, segments)
    return {u.user_id: combined[u.user_id] for u in users if u.user_id in combined}


def _test_sessions(prepared, users: list[SimulatedUser], config: HeldOutConfig, rng) -> pd.DataFrame:
    """Return a log-shaped frame with one session per (test query, new user), in judged order."""
    activity = np.array([u.activity for u in users])
    frame = prepared.judgements.frame
    judged = {q: group for q, group in frame.groupby("query", sort=True)}
    rows = []
    for query in sorted(prepared.split.test):
        group = judged[query]
        for user_index in rng.choice(len(users), size=config.sessions_per_query, p=activity / activity.sum()):
            request_id = f"h{len(rows):08d}"
            for position, (product_id, relevance) in enumerate(
                zip(group["product_id"], group["relevance"], strict=True), start=1
            ):
                rows.append((request_id, users[user_index].user_id, query, product_id, position, relevance))
    log = pd.DataFrame(
        rows, columns=["request_id", "user_id", "query", "product_id", "position", "relevance"]
    )
    for column in BEHAVIOUR_TASKS:
        log[column] = 0
    log["normalized_query"] = log["query"].map(normalize_text)
    return log


def per_task_values(sessions: HeldOutSessions, scores: np.ndarray) -> dict:
    """Return per-list MRR and NDCG@10 of each task for one model's `scores` over `sessions.data`.

    A list's value is the mean over the replicates with at least one positive for the task, and
    NaN when no replicate has one.
    """
    values = {f"{task}_{metric}": [] for task in BEHAVIOUR_TASKS for metric in ("mrr", "ndcg@10")}
    for number, rows in enumerate(list_boundaries(sessions.data.list_ids)):
        order = np.argsort(-scores[rows], kind="stable")
        outcomes = simulate_ranked_outcomes(
            sessions.probabilities[number], order, sessions.uniforms[number], sessions.examination_eta
        )  # [replicates, products, tasks]
        for t, task in enumerate(BEHAVIOUR_TASKS):
            in_order = list(outcomes[:, order, t])
            values[f"{task}_mrr"].append(_mean_or_nan([_reciprocal_rank(o) for o in in_order]))
            values[f"{task}_ndcg@10"].append(_mean_or_nan([_binary_ndcg(o, 10) for o in in_order]))
    return {name: np.array(v, dtype=float) for name, v in values.items()}


def _reciprocal_rank(in_order: np.ndarray) -> float | None:
    hits = np.flatnonzero(in_order)
    return None if len(hits) == 0 else 1.0 / (hits[0] + 1)


def _binary_ndcg(in_order: np.ndarray, k: int) -> float | None:
    positives = int(in_order.sum())
    if positives == 0:
        return None
    discounts = 1.0 / np.log2(np.arange(2, len(in_order) + 2))
    return float((in_order[:k] * discounts[:k]).sum() / discounts[: min(k, positives)].sum())


def _mean_or_nan(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")
