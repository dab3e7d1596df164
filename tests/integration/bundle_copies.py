"""Cheap copies of a bundle for deploy tests: files are hard links, tampered files are new files.

A hard-linked file shares its bytes with the original, so a tamper function must replace the
file (unlink, then write) and never edit it in place.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path


def link_bundle(source: Path, models_dir: Path, version: str) -> Path:
    """Copy a bundle under another version name; the manifest gets that name, as an export would."""
    target = models_dir / version
    shutil.copytree(source, target, copy_function=os.link)
    manifest = read_manifest(target)
    manifest["version"] = version
    write_manifest(target, manifest)
    return target


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def read_manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle: Path, manifest: dict, rehash: tuple[str, ...] = ()) -> None:
    """Write the manifest, recomputing the sha256 of the files in `rehash` so only the intended
    check fails."""
    for name in rehash:
        manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    replace_file(bundle / "manifest.json", json.dumps(manifest).encode())


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    replace_file(path, bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    replace_file(path, data[: len(data) // 2])
