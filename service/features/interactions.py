"""Query-product and product interaction statistics from logged search sessions.

Click-through rates are corrected for position bias: a click at a low position counts for more,
because the user was less likely to examine that position. The examination propensity is the
assumed power law `1 / position ** eta` (position 1-based), not one fitted to the logs.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

DEFAULT_PROPENSITY_ETA = 1.0
# Beta-prior strength, in examinations: a pair seen this often counts as much as the prior.
PRIOR_STRENGTH = 5.0


def examination_propensity(position: int, eta: float = DEFAULT_PROPENSITY_ETA) -> float:
    return 1.0 / position**eta


def debiased_ctr(clicks: float, examinations: float, prior_ctr: float) -> float:
    """Return clicks over expected examinations, smoothed towards `prior_ctr`."""
    return (clicks + prior_ctr * PRIOR_STRENGTH) / (examinations + PRIOR_STRENGTH)


@dataclass
class Counts:
    impressions: int = 0
    clicks: int = 0
    examinations: float = 0.0


PAIR_SEPARATOR = "\t"


def pair_key(normalized_query: str, product_id: str) -> str:
    return f"{normalized_query}{PAIR_SEPARATOR}{product_id}"


@dataclass
class InteractionStats:
    """Debiased CTR and impression counts per product and per (query, product) pair."""

    prior_ctr: float = 0.0
    product: dict[str, tuple[float, int]] = field(default_factory=dict)
    query_product: dict[str, tuple[float, int]] = field(default_factory=dict)

    @classmethod
    def from_impressions(
        cls,
        impressions: Iterable[tuple[str, str, int, int]],
        eta: float = DEFAULT_PROPENSITY_ETA,
    ) -> "InteractionStats":
        """Aggregate (normalized_query, product_id, position, click) impressions."""
        by_product: dict[str, Counts] = {}
        by_pair: dict[str, Counts] = {}
        total = Counts()
        for query, product_id, position, click in impressions:
            propensity = examination_propensity(position, eta)
            for counts in (
                by_product.setdefault(product_id, Counts()),
                by_pair.setdefault(pair_key(query, product_id), Counts()),
                total,
            ):
                counts.impressions += 1
                counts.clicks += click
                counts.examinations += propensity

        prior = total.clicks / total.examinations if total.examinations else 0.0
        return cls(
            prior_ctr=prior,
            product={
                k: (debiased_ctr(c.clicks, c.examinations, prior), c.impressions)
                for k, c in by_product.items()
            },
            query_product={
                k: (debiased_ctr(c.clicks, c.examinations, prior), c.impressions) for k, c in by_pair.items()
            },
        )

    def without_pairs(self) -> "InteractionStats":
        """Return these statistics with the query-product part left out."""
        return InteractionStats(prior_ctr=self.prior_ctr, product=self.product, query_product={})

    def product_features(self, product_id: str) -> tuple[float, float]:
        """Return (debiased CTR, log1p impressions); the prior and 0 for an unseen product."""
        ctr, impressions = self.product.get(product_id, (self.prior_ctr, 0))
        return ctr, math.log1p(impressions)

    def pair_features(self, normalized_query: str, product_id: str) -> tuple[float, float]:
        ctr, impressions = self.query_product.get(pair_key(normalized_query, product_id), (self.prior_ctr, 0))
        return ctr, math.log1p(impressions)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"prior_ctr": self.prior_ctr, "product": self.product, "query_product": self.query_product}
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> "InteractionStats":
        data = orjson.loads(payload)
        return cls(
            prior_ctr=float(data["prior_ctr"]),
            product={k: (float(v[0]), int(v[1])) for k, v in data["product"].items()},
            query_product={k: (float(v[0]), int(v[1])) for k, v in data["query_product"].items()},
        )
