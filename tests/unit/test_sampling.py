"""Tests of outcome-stratified session sampling."""

import numpy as np
import pandas as pd
import pytest

from training.sampling import SamplingConfig, sample_sessions, session_outcomes

LIST_LENGTH = 3
# Session i has outcome OUTCOME_CYCLE[i % 10]: 60% none, 20% click, 10% add_to_cart, 10% purchase.
OUTCOME_CYCLE = ("none",) * 6 + ("click",) * 2 + ("add_to_cart", "purchase")
FUNNEL = {"none": (0, 0, 0), "click": (1, 0, 0), "add_to_cart": (1, 1, 0), "purchase": (1, 1, 1)}


def _make_log(session_count: int, user_count: int = 31) -> pd.DataFrame:
    """Return a log of LIST_LENGTH rows per request, the outcome on the last row.

    The default user count is coprime with the outcome cycle, so every user has every outcome
    and every (outcome, activity tier) stratum is populated.
    """
    rows = []
    for i in range(session_count):
        click, add_to_cart, purchase = FUNNEL[OUTCOME_CYCLE[i % len(OUTCOME_CYCLE)]]
        for position in range(1, LIST_LENGTH + 1):
            last = position == LIST_LENGTH
            rows.append(
                (
                    f"r{i:06d}",
                    f"u{i % user_count}",
                    position,
                    click * last,
                    add_to_cart * last,
                    purchase * last,
                )
            )
    return pd.DataFrame(
        rows, columns=["request_id", "user_id", "position", "click", "add_to_cart", "purchase"]
    )


def _outcome_of(request_id: str) -> str:
    return OUTCOME_CYCLE[int(request_id[1:]) % len(OUTCOME_CYCLE)]


@pytest.fixture(scope="module")
def small_log() -> pd.DataFrame:
    return _make_log(200)


@pytest.fixture(scope="module")
def large_log() -> pd.DataFrame:
    return _make_log(20_000)


def test_outcome_from_whole_list(small_log):
    outcomes = session_outcomes(small_log)["outcome"]

    expected = [_outcome_of(request_id) for request_id in outcomes.index]

    assert outcomes.tolist() == expected


def test_activity_tiers_cover_range():
    # u0 has 1 session, u1 has 2, u2 has 3: one user per tertile.
    log = pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d", "e", "f"],
            "user_id": ["u0", "u1", "u1", "u2", "u2", "u2"],
            "click": [0] * 6,
            "add_to_cart": [0] * 6,
            "purchase": [0] * 6,
        }
    )

    tiers = session_outcomes(log)["activity_tier"]

    assert tiers.tolist() == [0, 1, 1, 2, 2, 2]


def test_sampled_ids_are_requests(small_log):
    sampled, _ = sample_sessions(small_log, SamplingConfig())

    assert set(sampled) <= set(small_log["request_id"])


def test_click_on_last_row_keeps_list():
    # Only engaged sessions remain, each with its click on the last row only. The outcome
    # must come from the whole list, so none of them counts as unengaged.
    log = _make_log(50)
    log = log[log["request_id"].map(_outcome_of) != "none"]

    sampled, _ = sample_sessions(log, SamplingConfig(keep_unengaged=0.0, purchase_repeats=1))

    assert sorted(sampled) == sorted(log["request_id"].unique())


def test_rows_expand_per_copy(small_log):
    sampled, _ = sample_sessions(small_log, SamplingConfig())

    rows = small_log.merge(pd.DataFrame({"request_id": sampled}), on="request_id")
    rows_per_copy = rows.groupby("request_id").size() / pd.Series(sampled).value_counts()

    assert (rows_per_copy == LIST_LENGTH).all()


def test_unengaged_near_keep_rate(large_log):
    # 12,000 unengaged sessions at 0.35: expected 4,200, standard deviation about 52.
    sampled, _ = sample_sessions(large_log, SamplingConfig(keep_unengaged=0.35, seed=11))

    kept = sum(1 for request_id in sampled if _outcome_of(request_id) == "none")

    assert abs(kept - 4_200) < 300


def test_unengaged_copies_once(small_log):
    sampled, _ = sample_sessions(small_log, SamplingConfig(keep_unengaged=0.5))

    counts = pd.Series(sampled).value_counts()
    unengaged = counts[[_outcome_of(request_id) == "none" for request_id in counts.index]]

    assert (unengaged == 1).all()


def test_purchase_sessions_repeated(small_log):
    sampled, _ = sample_sessions(small_log, SamplingConfig(purchase_repeats=3))

    counts = pd.Series(sampled).value_counts()
    purchases = [r for r in small_log["request_id"].unique() if _outcome_of(r) == "purchase"]

    assert len(purchases) == 20
    assert counts[purchases].tolist() == [3] * 20


def test_engaged_sessions_kept_once(small_log):
    sampled, _ = sample_sessions(small_log, SamplingConfig(purchase_repeats=3))

    counts = pd.Series(sampled).value_counts()
    engaged = [r for r in small_log["request_id"].unique() if _outcome_of(r) in ("click", "add_to_cart")]

    assert counts[engaged].tolist() == [1] * len(engaged)


def test_disabled_returns_each_once(small_log):
    sampled, report = sample_sessions(small_log, SamplingConfig(enabled=False))

    assert sampled == sorted(small_log["request_id"].unique())
    assert report == {"enabled": False, "sessions": 200}


def test_report_totals_consistent(large_log):
    sampled, report = sample_sessions(large_log, SamplingConfig())
    strata = report["strata"].values()

    assert report["sessions_before"] == 20_000
    assert report["sessions_after"] == len(sampled)
    assert sum(stratum["before"] for stratum in strata) == report["sessions_before"]
    assert sum(stratum["after"] for stratum in strata) == report["sessions_after"]


def test_report_stratum_counts(large_log):
    _, report = sample_sessions(large_log, SamplingConfig(purchase_repeats=2))

    purchase_strata = [stratum for name, stratum in report["strata"].items() if name.startswith("purchase/")]
    purchase_before = sum(stratum["before"] for stratum in purchase_strata)
    purchase_after = sum(stratum["after"] for stratum in purchase_strata)

    assert purchase_before == 2_000
    assert purchase_after == 4_000


def test_report_stratum_names(large_log):
    _, report = sample_sessions(large_log, SamplingConfig())

    expected = {f"{outcome}/tier{tier}" for outcome in FUNNEL for tier in range(3)}

    assert set(report["strata"]) == expected


def test_same_seed_same_sample(large_log):
    first, _ = sample_sessions(large_log, SamplingConfig(seed=5))
    second, _ = sample_sessions(large_log, SamplingConfig(seed=5))

    assert first == second


def test_other_seed_other_sample(large_log):
    first, _ = sample_sessions(large_log, SamplingConfig(seed=5))
    second, _ = sample_sessions(large_log, SamplingConfig(seed=6))

    assert first != second


def test_sampled_ids_are_strings():
    log = _make_log(20)
    log["request_id"] = np.arange(len(log)) // LIST_LENGTH

    sampled, _ = sample_sessions(log, SamplingConfig())

    assert all(isinstance(request_id, str) for request_id in sampled)
