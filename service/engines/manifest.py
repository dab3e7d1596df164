"""The bundle manifest and the pointer to the current bundle; shared by export and serving.

A bundle is one folder `exported_models/<version>/`; `exported_models/CURRENT` contains the
version being served and `exported_models/PREVIOUS` the one served before it, for rollback.
Bundles and pointers are written to a temporary name and renamed, so a reader never sees a
half-written bundle or pointer.
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
CURRENT_POINTER = "CURRENT"
PREVIOUS_POINTER = "PREVIOUS"
# Files every bundle needs, so a manifest cannot skip a checksum by leaving a file out.
REQUIRED_FILES = (
    "encoder.onnx",
    "ranker.onnx",
    "tokenizer/tokenizer.json",
    "product_embeddings.npy",
    "products.jsonl",
    "vocabularies.json",
    "interaction_stats.json",
)
# Version names are folder names under the models folder: no separators, no leading dot.
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, or does not match its manifest."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_version_name(version: str) -> str:
    """Return `version` if it can name a bundle folder, else raise BundleError."""
    if not _VERSION_NAME.fullmatch(version):
        raise BundleError(
            f"{version!r} is not a bundle version: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return version


def read_current(models_dir: Path) -> str | None:
    return _read_pointer(Path(models_dir) / CURRENT_POINTER)


def read_previous(models_dir: Path) -> str | None:
    return _read_pointer(Path(models_dir) / PREVIOUS_POINTER)


def _read_pointer(pointer: Path) -> str | None:
    """Return the version a pointer file names, None when the file does not exist.

    Raise BundleError when the file exists but does not contain a valid version name.
    """
    if not pointer.is_file():
        return None
    try:
        version = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BundleError(f"{pointer} is not UTF-8 text; write a bundle version into it") from None
    if not version:
        raise BundleError(f"{pointer} is empty; write a bundle version into it")
    try:
        return check_version_name(version)
    except BundleError as error:
        raise BundleError(f"{pointer}: {error}") from None


def usable_current(models_dir: Path) -> str | None:
    """Return the version CURRENT names when the pointer is valid and its folder has a manifest."""
    try:
        version = read_current(models_dir)
    except BundleError:
        return None
    if version is None or not (Path(models_dir) / version / MANIFEST_FILE).is_file():
        return None
    return version


def write_current(models_dir: Path, version: str, previous: str | None = None) -> None:
    """Point CURRENT at `version`, and PREVIOUS at `previous` when it is given and differs."""
    models_dir = Path(models_dir)
    if not (models_dir / version / MANIFEST_FILE).is_file():
        raise BundleError(
            f"cannot point at bundle {version!r}: {models_dir / version / MANIFEST_FILE} does not exist"
        )
    if previous is not None and previous != version:
        _write_pointer(models_dir, PREVIOUS_POINTER, previous)
    _write_pointer(models_dir, CURRENT_POINTER, version)


def _write_pointer(models_dir: Path, name: str, version: str) -> None:
    temporary = models_dir / f".{name}.{os.getpid()}.tmp"  # one per process: writers never share it
    temporary.write_text(version + "\n")
    os.replace(temporary, models_dir / name)


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"bundle manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BundleError(f"bundle manifest {path} is not valid JSON: {error}") from error
    version = manifest.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        raise BundleError(
            f"bundle manifest {path} has schema_version={version!r}; this service reads "
            f"{MANIFEST_SCHEMA_VERSION}. Re-export the bundle with this version of `ranker export`."
        )
    return manifest


def verify_checksums(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Raise BundleError naming every file that is missing, unlisted or whose sha256 differs."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle manifest in {bundle_dir} has no 'files' table of sha256 checksums")
    problems = [f"{name}: not listed in the manifest" for name in REQUIRED_FILES if name not in files]
    for relative, expected in files.items():
        path = Path(bundle_dir) / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif sha256_of(path) != expected:
            problems.append(f"{relative}: sha256 mismatch")
    if problems:
        raise BundleError(f"bundle {bundle_dir} failed its checksum check: {'; '.join(problems)}")
