"""Candidates of a request: catalog lookup, embeddings, and the ranker's tabular inputs."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.engines.bundle import Bundle
from service.features.attributes import ProductAttributes, describe_product
from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES, QueryContext, build_features
from service.features.text import has_visible_text
from service.features.user import UserFeatures
from service.logging_setup import RepeatLimiter

logger = logging.getLogger(__name__)
failure_log = RepeatLimiter(logger)


class CandidateLike(Protocol):
    """The fields of a candidate that the pipeline reads.

    The API passes its validated request items as they are, because copying 1,000 of them into
    `Candidate` objects cost 0.36 ms.
    """

    @property
    def product_id(self) -> str: ...

    @property
    def title(self) -> str | None: ...


@dataclass(frozen=True)
class Candidate:
    product_id: str
    title: str | None = None


@dataclass(frozen=True)
class GatheredProducts:
    rows: np.ndarray  # int64 [candidates]: catalog row, -1 for a product the bundle does not know
    embeddings: np.ndarray  # float32 [candidates, d]
    new_products: dict[int, ProductAttributes]  # candidate position -> attributes from its request title
    untitled: int  # unknown products ranked without text


def gather_products(
    bundle: Bundle, candidates: Sequence[CandidateLike], max_new_titles: int = 8
) -> GatheredProducts:
    """Look the candidates up in the catalog; embed new products from their request titles.

    A product missing from the bundle is embedded from its request title, in one batched encoder
    call for all such products, at most `max_new_titles` of them (an encoder pass each). Without
    a title with a visible character, or past that limit (the first titles by product_id are
    embedded), it gets a zero embedding and the attributes of an empty title, and counts as
    untitled.
    """
    catalog = bundle.catalog
    rows = np.array([catalog.index.get(c.product_id, -1) for c in candidates], dtype=np.int64)
    embeddings = catalog.embeddings[np.maximum(rows, 0)]  # a copy; unknown rows are overwritten
    unknown = np.flatnonzero(rows < 0)
    if unknown.size == 0:
        return GatheredProducts(rows, embeddings, {}, 0)

    # Past the limit, which titles are embedded must not depend on the order candidates were sent
    # in (the ranking would), so the first ones by product_id are.
    titled = sorted(
        (int(i) for i in unknown if has_visible_text(candidates[i].title)),
        key=lambda i: candidates[i].product_id,
    )[:max_new_titles]
    if titled:
        try:
            embeddings[titled] = bundle.encoder.embed([candidates[i].title for i in titled])
        except Exception as error:
            failure_log.log(
                logging.ERROR,
                "title encoder failed; %d new products ranked without text",
                len(titled),
                exc_info=error,
            )
            titled = []
    embedded = set(titled)
    untitled = [i for i in unknown if i not in embedded]
    embeddings[untitled] = 0.0
    new_products = {
        int(i): describe_product(candidates[i].title if i in embedded else "", bundle.brands) for i in unknown
    }
    return GatheredProducts(rows, embeddings, new_products, len(untitled))


def product_features(
    bundle: Bundle,
    user: UserFeatures,
    context: QueryContext,
    candidates: Sequence[CandidateLike],
    products: GatheredProducts,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ranker's (categorical, continuous) inputs, rows in candidate order.

    Catalog products take the array path (`CatalogColumns`). New products, described from their
    request titles, take `build_features`, which defines the same values one product at a time.
    """
    if not products.new_products:
        return bundle.columns.features(user, context, products.rows, bundle.vocabularies)
    n = len(candidates)
    categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=np.int64)
    continuous = np.empty((n, len(CONTINUOUS_FEATURES)), dtype=np.float32)
    known = np.flatnonzero(products.rows >= 0)
    if known.size:
        categorical[known], continuous[known] = bundle.columns.features(
            user, context, products.rows[known], bundle.vocabularies
        )
    new = list(products.new_products)
    categorical[new], continuous[new] = build_features(
        user,
        context,
        [candidates[i].product_id for i in new],
        list(products.new_products.values()),
        bundle.stats,
        bundle.vocabularies,
    )
    return categorical, continuous
