"""Tests of brand and category inference from product titles."""

import pytest

from service.features.attributes import (
    CATEGORIES,
    OTHER_CATEGORY,
    UNKNOWN_BRAND,
    BrandVocabulary,
    category_of,
    describe_product,
)

# BrandVocabulary.fit


def test_fit_keeps_common_two_word_brand():
    titles = [
        "Simpson Strong-Tie 12 in. Strap Tie",
        "Simpson Strong-Tie Angle Bracket",
        "Simpson Strong-Tie Joist Hanger",
    ]

    vocabulary = BrandVocabulary.fit(titles)

    assert vocabulary.brands == {"simpson strong-tie"}


def test_fit_stops_at_rare_third_word():
    # "behr premium" starts 3 of the 4 "behr" titles, but each three-word prefix starts only one.
    titles = [
        "Behr Premium Textured DeckOver",
        "Behr Premium Plus Ultra",
        "Behr Premium Stain",
        "Behr Marquee Paint",
    ]

    vocabulary = BrandVocabulary.fit(titles)

    assert vocabulary.brands == {"behr", "behr premium"}


def test_fit_not_extended_over_numbers():
    titles = ["Husky 20 in. Tool Box", "Husky 20 in. Tool Bag", "Husky 20 in. Organizer"]

    vocabulary = BrandVocabulary.fit(titles)

    assert vocabulary.brands == {"husky"}


@pytest.mark.parametrize(
    ("min_titles", "brands"),
    [(1, {"ryobi", "makita drill"}), (2, {"ryobi"}), (3, {"ryobi"}), (4, set())],
)
def test_fit_min_titles(min_titles, brands):
    # "ryobi" starts 3 titles. "makita" starts 1, so it extends to "makita drill", which also
    # starts 1.
    titles = ["Ryobi Drill", "Ryobi Saw", "Ryobi Sander", "Makita Drill"]

    vocabulary = BrandVocabulary.fit(titles, min_titles=min_titles)

    assert vocabulary.brands == brands


def test_fit_two_title_brand():
    vocabulary = BrandVocabulary.fit(["Ryobi Drill", "Ryobi Saw"], min_titles=2)

    assert vocabulary.brands == {"ryobi"}


def test_fit_empty_title_ignored():
    vocabulary = BrandVocabulary.fit(["", "Ryobi Drill", "Ryobi Saw", "Ryobi Sander"])

    assert vocabulary.brands == {"ryobi"}


# BrandVocabulary.brand_of


def test_brand_of_longest_prefix():
    vocabulary = BrandVocabulary(["behr", "behr premium"])

    assert vocabulary.brand_of(("behr", "premium", "stain")) == "behr premium"


def test_brand_of_shorter_prefix():
    vocabulary = BrandVocabulary(["behr", "behr premium"])

    assert vocabulary.brand_of(("behr", "marquee", "paint")) == "behr"


def test_brand_of_unknown_brand():
    vocabulary = BrandVocabulary(["behr"])

    assert vocabulary.brand_of(("dewalt", "drill")) == UNKNOWN_BRAND


def test_brand_of_only_leading_words():
    vocabulary = BrandVocabulary(["behr"])

    assert vocabulary.brand_of(("paint", "by", "behr")) == UNKNOWN_BRAND


def test_brand_of_empty_title():
    vocabulary = BrandVocabulary(["behr"])

    assert vocabulary.brand_of(()) == UNKNOWN_BRAND


# category_of


@pytest.mark.parametrize(
    ("tokens", "category"),
    [
        (("kohler", "kitchen", "faucet"), "plumbing"),  # plumbing is checked before kitchen_bath
        (("water", "heater"), "plumbing"),  # plumbing is checked before heating_cooling
        (("range", "light"), "appliances"),  # appliances is checked before lighting
        (("paint", "roller", "cover"), "paint"),
        (("led", "light", "bulb"), "lighting"),
        (("garden", "hose"), "outdoor_garden"),
        (("cordless", "drill"), "tools"),
        (("widget",), OTHER_CATEGORY),
        ((), OTHER_CATEGORY),
    ],
)
def test_category_of_keyword_order(tokens, category):
    assert category_of(tokens) == category


def test_categories_start_with_other():
    assert CATEGORIES[0] == OTHER_CATEGORY


# describe_product


def test_describe_product_fields():
    vocabulary = BrandVocabulary(["simpson strong-tie"])

    attributes = describe_product("Simpson Strong-Tie 12-Gauge Angle Bracket", vocabulary)

    assert attributes.brand == "simpson strong-tie"
    assert attributes.category == "hardware"
    assert attributes.title_tokens == ("simpson", "strong-tie", "12-gauge", "angle", "bracket")
    assert attributes.title_token_count == 5
    assert attributes.title_number_count == 1
