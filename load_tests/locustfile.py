"""Locust scenario for POST /rank: real Home Depot queries, candidate lists and a skewed user mix.

Each request sends one query from home-depot/train.csv.zip with 20 to 60 candidates: the
products judged for that query plus random other catalog products, in random order. User ids
u000000 to u001999 are drawn from a Zipf-like distribution, so a few users send most requests.
The Server-Timing header of every response is reported as one Locust event per stage, with
request_type "stage". With --samples FILE, every /rank request is also written to FILE as one JSON
line (start time, latency, status, stage times, degraded reasons) when the test stops; report.py
turns that file into the load-test report. The options added below change these defaults.

See load_tests/README.md for the command line.
"""

import csv
import io
import json
import logging
import random
import time
import zipfile
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPOSITORY_ROOT.parent / "shared" / "data"
HOME_DEPOT_ARCHIVE = Path("home-depot") / "train.csv.zip"
HOME_DEPOT_MEMBER = "train.csv"


@dataclass(frozen=True)
class Workload:
    queries: list[str]
    judged_products: list[list[str]]  # product ids judged for queries[i], without repeats
    catalog: list[str]  # every product id in the file
    titles: dict[str, str]  # product id -> product title
    user_ids: list[str]  # most frequent user first
    user_cumulative_weights: list[float]

    def draw_user(self, rng: random.Random) -> str:
        point = rng.random() * self.user_cumulative_weights[-1]
        return self.user_ids[bisect_left(self.user_cumulative_weights, point)]


# The init listener sets this in every process that runs users. The master process never loads it.
WORKLOAD: Workload | None = None

# Degraded responses by reason (user_not_found, unknown_product, ...), logged when the test stops.
DEGRADED_REASONS: Counter[str] = Counter()

# One dict per /rank request, kept only with --samples and written when the test stops.
SAMPLES: list[dict] = []


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument(
        "--data-dir",
        env_var="RANKER_DATA_DIR",
        default=str(DEFAULT_DATA_DIR),
        include_in_web_ui=False,
        help="folder with home-depot/train.csv.zip "
        "(default: $RANKER_DATA_DIR, else ../shared/data beside the repository)",
    )
    parser.add_argument(
        "--user-pool",
        type=int,
        default=2000,
        include_in_web_ui=False,
        help="number of user ids, from u000000 upwards (default: %(default)s, "
        "the number of users that `ranker train` simulates)",
    )
    parser.add_argument(
        "--zipf-exponent",
        type=float,
        default=1.1,
        include_in_web_ui=False,
        help="exponent s of the user weights 1/k**s, where k is the user's popularity rank; "
        "0 draws users uniformly (default: %(default)s)",
    )
    parser.add_argument(
        "--min-candidates",
        type=int,
        default=20,
        include_in_web_ui=False,
        help="minimum candidates per request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=60,
        include_in_web_ui=False,
        help="maximum candidates per request (default: %(default)s)",
    )
    parser.add_argument(
        "--samples",
        default="",
        include_in_web_ui=False,
        help="write every /rank request to this JSON-lines file when the test stops, for "
        "load_tests/report.py (default: off; not supported with --processes)",
    )
    parser.add_argument(
        "--send-titles",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="send each candidate's title, so the service embeds products that its bundle "
        "does not contain (one extra encoder call per request that has any)",
    )


@events.init.add_listener
def load_workload(environment: Environment, **_kwargs) -> None:
    """Validate the options and read the data set before any user starts."""
    global WORKLOAD
    if isinstance(environment.runner, MasterRunner):
        return
    options = environment.parsed_options
    if options is None:  # Locust used as a library, without its command line.
        return
    check_options(options)
    WORKLOAD = read_workload(Path(options.data_dir), options.user_pool, options.zipf_exponent)
    logger.info(
        "workload: %d queries, %d catalog products, %d users (Zipf exponent %.2f), "
        "%d to %d candidates per request",
        len(WORKLOAD.queries),
        len(WORKLOAD.catalog),
        len(WORKLOAD.user_ids),
        options.zipf_exponent,
        options.min_candidates,
        options.max_candidates,
    )


def check_options(options) -> None:
    if options.user_pool < 1:
        raise ValueError(f"invalid --user-pool {options.user_pool}: pass 1 or more")
    if options.zipf_exponent < 0:
        raise ValueError(f"invalid --zipf-exponent {options.zipf_exponent}: pass 0 or more")
    if not 1 <= options.min_candidates <= options.max_candidates:
        raise ValueError(
            f"invalid --min-candidates {options.min_candidates} and --max-candidates "
            f"{options.max_candidates}: they need 1 <= min <= max"
        )


