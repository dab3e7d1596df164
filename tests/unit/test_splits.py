"""Tests of the seeded query split."""

import pandas as pd
import pytest

from training.data.adapters import COLUMNS, Judgements
from training.data.splits import QuerySplit, split_queries

QUERY_COUNT = 100


@pytest.fixture(scope="module")
def judgements() -> Judgements:
    # Two judged products per query, as in the real sets.
    rows = [
        (f"query {i:03d}", f"hd:{i}{j}", f"title {i} {j}", 0.5, "home_depot")
        for i in range(QUERY_COUNT)
        for j in range(2)
    ]
    return Judgements(pd.DataFrame(rows, columns=COLUMNS))


def test_split_parts_disjoint(judgements):
    split = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)

    assert not split.train & split.validation
    assert not split.train & split.test
    assert not split.validation & split.test


def test_split_covers_all_queries(judgements):
    split = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)

    assert split.train | split.validation | split.test == set(judgements.queries)


def test_split_part_sizes(judgements):
    split = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)

    assert len(split.validation) == 10
    assert len(split.test) == 20
    assert len(split.train) == 70


def test_same_seed_same_split(judgements):
    first = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)
    second = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)

    assert first == second


def test_other_seed_other_split(judgements):
    first = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)
    second = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=4)

    assert first.validation != second.validation
    assert first.test != second.test


def test_zero_shares_all_train(judgements):
    split = split_queries(judgements, validation_share=0.0, test_share=0.0, seed=3)

    assert split.train == set(judgements.queries)
    assert split.validation == frozenset()
    assert split.test == frozenset()


def test_name_of_each_part(judgements):
    split = split_queries(judgements, validation_share=0.1, test_share=0.2, seed=3)

    for part in ("train", "validation", "test"):
        for query in getattr(split, part):
            assert split.name_of(query) == part


@pytest.mark.parametrize(
    ("validation_share", "test_share"),
    [(-0.1, 0.2), (0.2, -0.1), (0.5, 0.5), (0.7, 0.4)],
)
def test_invalid_shares_raise(judgements, validation_share, test_share):
    with pytest.raises(ValueError, match=f"validation_share={validation_share}"):
        split_queries(judgements, validation_share, test_share, seed=3)


def test_name_of_unknown_query():
    split = QuerySplit(train=frozenset({"a"}), validation=frozenset({"b"}), test=frozenset({"c"}))

    assert split.name_of("b") == "validation"
    with pytest.raises(KeyError):
        split.name_of("zzz")
