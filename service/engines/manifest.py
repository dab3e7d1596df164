"""The bundle manifest and the pointer to the current bundle; shared by export and serving.

A bundle is one folder `exported_models/<version>/`; `exported_models/CURRENT` contains the
version being served. Both are written to a temporary name and renamed, so a reader never sees
a half-written bundle or pointer.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
CURRENT_POINTER = "CURRENT"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, or does not match its manifest."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_current(models_dir: Path) -> str | None:
    pointer = Path(models_dir) / CURRENT_POINTER
    if not pointer.is_file():
        return None
    version = pointer.read_text().strip()
    return version or None


def write_current(models_dir: Path, version: str) -> None:
    models_dir = Path(models_dir)
    if not (models_dir / version / MANIFEST_FILE).is_file():
        raise BundleError(
            f"cannot point at bundle {version!r}: {models_dir / version / MANIFEST_FILE} does not exist"
        )
    temporary = models_dir / f".{CURRENT_POINTER}.tmp"
    temporary.write_text(version + "\n")
    os.replace(temporary, models_dir / CURRENT_POINTER)


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
    """Raise BundleError naming every file that is missing or whose sha256 differs."""
    problems = []
    for relative, expected in manifest.get("files", {}).items():
        path = Path(bundle_dir) / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif sha256_of(path) != expected:
            problems.append(f"{relative}: sha256 mismatch")
    if problems:
        raise BundleError(f"bundle {bundle_dir} failed its checksum check: {'; '.join(problems)}")
