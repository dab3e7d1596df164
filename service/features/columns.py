"""The feature builder's per-product inputs as arrays, built once per bundle.

`build_features` walks the candidates in Python, with set operations per candidate: several
milliseconds for 1,000 candidates (see docs/performance.md). `CatalogColumns.features` computes
the same two matrices for catalog products with array operations over their row numbers. Title
tokens, prefixes and brand tokens are stored as integer ids in flat arrays, so a query's overlap
with each title is a membership test over the gathered ids plus one `bincount`. Products the
bundle does not know still go through `build_features` (see
`service.pipeline.candidates.product_features`).

Both paths must give the same values; `tests/unit/test_columns.py` compares them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.features.attributes import ProductAttributes
from service.features.builder import (
    CATEGORICAL_FEATURES,
    CONTINUOUS_FEATURES,
    QueryContext,
    Vocabularies,
    user_values,
)
from service.features.interactions import PAIR_SEPARATOR, InteractionStats
from service.features.user import UserFeatures

# Ids of strings a lookup table does not hold: never equal to a stored id (those are >= 0).
MISSING = -1


@dataclass(frozen=True)
class RaggedIds:
    """One duplicate-free id list per product, stored end to end."""

    values: np.ndarray  # int32 [total ids]
    starts: np.ndarray  # int64 [products]
    lengths: np.ndarray  # int64 [products]

    @classmethod
    def build(cls, id_lists: Sequence[Sequence[int]]) -> "RaggedIds":
        lengths = np.array([len(ids) for ids in id_lists], dtype=np.int64)
        starts = np.zeros(len(id_lists), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        values = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int32, count=int(lengths.sum()))
        return cls(values, starts, lengths)

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids of the given products end to end, the position in `rows` each id belongs to)."""
        lengths = self.lengths[rows]
        owners = np.repeat(np.arange(len(rows)), lengths)
        # Offset of each gathered id inside its own list, added to that list's start.
        first = np.cumsum(lengths) - lengths
        offsets = np.arange(owners.size) - first[owners]
        return self.values[self.starts[rows][owners] + offsets], owners

    def count_members(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Return, per product in `rows`, how many of its ids are in `ids` (float64 [len(rows)])."""
        values, owners = self.gather(rows)
        return _count_in(values, owners, ids, len(rows))


def _count_in(values: np.ndarray, owners: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    if ids.size == 0 or values.size == 0:
        return np.zeros(n)
    if ids.size > 16:
        member = np.isin(values, ids)
    else:
        # A query has a few tokens: one comparison per token is several times faster than np.isin.
        member = values == ids[0]
        for token_id in ids[1:]:
            member |= values == token_id
    return np.bincount(owners, weights=member, minlength=n)


@dataclass(frozen=True)
class CatalogColumns:
    """Per-product columns of the catalog, row-aligned with `Catalog.attributes`."""

    tokens: dict[str, int]  # title token -> id
    prefixes: dict[str, int]  # title token prefix -> id
    title_tokens: RaggedIds
    title_prefixes: RaggedIds
    brand_tokens: RaggedIds
    padded_titles: list[str]
    brand_ids: np.ndarray  # int64 [products], vocabulary ids (0 = unknown)
    category_ids: np.ndarray  # int64 [products], vocabulary ids
    # Brand and category names -> dense indexes (every name in the catalog, unlike the vocabulary
    # ids), for looking up a user's affinities by name.
    brand_keys: dict[str, int]
    brand_of_product: np.ndarray  # int64 [products], index into brand_keys' values
    category_keys: dict[str, int]
    category_of_product: np.ndarray  # int64 [products], index into category_keys' values
    product_columns: np.ndarray  # float64 [products, 4]: log1p title tokens, numbers, CTR, log1p impressions
    # normalized query -> (sorted catalog rows, float64 [rows, 2] CTR and log1p impressions)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    prior_ctr: float

    @classmethod
    def build(
        cls,
        product_ids: Sequence[str],
        attributes: Sequence[ProductAttributes],
        stats: InteractionStats,
        vocabularies: Vocabularies,
    ) -> "CatalogColumns":
        tokens: dict[str, int] = {}
        prefixes: dict[str, int] = {}

        def ids_of(strings, table: dict[str, int]) -> list[int]:
            return [table.setdefault(s, len(table)) for s in strings]

        brand_keys = _keys(p.brand for p in attributes)
        category_keys = _keys(p.category for p in attributes)
        product_stats = [stats.product_features(i) for i in product_ids]
        return cls(
            tokens=tokens,
            prefixes=prefixes,
            title_tokens=RaggedIds.build([ids_of(p.token_set, tokens) for p in attributes]),
            title_prefixes=RaggedIds.build([ids_of(p.token_prefixes, prefixes) for p in attributes]),
            brand_tokens=RaggedIds.build([ids_of(p.brand_tokens, tokens) for p in attributes]),
            padded_titles=[p.padded_title for p in attributes],
            brand_ids=np.array([vocabularies.brands.get(p.brand, 0) for p in attributes], dtype=np.int64),
            category_ids=np.array(
                [vocabularies.categories.get(p.category, 0) for p in attributes], dtype=np.int64
            ),
            brand_keys=brand_keys,
            brand_of_product=np.array([brand_keys[p.brand] for p in attributes], dtype=np.int64),
            category_keys=category_keys,
            category_of_product=np.array([category_keys[p.category] for p in attributes], dtype=np.int64),
            product_columns=np.column_stack(
                [
                    np.log1p([p.title_token_count for p in attributes]),
                    [p.title_number_count for p in attributes],
                    [ctr for ctr, _ in product_stats],
                    [log_impressions for _, log_impressions in product_stats],
                ]
            ).reshape(len(attributes), 4),
            pairs=_pairs_by_query(product_ids, stats),
            prior_ctr=stats.prior_ctr,
        )

    def features(
        self, user: UserFeatures, query: QueryContext, rows: np.ndarray, vocabularies: Vocabularies
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (categorical [n, 3] int64, continuous [n, 21] float32) for catalog rows `rows`."""
        n = len(rows)
        categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=np.int64)
        categorical[:, 0] = self.brand_ids[rows]
        categorical[:, 1] = self.category_ids[rows]
        categorical[:, 2] = vocabularies.segments.get(user.segment, 0)

        continuous = np.empty((n, len(CONTINUOUS_FEATURES)), dtype=np.float32)
        continuous[:, 0:8] = self._text_columns(query, rows)
        continuous[:, 8:12] = self.product_columns[rows]
        continuous[:, 12:14] = self._pair_columns(query.normalized, rows)
        continuous[:, 14:19] = user_values(user)
        category_affinity = _affinity(user.category_affinity, self.category_keys)
        continuous[:, 19] = category_affinity[self.category_of_product[rows]]
        continuous[:, 20] = _affinity(user.brand_affinity, self.brand_keys)[self.brand_of_product[rows]]
        return categorical, continuous

    def _text_columns(self, query: QueryContext, rows: np.ndarray) -> np.ndarray:
        """Compute the eight text-matching columns, as `builder._text_values` defines them."""
        n = len(rows)
        query_ids = _ids(query.token_set, self.tokens)
        values, owners = self.title_tokens.gather(rows)
        shared = _count_in(values, owners, query_ids, n)
        numbers = _count_in(values, owners, _ids(query.numbers, self.tokens), n)
        title_counts = self.title_tokens.lengths[rows]
        query_count = len(query.token_set)
        union = query_count + title_counts - shared
        prefix_count = len(query.prefixes)
        brand_counts = self.brand_tokens.lengths[rows]

        columns = np.zeros((n, 8))
        columns[:, 0] = np.log1p(len(query.tokens))
        columns[:, 1] = shared / max(query_count, 1)
        columns[:, 2] = shared / np.maximum(title_counts, 1)
        columns[:, 3] = shared / np.where(union > 0, union, 1)
        columns[:, 4] = self._exact_phrase(query, rows, shared)
        columns[:, 5] = self.title_prefixes.count_members(rows, _ids(query.prefixes, self.prefixes)) / max(
            prefix_count, 1
        )
        if query.numbers:
            columns[:, 6] = numbers / len(query.numbers)
        in_query = self.brand_tokens.count_members(rows, query_ids)
        columns[:, 7] = (brand_counts > 0) & (in_query == brand_counts)
        return columns

    def _exact_phrase(self, query: QueryContext, rows: np.ndarray, shared: np.ndarray) -> np.ndarray:
        """Return 1 where the title contains the query's tokens as one phrase, else 0.

        Only titles that contain every query token can match, so only those are searched."""
        phrase = np.zeros(len(rows))
        if not query.tokens:
            return phrase
        for i in np.flatnonzero(shared == len(query.token_set)):
            phrase[i] = query.padded_phrase in self.padded_titles[rows[i]]
        return phrase

    def _pair_columns(self, normalized_query: str, rows: np.ndarray) -> np.ndarray:
        columns = np.empty((len(rows), 2))
        columns[:, 0] = self.prior_ctr
        columns[:, 1] = 0.0
        logged = self.pairs.get(normalized_query)
        if logged is None:
            return columns
        logged_rows, values = logged
        positions = np.minimum(np.searchsorted(logged_rows, rows), len(logged_rows) - 1)
        found = logged_rows[positions] == rows
        columns[found] = values[positions[found]]
        return columns


