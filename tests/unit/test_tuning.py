"""Tests of top-layer fine-tuning: cached hidden states plus the top layers equal the full encoder."""

import pytest
import torch

from training.model.encoder import load_encoder
from training.model.tuning import TopLayers, TunedEmbeddings, build_caches, resolve_tuned_layers

TEXTS = ["drill", "angle bracket for deck posts", "1/2 in. x 10 ft. copper pipe type m", "white paint"]
# float16 caches round hidden states; unit-length embeddings stay this close to the full encoder.
TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def encoder_and_tokenizer():
    encoder, tokenizer, _ = load_encoder(None)
    return encoder, tokenizer


@pytest.fixture(scope="module")
def full_embeddings(encoder_and_tokenizer):
    encoder, tokenizer = encoder_and_tokenizer
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return encoder(batch["input_ids"], batch["attention_mask"])


@pytest.mark.parametrize("k", [1, 2, 6])
def test_cached_top_layers_match_encoder(encoder_and_tokenizer, full_embeddings, k):
    encoder, tokenizer = encoder_and_tokenizer
    cache = build_caches(encoder, tokenizer, TEXTS, 64, [k], "cache")[k]
    tuned = TunedEmbeddings(TopLayers(encoder, k), cache, cache)

    assert (tuned.embed_all(cache) - full_embeddings).abs().max() < TOLERANCE


def test_lookup_repeats_rows(encoder_and_tokenizer, full_embeddings):
    encoder, tokenizer = encoder_and_tokenizer
    cache = build_caches(encoder, tokenizer, TEXTS, 64, [1], "cache")[1]
    tuned = TunedEmbeddings(TopLayers(encoder, 1), cache, cache)

    with torch.no_grad():
        queries, products = tuned.lookup(torch.tensor([0, 2, 0]), torch.tensor([3, 3, 1]))

    assert (queries - full_embeddings[[0, 2, 0]]).abs().max() < TOLERANCE
    assert (products - full_embeddings[[3, 3, 1]]).abs().max() < TOLERANCE


def test_merge_into_carries_tuned_weights(encoder_and_tokenizer):
    encoder, tokenizer = encoder_and_tokenizer
    top = TopLayers(encoder, 2)
    with torch.no_grad():
        for parameter in top.parameters():
            parameter.add_(0.01)
    merged = top.merge_into(encoder)
    cache = build_caches(encoder, tokenizer, TEXTS, 64, [2], "cache")[2]
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")

    with torch.no_grad():
        expected = TunedEmbeddings(top, cache, cache).embed_all(cache)
        actual = merged(batch["input_ids"], batch["attention_mask"])
        original = encoder(batch["input_ids"], batch["attention_mask"])

    assert (actual - expected).abs().max() < TOLERANCE
    assert (original - expected).abs().max() > 10 * TOLERANCE


def test_gradients_reach_top_layers(encoder_and_tokenizer):
    encoder, tokenizer = encoder_and_tokenizer
    cache = build_caches(encoder, tokenizer, TEXTS, 64, [1], "cache")[1]
    tuned = TunedEmbeddings(TopLayers(encoder, 1), cache, cache)

    queries, products = tuned.lookup(torch.tensor([0, 1]), torch.tensor([2, 3]))
    (queries * products).sum().backward()

    assert all(p.grad is not None for p in tuned.parameters())


def test_resolve_tuned_layers_caps_at_depth():
    assert resolve_tuned_layers(2, 6) == 2
    assert resolve_tuned_layers(99, 6) == 6
    with pytest.raises(ValueError, match="tuned_layers"):
        resolve_tuned_layers(-1, 6)
