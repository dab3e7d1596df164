"""Seeded simulation of users and their search sessions over the real judged queries.

The public relevance sets have no users, impressions or clicks, so this module makes them up
with a documented model (docs/simulation.md), and everything downstream reads its output as if
it were a real interaction log:

    request_id, user_id, query, product_id, position, click, add_to_cart, purchase, split, phase

One row per impression. `phase` is "history" for the earlier sessions of each user, which feed
user features and interaction statistics, and "train" for the later ones, which become
training examples. Sessions of validation and test queries are all "train".

The model, per session of user u issuing query q with judged products P(q):
1. Logged ranking: P(q) ordered by `logging_quality * relevance + Gumbel noise`, a production
   ranker that is better than random but far from perfect. Validation and test sessions are
   logged in a uniformly random order instead (`evaluation_logging_quality = 0`), as in a
   randomized experiment, so their clicks do not favour the old ranker's order over any other.
2. Examination at 1-based position k: `1 / k ** examination_eta` (position bias).
3. Attraction: `sigmoid(a0 + a_relevance * (relevance - 0.5) + a_category * c_u[category]
   + a_brand * b_u[brand])`, where c_u and b_u are the user's latent affinities.
4. click = examined and attracted; add_to_cart given a click and purchase given an add-to-cart
   each with their own logistic model of relevance, brand affinity and the user's segment.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from service.features.attributes import CATEGORIES, ProductAttributes
from service.features.text import normalize_text
from training.data.adapters import Judgements
from training.data.splits import QuerySplit

SIMULATED_SEGMENTS = ("casual", "diy", "pro")
LOG_COLUMNS = [
    "request_id",
    "user_id",
    "query",
    "product_id",
    "position",
    "click",
    "add_to_cart",
    "purchase",
    "split",
    "phase",
]


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 7
    n_users: int = 2000
    mean_sessions_per_user: float = 14.0
    history_share: float = 0.4
    segment_shares: tuple[float, float, float] = (0.5, 0.35, 0.15)
    category_concentration: float = 0.4
    brands_per_user: int = 6
    logging_quality: float = 2.0
    evaluation_logging_quality: float = 0.0
    examination_eta: float = 1.0
    attraction_bias: float = -0.6
    attraction_relevance: float = 4.0
    attraction_category: float = 6.0
    attraction_brand: float = 2.5
    add_to_cart_bias: float = -2.0
    add_to_cart_relevance: float = 2.0
    add_to_cart_brand: float = 1.5
    purchase_bias: float = -1.2
    purchase_relevance: float = 1.0
    # Extra log-odds of add-to-cart and purchase per segment, in SIMULATED_SEGMENTS order.
    segment_add_to_cart: tuple[float, float, float] = (-0.5, 0.0, 0.8)
    segment_purchase: tuple[float, float, float] = (-0.6, 0.0, 1.0)
    validation_sessions_per_query: float = 3.0
    test_sessions_per_query: float = 3.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimulatedUser:
    user_id: str
    segment: str
    activity: float
    category_affinity: np.ndarray  # [len(CATEGORIES)], sums to 1
    brand_affinity: dict[str, float]


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x)))


def simulate_users(
    config: SimulationConfig, brand_popularity: pd.Series, rng: np.random.Generator
) -> list[SimulatedUser]:
    """Draw users with a segment, a lognormal activity and sparse category and brand tastes."""
    brands = brand_popularity.index.to_numpy()
    brand_p = (brand_popularity.to_numpy() / brand_popularity.sum()).astype(float)
    users = []
    for i in range(config.n_users):
        n_brands = min(config.brands_per_user, len(brands))
        chosen = rng.choice(brands, size=n_brands, replace=False, p=brand_p) if n_brands else []
        users.append(
            SimulatedUser(
                user_id=f"u{i:06d}",
                segment=str(rng.choice(SIMULATED_SEGMENTS, p=config.segment_shares)),
                activity=float(rng.lognormal(mean=0.0, sigma=0.8)),
                category_affinity=rng.dirichlet(np.full(len(CATEGORIES), config.category_concentration)),
                brand_affinity={str(b): float(rng.uniform(0.3, 1.0)) for b in chosen},
            )
        )
    return users


class SessionSimulator:
    def __init__(
        self,
        config: SimulationConfig,
        judgements: Judgements,
        attributes: dict[str, ProductAttributes],
    ) -> None:
        self.config = config
        self.attributes = attributes
        self.category_index = {c: i for i, c in enumerate(CATEGORIES)}
        frame = judgements.frame
        self.lists = {
            query: (group["product_id"].to_numpy(), group["relevance"].to_numpy(dtype=float))
            for query, group in frame.groupby("query", sort=True)
        }

    def response_probabilities(
        self, user: SimulatedUser, product_id: str, relevance: float
    ) -> tuple[float, float, float]:
        """Return P(attraction), P(add-to-cart | click) and P(purchase | add-to-cart)."""
        c = self.config
        attributes = self.attributes[product_id]
        segment = SIMULATED_SEGMENTS.index(user.segment)
        category_taste = user.category_affinity[self.category_index[attributes.category]]
        brand_taste = user.brand_affinity.get(attributes.brand, 0.0)
        attraction = _sigmoid(
            c.attraction_bias
            + c.attraction_relevance * (relevance - 0.5)
            + c.attraction_category * category_taste
            + c.attraction_brand * brand_taste
        )
        add_to_cart = _sigmoid(
            c.add_to_cart_bias
            + c.add_to_cart_relevance * relevance
            + c.add_to_cart_brand * brand_taste
            + c.segment_add_to_cart[segment]
        )
        purchase = _sigmoid(c.purchase_bias + c.purchase_relevance * relevance + c.segment_purchase[segment])
        return float(attraction), float(add_to_cart), float(purchase)

    def session(
        self, rng: np.random.Generator, user: SimulatedUser, query: str, logging_quality: float
    ) -> list[tuple]:
        """Return one session's impressions as (product_id, position, click, atc, purchase)."""
        c = self.config
        product_ids, relevance = self.lists[query]
        logged = np.argsort(-(logging_quality * relevance + rng.gumbel(size=len(relevance))))
        rows = []
        for position, idx in enumerate(logged, start=1):
            attraction, p_add_to_cart, p_purchase = self.response_probabilities(
                user, product_ids[idx], relevance[idx]
            )
            examined = rng.random() < 1.0 / position**c.examination_eta
            click = examined and rng.random() < attraction
            add_to_cart = click and rng.random() < p_add_to_cart
            purchase = add_to_cart and rng.random() < p_purchase
            rows.append((product_ids[idx], position, int(click), int(add_to_cart), int(purchase)))
        return rows


