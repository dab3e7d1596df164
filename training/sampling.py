"""Session sampling that keeps rare outcomes and every kind of user in the training set.

Sessions (whole result lists, never single impressions) are put in strata by their best outcome
(none < click < add_to_cart < purchase) and by the user's activity tier (tertiles of sessions in
the log). Sessions without any click are kept with probability `keep_unengaged`; sessions that
end in a purchase are repeated `purchase_repeats` times; the rest are kept once. The realised
count per stratum is returned so that a run records what it trained on.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

OUTCOMES = ("none", "click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class SamplingConfig:
    enabled: bool = True
    keep_unengaged: float = 0.35
    purchase_repeats: int = 2
    seed: int = 11


def session_outcomes(log: pd.DataFrame) -> pd.DataFrame:
    """Return one row per request: user_id, outcome, activity_tier."""
    sessions = log.groupby("request_id", sort=True).agg(
        user_id=("user_id", "first"),
        click=("click", "max"),
        add_to_cart=("add_to_cart", "max"),
        purchase=("purchase", "max"),
    )
    level = sessions["click"] + sessions["add_to_cart"] + sessions["purchase"]
    sessions["outcome"] = [OUTCOMES[int(x)] for x in level]
    per_user = sessions.groupby("user_id").size()
    tiers = pd.qcut(per_user.rank(method="first"), q=min(3, len(per_user)), labels=False)
    sessions["activity_tier"] = sessions["user_id"].map(tiers).astype(int)
    return sessions[["user_id", "outcome", "activity_tier"]]


def sample_sessions(log: pd.DataFrame, config: SamplingConfig) -> tuple[list[str], dict]:
    """Return the sampled request ids (repeats allowed) and a report of counts per stratum."""
    sessions = session_outcomes(log)
    if not config.enabled:
        return list(sessions.index), {"enabled": False, "sessions": len(sessions)}

    rng = np.random.default_rng(config.seed)
    keep = np.ones(len(sessions), dtype=np.int64)
    unengaged = (sessions["outcome"] == "none").to_numpy()
    keep[unengaged] = (rng.random(unengaged.sum()) < config.keep_unengaged).astype(np.int64)
    keep[(sessions["outcome"] == "purchase").to_numpy()] = config.purchase_repeats
    sampled = np.repeat(sessions.index.to_numpy(), keep)

    before = sessions.groupby(["outcome", "activity_tier"]).size()
    after = sessions.assign(copies=keep).groupby(["outcome", "activity_tier"])["copies"].sum()
    report = {
        "enabled": True,
        "keep_unengaged": config.keep_unengaged,
        "purchase_repeats": config.purchase_repeats,
        "sessions_before": int(len(sessions)),
        "sessions_after": int(keep.sum()),
        "strata": {
            f"{outcome}/tier{tier}": {
                "before": int(before[(outcome, tier)]),
                "after": int(after[(outcome, tier)]),
            }
            for outcome, tier in before.index
        },
    }
    return [str(r) for r in sampled], report
