"""Seeded split of queries into train, validation and test."""

from dataclasses import dataclass

import numpy as np

from training.data.adapters import Judgements


@dataclass(frozen=True)
class QuerySplit:
    train: frozenset[str]
    validation: frozenset[str]
    test: frozenset[str]

    def name_of(self, query: str) -> str:
        for name in ("train", "validation", "test"):
            if query in getattr(self, name):
                return name
        raise KeyError(f"query {query!r} is in no part of the split")


def split_queries(
    judgements: Judgements, validation_share: float, test_share: float, seed: int
) -> QuerySplit:
    """Split by query, so that no query's judgements leak across parts."""
    if validation_share < 0 or test_share < 0 or validation_share + test_share >= 1:
        raise ValueError(
            f"validation_share={validation_share} and test_share={test_share} must be >= 0 "
            "and sum to less than 1"
        )
    queries = np.array(judgements.queries, dtype=object)
    np.random.default_rng(seed).shuffle(queries)
    n_validation = int(round(len(queries) * validation_share))
    n_test = int(round(len(queries) * test_share))
    return QuerySplit(
        validation=frozenset(queries[:n_validation]),
        test=frozenset(queries[n_validation : n_validation + n_test]),
        train=frozenset(queries[n_validation + n_test :]),
    )
