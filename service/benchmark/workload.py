"""Requests built from real Home Depot queries and the products of a bundle's catalog."""

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson


@dataclass(frozen=True)
class Workload:
    queries: list[str]  # one entry per judged row, so frequent queries repeat as in the log
    judged: dict[str, list[str]]  # query -> judged product ids
    product_ids: list[str]  # the bundle's catalog
    user_ids: list[str]

    def distinct_queries(self) -> list[str]:
        return sorted(self.judged)

    def body(self, rng: np.random.Generator, query: str, n_candidates: int) -> bytes:
        """Return a /rank body: the query's judged products, filled up with random catalog ones."""
        chosen = list(dict.fromkeys(self.judged.get(query, [])))[:n_candidates]
        seen = set(chosen)
        while len(chosen) < n_candidates:
            product_id = self.product_ids[int(rng.integers(len(self.product_ids)))]
            if product_id not in seen:
                seen.add(product_id)
                chosen.append(product_id)
        # Users drawn with a Zipf-like skew: a few users search often, most rarely.
        user = self.user_ids[min(int(rng.zipf(1.3)) - 1, len(self.user_ids) - 1)]
        return orjson.dumps(
            {"user_id": user, "query": query, "candidates": [{"product_id": p} for p in chosen]}
        )


def load_workload(data_dir: Path, bundle_dir: Path) -> Workload:
    archive = Path(data_dir) / "home-depot" / "train.csv.zip"
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} not found; pass --data-dir (see README.md)")
    queries, judged = [], {}
    with zipfile.ZipFile(archive) as zipped, zipped.open("train.csv") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="latin-1")):
            query = row["search_term"].strip()
            queries.append(query)
            judged.setdefault(query, []).append(f"hd:{row['product_uid']}")

    product_ids = [orjson.loads(line)["product_id"] for line in (bundle_dir / "products.jsonl").open("rb")]
    user_ids = [orjson.loads(line)["user_id"] for line in (bundle_dir / "users.jsonl").open("rb")]
    return Workload(queries, judged, product_ids, user_ids or ["anonymous-user"])