def _keys(strings) -> dict[str, int]:
    return {s: i for i, s in enumerate(sorted(set(strings)))}


def _ids(strings, table: dict[str, int]) -> np.ndarray:
    return np.array([table.get(s, MISSING) for s in strings], dtype=np.int32)


def _affinity(affinities: dict[str, float], keys: dict[str, int]) -> np.ndarray:
    """Return the user's affinity per key index; keys the user has no affinity for get 0."""
    values = np.zeros(len(keys))
    for name, value in affinities.items():
        index = keys.get(name)
        if index is not None:
            values[index] = value
    return values


def _pairs_by_query(
    product_ids: Sequence[str], stats: InteractionStats
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group the logged (query, product) statistics by query, catalog products only."""
    row_of = {product_id: row for row, product_id in enumerate(product_ids)}
    grouped: dict[str, list[tuple[int, float, float]]] = {}
    for key in stats.query_product:
        # Normalized queries hold no tab (whitespace is collapsed to spaces); product ids may.
        query, _, product_id = key.partition(PAIR_SEPARATOR)
        row = row_of.get(product_id)
        if row is None:
            continue
        ctr, log_impressions = stats.pair_features(query, product_id)
        grouped.setdefault(query, []).append((row, ctr, log_impressions))
    pairs = {}
    for query, entries in grouped.items():
        entries.sort()
        rows = np.array([row for row, _, _ in entries], dtype=np.int64)
        values = np.array([(ctr, log_impressions) for _, ctr, log_impressions in entries])
        pairs[query] = (rows, values)
    return pairs
