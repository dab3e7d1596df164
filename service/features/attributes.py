"""Product attributes derived from the product title alone.

The public relevance sets carry only titles (and, for CrowdFlower, a description), so brand and
category are inferred:

- brand: the leading words of the title, learned from the catalog (`BrandVocabulary`);
- category: the first department whose keywords occur in the title (`CATEGORY_KEYWORDS`),
  `other` when none does;
- title length and the count of tokens that contain digits (sizes, gauges, model numbers).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.features.text import PREFIX_LENGTH, is_number_token, tokenize

UNKNOWN_BRAND = "<unknown>"
OTHER_CATEGORY = "other"

# Departments of a home-improvement catalog and the title words that mark them. Checked in
# this order; the first department with a matching token wins.
CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "appliances": (
        "refrigerator",
        "washer",
        "dryer",
        "dishwasher",
        "microwave",
        "range",
        "freezer",
        "oven",
        "cooktop",
    ),
    "paint": (
        "paint",
        "stain",
        "primer",
        "coating",
        "sealer",
        "deckover",
        "enamel",
        "caulk",
        "brush",
        "roller",
    ),
    "lighting": (
        "light",
        "lights",
        "lighting",
        "lamp",
        "bulb",
        "bulbs",
        "led",
        "chandelier",
        "sconce",
        "fixture",
    ),
    "plumbing": ("faucet", "toilet", "sink", "shower", "valve", "pipe", "drain", "tub", "plumbing", "water"),
    "electrical": (
        "outlet",
        "switch",
        "wire",
        "cable",
        "breaker",
        "electrical",
        "volt",
        "amp",
        "extension",
        "receptacle",
    ),
    "flooring": ("floor", "flooring", "tile", "carpet", "laminate", "vinyl", "rug", "hardwood", "grout"),
    "doors_windows": (
        "door",
        "doors",
        "window",
        "windows",
        "blind",
        "blinds",
        "shade",
        "curtain",
        "screen",
        "storm",
    ),
    "outdoor_garden": (
        "garden",
        "lawn",
        "mower",
        "patio",
        "grill",
        "hose",
        "plant",
        "outdoor",
        "fence",
        "mulch",
        "trimmer",
    ),
    "tools": (
        "drill",
        "saw",
        "tool",
        "tools",
        "wrench",
        "hammer",
        "blade",
        "cordless",
        "bit",
        "sander",
        "ladder",
    ),
    "hardware": (
        "screw",
        "screws",
        "bolt",
        "nail",
        "nails",
        "hinge",
        "bracket",
        "anchor",
        "lock",
        "knob",
        "hook",
    ),
    "building_materials": (
        "lumber",
        "plywood",
        "drywall",
        "concrete",
        "insulation",
        "board",
        "cement",
        "roof",
        "siding",
        "brick",
    ),
    "heating_cooling": (
        "heater",
        "fan",
        "air",
        "conditioner",
        "thermostat",
        "filter",
        "vent",
        "furnace",
        "humidifier",
    ),
    "kitchen_bath": ("cabinet", "vanity", "countertop", "mirror", "towel", "kitchen", "bath", "bathroom"),
    "storage": ("shelf", "shelving", "storage", "rack", "organizer", "bin", "cart", "closet"),
}
CATEGORIES: tuple[str, ...] = (OTHER_CATEGORY, *CATEGORY_KEYWORDS)


def category_of(title_tokens: Iterable[str]) -> str:
    tokens = set(title_tokens)
    for category, keywords in CATEGORY_KEYWORDS.items():
        if tokens.intersection(keywords):
            return category
    return OTHER_CATEGORY


@dataclass(frozen=True)
class ProductAttributes:
    brand: str
    category: str
    title_tokens: tuple[str, ...]
    title_token_count: int
    title_number_count: int
    # Derived once per product instead of once per request: the feature builder's set operations.
    token_set: frozenset[str] = field(init=False, repr=False, compare=False)
    token_prefixes: frozenset[str] = field(init=False, repr=False, compare=False)
    padded_title: str = field(init=False, repr=False, compare=False)
    brand_tokens: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # object.__setattr__ because the dataclass is frozen.
        object.__setattr__(self, "token_set", frozenset(self.title_tokens))
        object.__setattr__(self, "token_prefixes", frozenset(t[:PREFIX_LENGTH] for t in self.title_tokens))
        # Spaces at both ends, so that a phrase matches whole tokens only ("saw" not in "sawhorse").
        object.__setattr__(self, "padded_title", f" {' '.join(self.title_tokens)} ")
        brand = frozenset() if self.brand == UNKNOWN_BRAND else frozenset(self.brand.split())
        object.__setattr__(self, "brand_tokens", brand)


class BrandVocabulary:
    """Brands as leading title n-grams (n <= 3) seen at the start of several catalog titles.

    A leading word is extended by the next word while that longer prefix starts at least half as
    many titles as the shorter one, and at least `min_titles` ("simpson strong-tie", but not
    "behr premium textured", nor "ryobi drill" when "ryobi" also starts "ryobi saw").
    """

    MAX_WORDS = 3

    def __init__(self, brands: Iterable[str]) -> None:
        self.brands = frozenset(brands)

    @classmethod
    def fit(cls, titles: Iterable[str], min_titles: int = 2) -> "BrandVocabulary":
        prefix_counts: Counter[str] = Counter()
        token_lists = [tokenize(title) for title in titles]
        for tokens in token_lists:
            for n in range(1, min(cls.MAX_WORDS, len(tokens)) + 1):
                prefix_counts[" ".join(tokens[:n])] += 1

        brands = set()
        for tokens in token_lists:
            brand = _leading_brand(tokens, prefix_counts, min_titles)
            if brand and prefix_counts[brand] >= min_titles:
                brands.add(brand)
        return cls(brands)

    def brand_of(self, title_tokens: tuple[str, ...] | list[str]) -> str:
        """Return the longest leading n-gram that is a known brand, else `UNKNOWN_BRAND`."""
        for n in range(min(self.MAX_WORDS, len(title_tokens)), 0, -1):
            prefix = " ".join(title_tokens[:n])
            if prefix in self.brands:
                return prefix
        return UNKNOWN_BRAND


def _leading_brand(tokens: list[str], prefix_counts: Counter[str], min_titles: int) -> str:
    if not tokens:
        return ""
    brand = tokens[0]
    for n in range(2, min(BrandVocabulary.MAX_WORDS, len(tokens)) + 1):
        longer = " ".join(tokens[:n])
        count = prefix_counts[longer]
        if count * 2 < prefix_counts[brand] or count < min_titles or is_number_token(tokens[n - 1]):
            break
        brand = longer
    return brand


def describe_product(title: str, brands: BrandVocabulary) -> ProductAttributes:
    tokens = tuple(tokenize(title))
    return ProductAttributes(
        brand=brands.brand_of(tokens),
        category=category_of(tokens),
        title_tokens=tokens,
        title_token_count=len(tokens),
        title_number_count=sum(1 for token in tokens if is_number_token(token)),
    )
