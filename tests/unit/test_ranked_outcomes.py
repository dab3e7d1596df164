"""Tests of simulated responses to a given ranking (common random numbers)."""

import numpy as np

from training.simulation.behaviour import simulate_ranked_outcomes

# Three products; attraction, add-to-cart and purchase probabilities per product.
PROBABILITIES = np.array([[0.9, 0.9, 0.9], [0.9, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_only_first_position_examined():
    # A draw of 0.6 passes examination only at position 1 (probability 1/1); at 2 it is 1/2.
    uniforms = np.full((1, 3, 4), 0.6)

    outcomes = simulate_ranked_outcomes(PROBABILITIES, np.array([1, 0, 2]), uniforms, examination_eta=1.0)

    assert outcomes[0, :, 0].tolist() == [0, 1, 0]


def test_order_moves_clicks():
    uniforms = np.full((1, 3, 4), 0.6)

    first = simulate_ranked_outcomes(PROBABILITIES, np.array([0, 1, 2]), uniforms, 1.0)
    second = simulate_ranked_outcomes(PROBABILITIES, np.array([1, 0, 2]), uniforms, 1.0)

    assert first[0, 0].tolist() == [1, 1, 1]
    assert second[0, 0].tolist() == [0, 0, 0]


def test_outcomes_nested():
    uniforms = np.random.default_rng(0).random((50, 3, 4))

    outcomes = simulate_ranked_outcomes(PROBABILITIES, np.array([2, 0, 1]), uniforms, 1.0)

    assert (outcomes[..., 1] <= outcomes[..., 0]).all()
    assert (outcomes[..., 2] <= outcomes[..., 1]).all()


def test_same_order_same_outcomes():
    uniforms = np.random.default_rng(1).random((20, 3, 4))
    order = np.array([0, 2, 1])

    first = simulate_ranked_outcomes(PROBABILITIES, order, uniforms, 1.0)
    second = simulate_ranked_outcomes(PROBABILITIES, order, uniforms, 1.0)

    assert np.array_equal(first, second)