def simulate_ranked_outcomes(
    probabilities: np.ndarray, order: np.ndarray, uniforms: np.ndarray, examination_eta: float
) -> np.ndarray:
    """Return int [replicates, n, 3] click, add-to-cart and purchase of products shown in `order`.

    `probabilities` [n, 3] are `SessionSimulator.response_probabilities` per product, `order`
    lists product indices from position 1 down, and `uniforms` [replicates, n, 4] are random
    draws for examination, attraction, add-to-cart and purchase. The draws are indexed by
    product and not by position, so two rankings of one session differ only through their
    order (common random numbers).
    """
    positions = np.empty(len(order), dtype=float)
    positions[order] = np.arange(1, len(order) + 1)
    examined = uniforms[..., 0] < 1.0 / positions**examination_eta
    click = examined & (uniforms[..., 1] < probabilities[:, 0])
    add_to_cart = click & (uniforms[..., 2] < probabilities[:, 1])
    purchase = add_to_cart & (uniforms[..., 3] < probabilities[:, 2])
    return np.stack([click, add_to_cart, purchase], axis=-1).astype(np.int64)


def simulate_log(
    config: SimulationConfig,
    judgements: Judgements,
    split: QuerySplit,
    attributes: dict[str, ProductAttributes],
) -> tuple[pd.DataFrame, list[SimulatedUser]]:
    """Simulate all users' sessions; return the interaction log and the latent users."""
    rng = np.random.default_rng(config.seed)
    brand_popularity = pd.Series([a.brand for a in attributes.values()]).value_counts()
    brand_popularity = brand_popularity[brand_popularity.index != "<unknown>"]
    users = simulate_users(config, brand_popularity, rng)
    simulator = SessionSimulator(config, judgements, attributes)
    activity = np.array([u.activity for u in users])
    user_p = activity / activity.sum()

    rows: list[tuple] = []
    request_counter = 0

    def add_sessions(user: SimulatedUser, queries: np.ndarray, split_name: str, phases: list[str]) -> None:
        nonlocal request_counter
        quality = config.logging_quality if split_name == "train" else config.evaluation_logging_quality
        for query, phase in zip(queries, phases, strict=True):
            request_id = f"r{request_counter:08d}"
            request_counter += 1
            for impression in simulator.session(rng, user, query, quality):
                rows.append((request_id, user.user_id, query, *impression, split_name, phase))

    train_queries = np.array(sorted(split.train), dtype=object)
    for user in users:
        n_sessions = 1 + rng.poisson(config.mean_sessions_per_user * user.activity)
        n_history = int(math.floor(n_sessions * config.history_share))
        phases = ["history"] * n_history + ["train"] * (n_sessions - n_history)
        add_sessions(user, rng.choice(train_queries, size=n_sessions), "train", phases)

    for split_name, queries, per_query in (
        ("validation", split.validation, config.validation_sessions_per_query),
        ("test", split.test, config.test_sessions_per_query),
    ):
        for query in sorted(queries):
            n = max(1, rng.poisson(per_query))
            for user_index in rng.choice(len(users), size=n, p=user_p):
                add_sessions(users[user_index], np.array([query], dtype=object), split_name, ["train"])

    log = pd.DataFrame(rows, columns=LOG_COLUMNS)
    log["normalized_query"] = log["query"].map(normalize_text)
    return log, users
