"""Tests of text normalization and tokenization."""

import pytest

from service.features.text import is_number_token, normalize_text, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("1/2 in. Copper Pipe", ["1/2", "in", "copper", "pipe"]),
        ("12-Gauge Wire", ["12-gauge", "wire"]),
        ("2.5 gal. Bucket", ["2.5", "gal", "bucket"]),
        ("Men's Boots", ["men's", "boots"]),
        ("Drill, Bits & Saws!", ["drill", "bits", "saws"]),
        ("-ends. with- punctuation/", ["ends", "with", "punctuation"]),
        ("", []),
    ],
)
def test_tokenize_cases(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_full_width_fraction():
    # Full-width digits and solidus fold to ASCII before the split.
    assert tokenize("\uff11\uff0f\uff12 \uff49\uff4e") == ["1/2", "in"]


def test_normalize_full_width_letters():
    # U+3000 is the ideographic space.
    assert normalize_text("\uff22\uff25\uff28\uff32\u3000Paint") == "behr paint"


def test_normalize_collapses_whitespace():
    assert normalize_text("  Deck \t\n Stain  ") == "deck stain"


def test_normalize_folds_ligature():
    assert normalize_text("\ufb01nish nails") == "finish nails"


@pytest.mark.parametrize(
    ("token", "expected"),
    [("12-gauge", True), ("1/2", True), ("2x4", True), ("faucet", False), ("men's", False)],
)
def test_is_number_token(token, expected):
    assert is_number_token(token) is expected
