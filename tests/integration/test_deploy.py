"""Bundle checks and swaps in process: real bundles, real ONNX sessions, tampered copies."""

import asyncio
import gc
import json
import weakref

import pytest

from service.deploy.checks import check_bundle
from service.deploy.golden import GOLDEN_FILE
from service.deploy.manager import BundleManager
from service.engines.manifest import BundleError, read_current, read_previous, write_current
from service.metrics import Metrics
from tests.integration.bundle_copies import (
    flip_byte,
    link_bundle,
    read_manifest,
    replace_file,
    truncate,
    write_manifest,
)


@pytest.fixture()
def models(tmp_path, bundle_dir, int8_bundle_dir):
    """A models folder with two good bundles, `good-a` (fp32, CURRENT) and `good-b` (int8)."""
    link_bundle(bundle_dir, tmp_path, "good-a")
    link_bundle(int8_bundle_dir, tmp_path, "good-b")
    write_current(tmp_path, "good-a")
    return tmp_path


def reloads(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("ranker_bundle_reloads_total", {"result": result}) or 0.0


def test_manifest_records_golden_requests(bundle_dir):
    manifest = read_manifest(bundle_dir)

    assert manifest["golden"]["requests"] >= 6
    assert GOLDEN_FILE in manifest["files"]


def test_good_bundles_pass_every_check(models):
    for version in ("good-a", "good-b"):
        bundle = check_bundle(models, version, "cpu", 1)
        assert bundle.warmed


def checksum_mismatch(bundle):
    flip_byte(bundle / "product_embeddings.npy")


def truncated_graph(bundle):
    truncate(bundle / "ranker.onnx")
    write_manifest(bundle, read_manifest(bundle), rehash=("ranker.onnx",))


def missing_file(bundle):
    (bundle / "encoder.onnx").unlink()


def newer_manifest_schema(bundle):
    manifest = read_manifest(bundle)
    manifest["schema_version"] = 2
    write_manifest(bundle, manifest)


def other_feature_schema(bundle):
    manifest = read_manifest(bundle)
    manifest["feature_schema"]["continuous"][0] = "a_feature_this_service_lacks"
    write_manifest(bundle, manifest)


def graph_inputs_differ_from_manifest(bundle):
    manifest = read_manifest(bundle)
    manifest["ranker"]["inputs"][1]["dtype"] = "tensor(double)"
    write_manifest(bundle, manifest)


def golden_scores_differ(bundle):
    golden = json.loads((bundle / GOLDEN_FILE).read_text())
    golden["requests"][0]["probabilities"][0][0] += 0.01
    replace_file(bundle / GOLDEN_FILE, json.dumps(golden).encode())
    write_manifest(bundle, read_manifest(bundle), rehash=(GOLDEN_FILE,))


def no_golden_requests(bundle):
    manifest = read_manifest(bundle)
    del manifest["golden"]
    write_manifest(bundle, manifest)


def empty_golden_requests(bundle):
    replace_file(bundle / GOLDEN_FILE, b'{"requests": []}')
    write_manifest(bundle, read_manifest(bundle), rehash=(GOLDEN_FILE,))


def fusion_weights_edited(bundle):
    manifest = read_manifest(bundle)
    manifest["fusion"]["weights"] = {task: -w for task, w in manifest["fusion"]["weights"].items()}
    write_manifest(bundle, manifest)


def other_ranker_with_loose_tolerance(bundle, int8_bundle_dir):
    replace_file(bundle / "ranker.onnx", (int8_bundle_dir / "ranker.onnx").read_bytes())
    manifest = read_manifest(bundle)
    manifest["golden"]["tolerance"] = 1.0
    manifest["ranker"] = read_manifest(int8_bundle_dir)["ranker"]
    write_manifest(bundle, manifest, rehash=("ranker.onnx",))


def no_checksum_table(bundle):
    manifest = read_manifest(bundle)
    del manifest["files"]
    write_manifest(bundle, manifest)


def required_file_unlisted(bundle):
    manifest = read_manifest(bundle)
    del manifest["files"]["interaction_stats.json"]
    write_manifest(bundle, manifest)


def invalid_golden_json(bundle):
    replace_file(bundle / GOLDEN_FILE, b"garbage")
    write_manifest(bundle, read_manifest(bundle), rehash=(GOLDEN_FILE,))


def golden_tolerance_not_a_number(bundle):
    manifest = read_manifest(bundle)
    manifest["golden"]["tolerance"] = "abc"
    write_manifest(bundle, manifest)


def encoder_outputs_missing(bundle):
    manifest = read_manifest(bundle)
    del manifest["encoder"]["outputs"]
    write_manifest(bundle, manifest)


def folder_renamed(bundle):
    manifest = read_manifest(bundle)
    manifest["version"] = "20990101-000000-000000"
    write_manifest(bundle, manifest)


BROKEN = {
    checksum_mismatch: "product_embeddings.npy: sha256 mismatch",
    truncated_graph: "is invalid: InvalidProtobuf",
    missing_file: "encoder.onnx: missing",
    newer_manifest_schema: "schema_version=2",
    other_feature_schema: "feature schema differs",
    graph_inputs_differ_from_manifest: "ranker inputs are",
    golden_scores_differ: "does not reproduce its golden requests",
    no_golden_requests: "no golden requests",
    empty_golden_requests: "empty golden.json",
    fusion_weights_edited: "in a fused score",
    no_checksum_table: "no 'files' table",
    required_file_unlisted: "interaction_stats.json: not listed",
    invalid_golden_json: "is invalid: JSONDecodeError",
    golden_tolerance_not_a_number: "is invalid: ValueError",
    encoder_outputs_missing: "is invalid: KeyError",
    folder_renamed: "contains the manifest of version",
}


def assert_rejected_while_old_serves(models, match):
    metrics = Metrics()
    manager = BundleManager(models, metrics, "cpu", 1)

    async def scenario():
        await manager.start(None)
        with pytest.raises(BundleError, match=match):
            await manager.deploy("broken", source="test")

    asyncio.run(scenario())

    assert manager.current.version == "good-a"
    assert reloads(metrics, "rejected") == 1
    assert manager.last_rejection.version == "broken"
    assert read_current(models) == "good-a"  # the pointer is left alone


def test_other_ranker_rejected_despite_loose_tolerance(models, bundle_dir, int8_bundle_dir):
    other_ranker_with_loose_tolerance(link_bundle(bundle_dir, models, "broken"), int8_bundle_dir)

    assert_rejected_while_old_serves(models, "does not reproduce its golden requests")


def test_symlinked_bundle_rejected(models, bundle_dir, tmp_path_factory):
    outside = link_bundle(bundle_dir, tmp_path_factory.mktemp("elsewhere"), "broken")
    (models / "broken").symlink_to(outside, target_is_directory=True)

    assert_rejected_while_old_serves(models, "symbolic link or outside")


@pytest.mark.parametrize("damage", BROKEN, ids=lambda f: f.__name__)
def test_broken_bundle_rejected(models, bundle_dir, damage):
    damage(link_bundle(bundle_dir, models, "broken"))

    assert_rejected_while_old_serves(models, BROKEN[damage])


def test_swap_keeps_leased_bundle_until_request_ends(models):
    manager = BundleManager(models, Metrics(), "cpu", 1)

    async def scenario():
        await manager.start(None)
        with manager.lease() as held:
            await manager.deploy("good-b", source="test")
            # A request that started before the swap keeps its bundle to the end.
            assert held.version == "good-a"
            assert [b["version"] for b in manager.loaded_versions()] == ["good-b", "good-a"]
            with manager.lease() as fresh:
                assert fresh.version == "good-b"
            return weakref.ref(held)

    old = asyncio.run(scenario())
    gc.collect()

    assert manager.loaded_versions() == [{"version": "good-b", "in_flight": 0}]
    assert old() is None  # its ONNX sessions are gone
    assert (read_current(models), read_previous(models)) == ("good-b", "good-a")


def test_rollback_serves_previous_bundle(models):
    manager = BundleManager(models, Metrics(), "cpu", 1)

    async def scenario():
        await manager.start(None)
        await manager.deploy("good-b", source="test")
        await manager.rollback()

    asyncio.run(scenario())

    assert manager.current.version == "good-a"
    assert (read_current(models), read_previous(models)) == ("good-a", "good-b")


def test_rollback_without_previous_rejected(models):
    manager = BundleManager(models, Metrics(), "cpu", 1)

    async def scenario():
        await manager.start(None)
        with pytest.raises(BundleError, match="no previous bundle"):
            await manager.rollback()

    asyncio.run(scenario())


def test_start_falls_back_to_previous(models, bundle_dir):
    truncated_graph(link_bundle(bundle_dir, models, "broken"))
    write_current(models, "broken", previous="good-a")

    manager = BundleManager(models, Metrics(), "cpu", 1)
    asyncio.run(manager.start(None))

    assert manager.current.version == "good-a"


def test_watcher_skips_rejected_version(models, bundle_dir):
    checksum_mismatch(link_bundle(bundle_dir, models, "broken"))
    metrics = Metrics()
    manager = BundleManager(models, metrics, "cpu", 1)

    async def scenario():
        await manager.start(None)
        watcher = asyncio.create_task(manager.watch_pointer(0.05))
        write_current(models, "broken")
        await asyncio.sleep(1.0)
        assert manager.current.version == "good-a"
        write_current(models, "good-b")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if manager.current.version == "good-b":
                break
        watcher.cancel()

    asyncio.run(scenario())

    assert manager.current.version == "good-b"
    assert reloads(metrics, "rejected") == 1  # rejected once, not once per poll
    assert reloads(metrics, "success") == 2  # start-up and good-b


@pytest.mark.parametrize("version", ["../good-a", ".staging-x", "a/b", ""])
def test_path_like_versions_rejected(models, version):
    manager = BundleManager(models, Metrics(), "cpu", 1)

    async def scenario():
        await manager.start(None)
        with pytest.raises(BundleError, match="not a bundle version"):
            await manager.deploy(version, source="test")

    asyncio.run(scenario())


@pytest.mark.parametrize("contents", [b"\xff\xfe", b"", b"../good-b\n", b"no-such-bundle\n"])
def test_watcher_survives_bad_pointer_contents(models, contents):
    metrics = Metrics()
    manager = BundleManager(models, metrics, "cpu", 1)

    async def scenario():
        await manager.start(None)
        watcher = asyncio.create_task(manager.watch_pointer(0.05))
        (models / "CURRENT").write_bytes(contents)
        await asyncio.sleep(0.5)
        write_current(models, "good-b")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if manager.current.version == "good-b":
                break
        watcher.cancel()

    asyncio.run(scenario())

    assert manager.current.version == "good-b"
    assert reloads(metrics, "rejected") == 1


def test_pinned_service_rejects_admin_deploys(models):
    manager = BundleManager(models, Metrics(), "cpu", 1)

    async def scenario():
        await manager.start("good-a")
        with pytest.raises(BundleError, match="pinned"):
            await manager.deploy("good-b", source="admin endpoint")
        with pytest.raises(BundleError, match="pinned"):
            await manager.rollback()

    write_current(models, "good-a", previous="good-b")
    asyncio.run(scenario())

    assert manager.current.version == "good-a"
    assert read_current(models) == "good-a"


def test_start_falls_back_when_current_unreadable(models):
    write_current(models, "good-a", previous="good-b")
    (models / "CURRENT").write_bytes(b"\xff")

    manager = BundleManager(models, Metrics(), "cpu", 1)
    asyncio.run(manager.start(None))

    assert manager.current.version == "good-b"
