"""Text normalization and tokenization for titles and queries."""

import re
import unicodedata

# Prefix length for loose matching of plural and truncated forms ("drills" matches "drill",
# "galv" matches "galvanized").
PREFIX_LENGTH = 4

_TOKEN = re.compile(r"[a-z0-9]+(?:[.'/-][a-z0-9]+)*")
_NUMBER = re.compile(r"\d")


def normalize_text(text: str) -> str:
    """Lowercase, fold Unicode compatibility forms and collapse whitespace.

    The query-embedding cache and the query-product statistics are keyed by this form.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    return " ".join(folded.split())


def tokenize(text: str) -> list[str]:
    """Split normalized text into alphanumeric tokens, keeping `1/2`, `12-gauge`, `2.5`."""
    return _TOKEN.findall(normalize_text(text))


def is_number_token(token: str) -> bool:
    return _NUMBER.search(token) is not None


def is_visible(character: str) -> bool:
    """Return whether a character shows as text: not whitespace, control or format (zero-width)."""
    return not character.isspace() and unicodedata.category(character) not in ("Cc", "Cf")


def has_visible_text(text: str | None) -> bool:
    return text is not None and any(is_visible(character) for character in text)
