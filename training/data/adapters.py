"""Adapters from the public relevance sets into one schema of graded judgements.

Schema (`Judgements.frame`, one row per judged (query, product) pair):

    query       str    the customer's search text, as typed
    product_id  str    prefixed by the source ("hd:100001", "cf:<title hash>")
    title       str
    relevance   float  the human grade rescaled to [0, 1] (0 irrelevant, 1 exact match)
    source      str    "home_depot" or "crowdflower"
"""

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

HOME_DEPOT_ARCHIVE = Path("home-depot") / "train.csv.zip"
CROWDFLOWER_FILE = Path("crowdflower") / "train.csv"
COLUMNS = ["query", "product_id", "title", "relevance", "source"]


class DataNotFoundError(FileNotFoundError):
    """A relevance file is missing under the configured data directory."""


@dataclass(frozen=True)
class Judgements:
    frame: pd.DataFrame

    @property
    def queries(self) -> list[str]:
        return sorted(self.frame["query"].unique())

    def products(self) -> pd.DataFrame:
        """Return one row per product: product_id, title."""
        return self.frame.drop_duplicates("product_id")[["product_id", "title"]].reset_index(drop=True)


def _require(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DataNotFoundError(
            f"{name} not found at {path}. Download it from Kaggle ({name} competition, train file) "
            "and point --data-dir (or RANKER_DATA_DIR) at the folder that holds it; see README.md."
        )
    return path


def load_home_depot(data_dir: Path) -> Judgements:
    """Read Home Depot Product Search Relevance: latin-1 CSV inside a zip, grades 1 to 3."""
    archive = _require(Path(data_dir) / HOME_DEPOT_ARCHIVE, "Home Depot Product Search Relevance")
    with zipfile.ZipFile(archive) as zipped, zipped.open("train.csv") as raw:
        frame = pd.read_csv(raw, encoding="latin-1")
    frame = pd.DataFrame(
        {
            "query": frame["search_term"].fillna("").astype(str).str.strip(),
            "product_id": "hd:" + frame["product_uid"].astype(str),
            "title": frame["product_title"].fillna("").astype(str),
            "relevance": ((frame["relevance"].astype(float) - 1.0) / 2.0).clip(0.0, 1.0),
            "source": "home_depot",
        }
    )
    return Judgements(_clean(frame))


def load_crowdflower(data_dir: Path) -> Judgements:
    """Read CrowdFlower Search Results Relevance: UTF-8 CSV, median grades 1 to 4.

    The set has no product ids; a product is identified by a hash of its title.
    """
    path = _require(Path(data_dir) / CROWDFLOWER_FILE, "CrowdFlower Search Results Relevance")
    frame = pd.read_csv(path, encoding="utf-8")
    titles = frame["product_title"].fillna("").astype(str)
    frame = pd.DataFrame(
        {
            "query": frame["query"].fillna("").astype(str).str.strip(),
            "product_id": "cf:" + titles.map(lambda t: hashlib.sha1(t.encode()).hexdigest()[:12]),
            "title": titles,
            "relevance": ((frame["median_relevance"].astype(float) - 1.0) / 3.0).clip(0.0, 1.0),
            "source": "crowdflower",
        }
    )
    return Judgements(_clean(frame))


def load_source(name: str, data_dir: Path) -> Judgements:
    loaders = {"home_depot": load_home_depot, "crowdflower": load_crowdflower}
    if name not in loaders:
        raise ValueError(f"unknown data source {name!r}; expected one of {sorted(loaders)}")
    return loaders[name](data_dir)


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop empty queries and titles, and average repeated judgements of the same pair."""
    frame = frame[(frame["query"] != "") & (frame["title"].str.strip() != "")]
    grouped = frame.groupby(["query", "product_id"], as_index=False, sort=True).agg(
        title=("title", "first"), relevance=("relevance", "mean"), source=("source", "first")
    )
    return grouped[COLUMNS].reset_index(drop=True)
