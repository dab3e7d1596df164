"""User features and interaction statistics aggregated from the "history" part of a log.

Only history sessions feed these aggregates, so no training example has a feature computed from
its own click.
"""

import pandas as pd

from service.features.attributes import ProductAttributes
from service.features.interactions import InteractionStats
from service.features.user import UserFeatures

# Pseudo-clicks of the population share added to each user's counts before taking shares.
AFFINITY_PRIOR_CLICKS = 2.0
TOP_BRANDS_PER_USER = 20


def interaction_stats(history: pd.DataFrame, eta: float) -> InteractionStats:
    impressions = zip(
        history["normalized_query"],
        history["product_id"],
        history["position"],
        history["click"],
        strict=True,
    )
    return InteractionStats.from_impressions(impressions, eta=eta)


def user_features(
    history: pd.DataFrame, attributes: dict[str, ProductAttributes], segments: dict[str, str]
) -> dict[str, UserFeatures]:
    """Aggregate per-user rates and click shares by category and brand."""
    log = history.assign(
        category=history["product_id"].map(lambda p: attributes[p].category),
        brand=history["product_id"].map(lambda p: attributes[p].brand),
    )
    clicks = log[log["click"] == 1]
    population_category = clicks["category"].value_counts(normalize=True).to_dict()
    population_brand = clicks["brand"].value_counts(normalize=True).to_dict()

    clicks_by_user = {user_id: rows for user_id, rows in clicks.groupby("user_id", sort=False)}
    no_clicks = clicks.iloc[:0]
    features = {}
    for user_id, rows in log.groupby("user_id", sort=True):
        user_clicks = clicks_by_user.get(user_id, no_clicks)
        features[str(user_id)] = UserFeatures(
            segment=segments.get(str(user_id), "anonymous"),
            sessions=float(rows["request_id"].nunique()),
            click_rate=float(rows["click"].mean()),
            add_to_cart_rate=float(rows["add_to_cart"].mean()),
            purchase_rate=float(rows["purchase"].mean()),
            category_affinity=_shares(user_clicks["category"], population_category, None),
            brand_affinity=_shares(user_clicks["brand"], population_brand, TOP_BRANDS_PER_USER),
            known=True,
        )
    return features


def _shares(values: pd.Series, population: dict[str, float], top: int | None) -> dict[str, float]:
    """Return the smoothed share of each value: (count + prior * population) / (n + prior)."""
    counts = values.value_counts()
    n = float(counts.sum())
    shares = {
        str(key): (float(count) + AFFINITY_PRIOR_CLICKS * population.get(key, 0.0))
        / (n + AFFINITY_PRIOR_CLICKS)
        for key, count in counts.items()
    }
    if top is not None:
        shares = dict(sorted(shares.items(), key=lambda item: -item[1])[:top])
    return {key: round(value, 5) for key, value in shares.items()}
