"""`ranker deploy` and `ranker rollback`: move the CURRENT pointer, or ask a running service.

Without --url the command runs the same checks a service runs (service/deploy/checks.py) and
then writes the pointer; every service that follows CURRENT swaps within
RANKER_BUNDLE_POLL_SECONDS. With --url it calls the service's admin endpoint instead, which
checks, swaps and writes the pointer itself, and its response shows at once whether the swap worked.
"""

import argparse
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from service.engines.manifest import (
    BundleError,
    check_version_name,
    read_current,
    read_manifest,
    read_previous,
    verify_checksums,
    write_current,
)

logger = logging.getLogger("ranker")

ADMIN_TIMEOUT_SECONDS = 60.0  # a swap loads and checks a bundle: seconds, not milliseconds


def add_deploy_commands(commands, add_models_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    deploy = commands.add_parser(
        "deploy", help="check a bundle and make it the one served (CURRENT), or ask a service at --url"
    )
    deploy.add_argument("version", help="bundle folder name under the models folder")
    add_models_dir(deploy)
    _add_url_option(deploy)
    deploy.set_defaults(handler=run_deploy)

    rollback = commands.add_parser(
        "rollback", help="serve the previous bundle again (PREVIOUS), or ask a service at --url"
    )
    add_models_dir(rollback)
    _add_url_option(rollback)
    rollback.set_defaults(handler=run_rollback)


def _add_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="base URL of a running service, e.g. http://127.0.0.1:8000; the admin token is read "
        "from RANKER_ADMIN_TOKEN",
    )


def run_deploy(args: argparse.Namespace) -> int:
    version = check_version_name(args.version)
    if args.url:
        return _call_admin(args.url, "/admin/bundle", {"version": version})
    return _point_at(Path(args.models_dir), version)


def run_rollback(args: argparse.Namespace) -> int:
    if args.url:
        return _call_admin(args.url, "/admin/rollback", {})
    previous = read_previous(args.models_dir)
    if previous is None:
        raise BundleError(
            f"no previous bundle to roll back to: {Path(args.models_dir) / 'PREVIOUS'} is missing"
        )
    return _point_at(Path(args.models_dir), previous)


def _point_at(models_dir: Path, version: str) -> int:
    from service.deploy.checks import check_bundle  # loads ONNX Runtime: only when needed

    check_bundle(models_dir, version, device="cpu", intra_op_threads=1)
    previous = _rollback_target(models_dir, version)
    write_current(models_dir, version, previous=previous)
    logger.info(
        "bundle %s passed its checks; CURRENT names it (PREVIOUS: %s). Services that follow CURRENT "
        "swap within RANKER_BUNDLE_POLL_SECONDS.",
        version,
        read_previous(models_dir) or "none",
    )
    return 0


def _rollback_target(models_dir: Path, version: str) -> str | None:
    """Return the bundle CURRENT names when its files match its manifest, else None (PREVIOUS
    then stays as it is), so a rejected bundle never becomes the rollback target."""
    try:
        before = read_current(models_dir)
        if before is None or before == version:
            return None
        verify_checksums(models_dir / before, read_manifest(models_dir / before))
    except BundleError as error:
        logger.warning("PREVIOUS left unchanged: the bundle CURRENT named is not usable (%s)", error)
        return None
    return before


def _call_admin(base_url: str, path: str, body: dict) -> int:
    """POST to an admin endpoint; return 0 on success, 2 when the service rejects the request."""
    token = os.environ.get("RANKER_ADMIN_TOKEN", "")
    if not token:
        raise ValueError("RANKER_ADMIN_TOKEN is not set; export the token the service was started with")
    request = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_SECONDS) as response:
            status = _json_or_none(response.read())
    except urllib.error.HTTPError as error:
        detail = (_json_or_none(error.read()) or {}).get("error", {})
        outcome = "failed" if error.code >= 500 else "rejected the request"
        logger.error(
            "service %s (%d %s): %s",
            outcome,
            error.code,
            detail.get("code"),
            detail.get("message", error.reason),
        )
        return 2
    except urllib.error.URLError as error:
        logger.error("cannot reach %s: %s", base_url, error.reason)
        return 2
    if status is None or "serving" not in status:
        logger.error("%s%s did not return the admin status JSON; is --url a ranker service?", base_url, path)
        return 2
    logger.info("service now serves bundle %s (previous: %s)", status["serving"], status["previous"])
    return 0


def _json_or_none(payload: bytes) -> dict | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
