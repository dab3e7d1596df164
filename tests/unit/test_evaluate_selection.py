"""Tests of the evaluation's winner record for the manifest."""

from training.experiments.cli import COMPARED_METRICS, comparison_of
from training.experiments.grid import fresh_folder


def _entry(value: float) -> dict:
    return {metric: {"mean": value, "low": value - 0.01, "high": value + 0.01} for metric in COMPARED_METRICS}


REPORT = {
    "winner": {"name": "mmoe_tuned_top2"},
    "data": {"queries": 2000, "users": 300},
    "models": {"bm25": {"kind": "floor", "seconds": 0.1, **_entry(0.8)}, "mmoe_tuned_top2": _entry(0.9)},
}


def test_comparison_names_winner():
    assert comparison_of(REPORT)["winner"] == "mmoe_tuned_top2"


def test_comparison_keeps_every_model():
    models = comparison_of(REPORT)["models"]

    assert set(models) == {"bm25", "mmoe_tuned_top2"}
    assert models["bm25"]["test/ndcg@10"] == {"mean": 0.8, "low": 0.8 - 0.01, "high": 0.8 + 0.01}


def test_comparison_records_evaluation_data():
    assert comparison_of(REPORT)["evaluated_on"] == {"queries": 2000, "users": 300}


def test_comparison_drops_other_fields():
    assert set(comparison_of(REPORT)["models"]["bm25"]) == set(COMPARED_METRICS)


def test_fresh_folder_clears_a_previous_run(tmp_path):
    prepared = tmp_path / "home_depot" / "data"
    (prepared / "tokenizer").mkdir(parents=True)
    (prepared / "tokenizer" / "vocab.txt").write_text("stale")

    folder = fresh_folder(prepared)

    assert folder == prepared
    assert folder.is_dir()
    assert list(folder.iterdir()) == []
