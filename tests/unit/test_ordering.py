"""Candidate order: descending score, equal scores by product_id, whatever order they came in."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.candidates import Candidate
from service.pipeline.ordering import sort_by_score


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.sampled_from([0.5, -1.0, 2.0, 0.25, 3.0]), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
)
def test_sort_matches_score_then_product_id(scores, seed):
    # Few distinct values, so most lists hold several runs of ties.
    names = np.random.default_rng(seed).permutation(len(scores))
    candidates = [Candidate(f"p{name:03d}") for name in names]
    values = np.array(scores, dtype=np.float32)

    order = sort_by_score(values, candidates)

    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], candidates[i].product_id))
    assert order.tolist() == expected


def test_sort_without_ties_is_by_score():
    candidates = [Candidate("b"), Candidate("a"), Candidate("c")]
    assert sort_by_score(np.array([0.1, 0.3, 0.2], dtype=np.float32), candidates).tolist() == [1, 2, 0]