def read_workload(data_dir: Path, user_pool: int, zipf_exponent: float) -> Workload:
    archive_path = data_dir / HOME_DEPOT_ARCHIVE
    if not archive_path.is_file():
        raise FileNotFoundError(
            f"{archive_path} not found. Pass --data-dir or set RANKER_DATA_DIR to the folder "
            f"that contains {HOME_DEPOT_ARCHIVE}"
        )

    # Dicts as ordered sets: they keep first-seen order and drop repeats.
    products_by_query: dict[str, dict[str, None]] = {}
    titles: dict[str, str] = {}
    with zipfile.ZipFile(archive_path) as archive, archive.open(HOME_DEPOT_MEMBER) as raw:
        # The file is latin-1: UTF-8 decoding fails on its product titles.
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="latin-1", newline="")):
            product_id = f"hd:{row['product_uid']}"
            titles.setdefault(product_id, row["product_title"])
            query = row["search_term"].strip()
            if query:
                products_by_query.setdefault(query, {})[product_id] = None
    if not products_by_query:
        raise ValueError(f"{archive_path} contains no rows with a search_term")

    user_ids = [f"u{index:06d}" for index in range(user_pool)]
    weights = [1.0 / rank**zipf_exponent for rank in range(1, user_pool + 1)]
    return Workload(
        queries=list(products_by_query),
        judged_products=[list(products) for products in products_by_query.values()],
        catalog=list(titles),
        titles=titles,
        user_ids=user_ids,
        user_cumulative_weights=list(accumulate(weights)),
    )


def build_candidates(workload: Workload, query_index: int, count: int, rng: random.Random) -> list[str]:
    """Return `count` distinct product ids in random order: the query's judged products, topped up
    with random catalog products."""
    judged = workload.judged_products[query_index]
    if len(judged) >= count:
        chosen = rng.sample(judged, count)
    else:
        chosen = list(judged)
        seen = set(chosen)
        # The catalog has tens of thousands of products, so this loop ends after a few extra draws.
        while len(chosen) < min(count, len(workload.catalog)):
            product_id = rng.choice(workload.catalog)
            if product_id not in seen:
                seen.add(product_id)
                chosen.append(product_id)
    rng.shuffle(chosen)
    return chosen


def parse_server_timing(header: str) -> dict[str, float]:
    """Return {stage: milliseconds} from a Server-Timing value.

    An example value: "score;dur=1.250, order;dur=0.010".
    """
    stages: dict[str, float] = {}
    for entry in header.split(","):
        name, *parameters = (part.strip() for part in entry.split(";"))
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if name and key.strip() == "dur":
                try:
                    stages[name] = float(value.strip().strip('"'))
                except ValueError:
                    logger.warning("ignored Server-Timing entry %r: dur is not a number", entry)
    return stages


@events.test_stop.add_listener
def log_degraded(**_kwargs) -> None:
    if DEGRADED_REASONS:
        summary = ", ".join(f"{reason}={count}" for reason, count in DEGRADED_REASONS.most_common())
        logger.info("degraded responses by reason: %s", summary)


@events.test_stop.add_listener
def write_samples(environment: Environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None or not options.samples:
        return
    if isinstance(environment.runner, MasterRunner | WorkerRunner):
        logger.error("--samples works only in a single process; run without --processes")
        return
    path = Path(options.samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as output:
        for sample in SAMPLES:
            output.write(json.dumps(sample, separators=(",", ":")) + "\n")
    logger.info("wrote %d request samples to %s", len(SAMPLES), path)


class RankUser(FastHttpUser):
    # No think time: each simulated user sends its next request as soon as the last one returns,
    # so -u sets the number of requests in flight.
    wait_time = constant(0)

    def on_start(self) -> None:
        if WORKLOAD is None:
            raise RuntimeError(
                "no workload loaded: run this file with the locust command, whose init event loads it"
            )
        self.workload = WORKLOAD
        self.rng = random.Random()

    @task
    def rank(self) -> None:
        options = self.environment.parsed_options
        query_index = self.rng.randrange(len(self.workload.queries))
        count = self.rng.randint(options.min_candidates, options.max_candidates)
        product_ids = build_candidates(self.workload, query_index, count, self.rng)
        if options.send_titles:
            titles = self.workload.titles
            candidates = [{"product_id": pid, "title": titles[pid]} for pid in product_ids]
        else:
            candidates = [{"product_id": pid} for pid in product_ids]
        body = {
            "user_id": self.workload.draw_user(self.rng),
            "query": self.workload.queries[query_index],
            "candidates": candidates,
        }

        started = time.time()
        clock = time.perf_counter()
        with self.client.post("/rank", json=body, name="/rank", catch_response=True) as response:
            latency_ms = (time.perf_counter() - clock) * 1000
            problem = check_response(response, len(candidates))
            payload = response.json() if problem is None else {}
            stages = parse_server_timing(response.headers.get("Server-Timing") or "")
            if options.samples:
                SAMPLES.append(
                    {
                        "start": round(started, 4),
                        "latency_ms": round(latency_ms, 3),
                        "status": response.status_code,
                        "error": problem,
                        "candidates": len(candidates),
                        "stages_ms": stages,
                        "degraded_reasons": payload.get("degraded_reasons", []),
                    }
                )
            if problem is not None:
                response.failure(problem)
                return
            DEGRADED_REASONS.update(payload.get("degraded_reasons", []))
            response.success()

        for stage, milliseconds in stages.items():
            self.environment.events.request.fire(
                request_type="stage",
                name=stage,
                response_time=milliseconds,
                response_length=0,
                exception=None,
                context={},
            )


def check_response(response, sent: int) -> str | None:
    """Return why a /rank response counts as failed, or None when it is a complete ranking."""
    if response.status_code != 200:
        return f"status {response.status_code}: {(response.text or '')[:300]}"
    returned = len(response.json().get("items", []))
    if returned != sent:
        return f"sent {sent} candidates, got {returned} items back"
    if not response.headers.get("Server-Timing"):
        return "response has no Server-Timing header"
    return None
