"""Feature matrices for logged sessions, built with the serving feature builder."""

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from service.features.attributes import ProductAttributes
from service.features.builder import QueryContext, Vocabularies, build_features
from service.features.interactions import InteractionStats
from service.features.user import UserFeatures


@dataclass
class RankingSet:
    """Rows of (user, query, product); rows of one list (request) are contiguous."""

    list_ids: np.ndarray  # [n] int64, one id per request
    categorical: np.ndarray  # [n, 3] int64
    continuous: np.ndarray  # [n, 21] float32
    query_rows: np.ndarray  # [n] int64 into the query embedding matrix
    product_rows: np.ndarray  # [n] int64 into the product embedding matrix
    targets: np.ndarray  # [n, 4] float32: click, add_to_cart, purchase, relevance label / 4
    human_relevance: np.ndarray  # [n] float32 in [0, 1]
    positions: np.ndarray  # [n] int64, 1-based logged position

    def __len__(self) -> int:
        return len(self.list_ids)


def build_ranking_set(
    log: pd.DataFrame,
    request_ids: list[str],
    users: dict[str, UserFeatures],
    attributes: dict[str, ProductAttributes],
    stats: InteractionStats,
    vocabularies: Vocabularies,
    query_index: dict[str, int],
    product_index: dict[str, int],
    human: dict[tuple[str, str], float],
    label_grades: dict[tuple[str, str], int],
    description: str,
    pair_stats_dropout: float = 0.0,
    seed: int = 0,
) -> RankingSet:
    """Build features for each listed request; a repeated request id yields a repeated list.

    With probability `pair_stats_dropout` a list is built without its query-product statistics,
    as if its query were new: new queries at serving time have none, and a model that always
    saw them in training would lean on them too much.
    """
    rng = np.random.default_rng(seed)
    product_only = stats.without_pairs()
    sessions = {request_id: rows for request_id, rows in log.groupby("request_id", sort=False)}
    parts: dict[str, list] = {key: [] for key in ("list", "cat", "cont", "q", "p", "y", "h", "pos")}
    contexts: dict[str, QueryContext] = {}
    default_user = UserFeatures()

    for list_number, request_id in enumerate(tqdm(request_ids, desc=description, unit="list", mininterval=2)):
        rows = sessions[request_id]
        query = rows["query"].iat[0]
        normalized = rows["normalized_query"].iat[0]
        context = contexts.setdefault(normalized, QueryContext.from_query(query))
        product_ids = rows["product_id"].tolist()
        products = [attributes[p] for p in product_ids]
        user = users.get(rows["user_id"].iat[0], default_user)
        list_stats = product_only if rng.random() < pair_stats_dropout else stats
        categorical, continuous = build_features(
            user, context, product_ids, products, list_stats, vocabularies
        )

        grades = [label_grades.get((normalized, p), -1) for p in product_ids]
        parts["list"].append(np.full(len(rows), list_number, dtype=np.int64))
        parts["cat"].append(categorical)
        parts["cont"].append(continuous)
        parts["q"].append(np.full(len(rows), query_index[normalized], dtype=np.int64))
        parts["p"].append(np.array([product_index[p] for p in product_ids], dtype=np.int64))
        parts["y"].append(
            np.column_stack(
                [
                    rows["click"].to_numpy(np.float32),
                    rows["add_to_cart"].to_numpy(np.float32),
                    rows["purchase"].to_numpy(np.float32),
                    np.array([g / 4.0 if g >= 0 else np.nan for g in grades], dtype=np.float32),
                ]
            )
        )
        parts["h"].append(np.array([human[(query, p)] for p in product_ids], dtype=np.float32))
        parts["pos"].append(rows["position"].to_numpy(np.int64))

    return RankingSet(
        list_ids=np.concatenate(parts["list"]),
        categorical=np.concatenate(parts["cat"]),
        continuous=np.concatenate(parts["cont"]),
        query_rows=np.concatenate(parts["q"]),
        product_rows=np.concatenate(parts["p"]),
        targets=np.concatenate(parts["y"]),
        human_relevance=np.concatenate(parts["h"]),
        positions=np.concatenate(parts["pos"]),
    )


def save_ranking_set(data: RankingSet, query_texts: list[str], path: Path) -> None:
    """Save a set with the normalized query text of every query row, so that a bundle's own
    encoder can embed the queries again."""
    np.savez(path, query_texts=np.array(query_texts, dtype=str), **asdict(data))


def load_ranking_set(path: Path) -> tuple[RankingSet, list[str]]:
    arrays = np.load(path, allow_pickle=False)
    data = RankingSet(**{f.name: arrays[f.name] for f in fields(RankingSet)})
    return data, [str(q) for q in arrays["query_texts"]]
