"""Tests of the relevance-set adapters, against the real files and small hand-made ones."""

import os
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from training.data.adapters import (
    COLUMNS,
    CROWDFLOWER_FILE,
    HOME_DEPOT_ARCHIVE,
    DataNotFoundError,
    Judgements,
    load_crowdflower,
    load_home_depot,
    load_source,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / os.environ.get("RANKER_DATA_DIR", "../shared/data")

HOME_DEPOT_HEADER = "id,product_uid,product_title,search_term,relevance\n"


def _require_file(relative: Path) -> None:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(
            f"{path} not found; set RANKER_DATA_DIR to the folder that contains "
            "home-depot/train.csv.zip and crowdflower/train.csv"
        )


@pytest.fixture(scope="module")
def home_depot() -> Judgements:
    _require_file(HOME_DEPOT_ARCHIVE)
    return load_home_depot(DATA_DIR)


@pytest.fixture(scope="module")
def crowdflower() -> Judgements:
    _require_file(CROWDFLOWER_FILE)
    return load_crowdflower(DATA_DIR)


def _relevance_of(judgements: Judgements, query: str, title: str) -> pd.Series:
    frame = judgements.frame
    return frame.loc[(frame["query"] == query) & (frame["title"] == title), "relevance"]


def _write_home_depot_zip(data_dir: Path, rows: str) -> None:
    """Write a Home Depot style archive whose CSV is encoded in latin-1."""
    archive = data_dir / HOME_DEPOT_ARCHIVE
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("train.csv", (HOME_DEPOT_HEADER + rows).encode("latin-1"))


# Home Depot, real file


def test_home_depot_row_count(home_depot):
    # The file has 63,033 rows and no repeated (query, product) pair.
    assert len(home_depot.frame) == 63_033


def test_home_depot_query_count(home_depot):
    assert len(home_depot.queries) == 10_033


def test_home_depot_columns(home_depot):
    assert list(home_depot.frame.columns) == COLUMNS


def test_home_depot_latin1_title(home_depot):
    frame = home_depot.frame
    titles = frame.loc[frame["product_id"] == "hd:142903", "title"].unique().tolist()

    assert titles == ["Halex 1-1/2 in. Rigid 90\u00e8_ Steel Conduit Elbow"]


def test_home_depot_relevance_endpoints(home_depot):
    relevance = home_depot.frame["relevance"]

    assert relevance.min() == 0.0
    assert relevance.max() == 1.0


def test_home_depot_grade_two_maps_half(home_depot):
    # Raw grade 2.0 on the 1..3 scale.
    relevance = _relevance_of(
        home_depot, "1 1/2 rigid threadless", "Halex 1-1/2 in. Rigid 90\u00e8_ Steel Conduit Elbow"
    )

    assert relevance.tolist() == [0.5]


def test_home_depot_ids_prefixed(home_depot):
    product_ids = home_depot.frame["product_id"]

    assert product_ids.str.fullmatch(r"hd:\d+").all()


def test_home_depot_source_column(home_depot):
    assert set(home_depot.frame["source"]) == {"home_depot"}


def test_home_depot_products_unique(home_depot):
    products = home_depot.products()

    assert list(products.columns) == ["product_id", "title"]
    assert products["product_id"].is_unique


# CrowdFlower, real file


def test_crowdflower_query_count(crowdflower):
    assert len(crowdflower.queries) == 218


def test_crowdflower_pair_count(crowdflower):
    # The 8,535 rows contain 8,248 distinct (query, title) pairs. A misparsed multi-line
    # description would shift rows and change this count.
    assert len(crowdflower.frame) == 8_248


def test_crowdflower_queries_single_line(crowdflower):
    assert not any("\n" in query for query in crowdflower.queries)


def test_crowdflower_row_after_multiline_description(crowdflower):
    # Row id 8 has a description of 13 lines and the grade 3 on 1..4.
    relevance = _relevance_of(
        crowdflower,
        "oakley polarized radar",
        "Oakley Sunglasses - Radar Path Polished Black/Gray Sunglasses",
    )

    assert relevance.tolist() == [pytest.approx(2 / 3)]


def test_crowdflower_relevance_endpoints(crowdflower):
    relevance = crowdflower.frame["relevance"]

    assert relevance.min() == 0.0
    assert relevance.max() == 1.0


def test_crowdflower_repeated_pair_averaged(crowdflower):
    # Rows 7900 and 25035 judge this pair 3 and 4: (2/3 + 1) / 2.
    relevance = _relevance_of(crowdflower, "aqua shoes", "Stride Rite Toddler Girls' M2P Baby Aqua Sneakers")

    assert relevance.tolist() == [pytest.approx(5 / 6)]


def test_crowdflower_ids_hash_titles(crowdflower):
    product_ids = crowdflower.frame["product_id"]

    assert product_ids.str.fullmatch(r"cf:[0-9a-f]{12}").all()


def test_crowdflower_id_of_known_title(crowdflower):
    frame = crowdflower.frame
    ids = frame.loc[frame["title"] == "An Extremely Goofy Movie (VHS, 2000)", "product_id"].unique()

    # First 12 hex digits of the SHA-1 of the title's UTF-8 bytes.
    assert ids.tolist() == ["cf:bb047ffe0655"]


def test_load_source_crowdflower(crowdflower):
    judgements = load_source("crowdflower", DATA_DIR)

    assert judgements.frame.equals(crowdflower.frame)


# Hand-made files


def test_latin1_archive_decodes(tmp_path):
    _write_home_depot_zip(tmp_path, "1,100,Caf\u00e9 Faucet,faucet,3\n")

    judgements = load_home_depot(tmp_path)

    assert judgements.frame["title"].tolist() == ["Caf\u00e9 Faucet"]


def test_repeated_pair_averaged(tmp_path):
    # The second query differs only by surrounding spaces, which the adapter strips.
    _write_home_depot_zip(tmp_path, "1,100,Drill,drill,3\n2,100,Drill, drill ,2\n")

    frame = load_home_depot(tmp_path).frame

    assert frame["query"].tolist() == ["drill"]
    assert frame["relevance"].tolist() == [0.75]


def test_relevance_scale_endpoints(tmp_path):
    _write_home_depot_zip(tmp_path, "1,100,Drill,drill,1\n2,101,Saw,drill,3\n3,102,Bit,drill,2.5\n")

    frame = load_home_depot(tmp_path).frame

    assert frame["product_id"].tolist() == ["hd:100", "hd:101", "hd:102"]
    assert frame["relevance"].tolist() == [0.0, 1.0, 0.75]


def test_empty_title_dropped(tmp_path):
    _write_home_depot_zip(tmp_path, "1,100,Drill,drill,3\n2,101,,drill,2\n")

    frame = load_home_depot(tmp_path).frame

    assert frame["product_id"].tolist() == ["hd:100"]


def test_missing_home_depot_message(tmp_path):
    expected_path = str(tmp_path / HOME_DEPOT_ARCHIVE)

    with pytest.raises(DataNotFoundError) as raised:
        load_home_depot(tmp_path)

    assert expected_path in str(raised.value)
    assert "--data-dir" in str(raised.value)


def test_missing_crowdflower_message(tmp_path):
    expected_path = str(tmp_path / CROWDFLOWER_FILE)

    with pytest.raises(DataNotFoundError) as raised:
        load_crowdflower(tmp_path)

    assert expected_path in str(raised.value)
    assert "--data-dir" in str(raised.value)


def test_data_not_found_is_file_error():
    assert issubclass(DataNotFoundError, FileNotFoundError)


def test_load_source_unknown_name(tmp_path):
    with pytest.raises(ValueError, match=re.escape("'amazon'")):
        load_source("amazon", tmp_path)


def test_load_source_dispatches_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="Home Depot"):
        load_source("home_depot", tmp_path)


def test_crowdflower_empty_title_dropped(tmp_path):
    folder = tmp_path / "crowdflower"
    folder.mkdir()
    (folder / "train.csv").write_text(
        "id,query,product_title,product_description,median_relevance,relevance_variance\n"
        "1,drill,,,4,0\n"
        "2,drill,Cordless Drill,,3,0\n"
    )

    frame = load_crowdflower(tmp_path).frame

    assert frame["title"].tolist() == ["Cordless Drill"]
