"""Load a serving bundle: checksums, ONNX sessions, catalog, vocabularies, statistics, users."""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.engines.encoder import TextEncoder
from service.engines.manifest import BundleError, read_current, read_manifest, verify_checksums
from service.engines.onnx import create_session, provider_in_use
from service.engines.ranker import RankerModel
from service.features.attributes import BrandVocabulary, ProductAttributes, category_of
from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES, Vocabularies
from service.features.columns import CatalogColumns
from service.features.interactions import InteractionStats
from service.features.text import is_number_token, tokenize
from service.features.user import UserFeatures, decode_user

logger = logging.getLogger(__name__)

WARMUP_QUERIES = ("cordless drill", "white paint for kitchen walls", "1/2 in. copper pipe fitting")


@dataclass
class Catalog:
    """Catalog products of the bundle: attributes and encoder embeddings, row-aligned."""

    index: dict[str, int]
    attributes: list[ProductAttributes]
    embeddings: np.ndarray  # float32 [products, d]
    product_ids: list[str] = field(default_factory=list)  # row -> product id


@dataclass
class Bundle:
    version: str
    path: Path
    manifest: dict[str, Any]
    encoder: TextEncoder
    ranker: RankerModel
    catalog: Catalog
    columns: CatalogColumns
    brands: BrandVocabulary
    vocabularies: Vocabularies
    stats: InteractionStats
    fusion_weights: dict[str, float]
    served_tasks: tuple[str, ...]
    user_snapshot: dict[str, UserFeatures] = field(repr=False, default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)
    warmed: bool = False


def resolve_version(models_dir: Path, version: str | None) -> str:
    chosen = version or read_current(models_dir)
    if chosen is None:
        raise BundleError(
            f"no bundle to serve: {Path(models_dir) / 'CURRENT'} does not exist. Build one with "
            "`ranker train` and `ranker export`, or run `ranker up`."
        )
    return chosen


def load_bundle(models_dir: Path, version: str | None, device: str, intra_op_threads: int) -> Bundle:
    """Load and check a bundle; raise BundleError with the reason when it cannot serve."""
    started = time.perf_counter()
    version = resolve_version(models_dir, version)
    path = Path(models_dir) / version
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    _check_feature_schema(manifest)

    encoder_session = create_session(path / "encoder.onnx", device, intra_op_threads)
    ranker_session = create_session(path / "ranker.onnx", device, intra_op_threads)
    encoder = TextEncoder(
        encoder_session, path / "tokenizer" / "tokenizer.json", manifest["encoder"]["max_query_tokens"]
    )
    ranker = RankerModel(ranker_session, tuple(manifest["ranker"]["tasks"]))
    vocab = orjson.loads((path / "vocabularies.json").read_bytes())
    vocabularies = Vocabularies(
        brands=vocab["brands"], categories=vocab["categories"], segments=vocab["segments"]
    )
    catalog = _load_catalog(path)
    stats = InteractionStats.from_bytes((path / "interaction_stats.json").read_bytes())
    bundle = Bundle(
        version=version,
        path=path,
        manifest=manifest,
        encoder=encoder,
        ranker=ranker,
        catalog=catalog,
        columns=CatalogColumns.build(catalog.product_ids, catalog.attributes, stats, vocabularies),
        brands=BrandVocabulary(vocab["brands"]),
        vocabularies=vocabularies,
        stats=stats,
        fusion_weights=dict(manifest["fusion"]["weights"]),
        served_tasks=tuple(manifest["ranker"]["served_tasks"]),
        user_snapshot=_load_users(path / "users.jsonl"),
        providers={"encoder": provider_in_use(encoder_session), "ranker": provider_in_use(ranker_session)},
    )
    _check_dimensions(bundle)
    logger.info(
        "bundle %s loaded in %.1fs: %d products, %d users in snapshot, providers %s",
        version,
        time.perf_counter() - started,
        len(bundle.catalog.index),
        len(bundle.user_snapshot),
        bundle.providers,
    )
    return bundle


def _check_feature_schema(manifest: dict[str, Any]) -> None:
    schema = manifest["feature_schema"]
    if (
        tuple(schema["categorical"]) != CATEGORICAL_FEATURES
        or tuple(schema["continuous"]) != CONTINUOUS_FEATURES
    ):
        raise BundleError(
            "bundle feature schema differs from this service's feature definitions; "
            "re-export the bundle with this version, or serve it with the version that built it"
        )


def _check_dimensions(bundle: Bundle) -> None:
    d = bundle.catalog.embeddings.shape[1]
    if bundle.encoder.dimension != d:
        raise BundleError(
            f"encoder output dimension {bundle.encoder.dimension} != product embedding dimension {d}"
        )


def _load_catalog(path: Path) -> Catalog:
    embeddings = np.load(path / "product_embeddings.npy", allow_pickle=False)
    index, attributes, product_ids = {}, [], []
    with open(path / "products.jsonl", "rb") as lines:
        for row, line in enumerate(lines):
            record = orjson.loads(line)
            tokens = tuple(tokenize(record["title"]))
            index[record["product_id"]] = row
            product_ids.append(record["product_id"])
            attributes.append(
                ProductAttributes(
                    brand=record["brand"],
                    category=record["category"] or category_of(tokens),
                    title_tokens=tokens,
                    title_token_count=len(tokens),
                    title_number_count=sum(1 for t in tokens if is_number_token(t)),
                )
            )
    if len(attributes) != embeddings.shape[0]:
        raise BundleError(
            f"products.jsonl has {len(attributes)} rows but product_embeddings.npy has {embeddings.shape[0]}"
        )
    return Catalog(
        index=index,
        attributes=attributes,
        embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
        product_ids=product_ids,
    )


def _load_users(path: Path) -> dict[str, UserFeatures]:
    users = {}
    if not path.is_file():
        return users
    with open(path, "rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            users[str(record.pop("user_id"))] = decode_user(orjson.dumps(record))
    return users
