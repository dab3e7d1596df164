"""Prometheus configuration and alert rules, checked and unit-tested with promtool."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from service.metrics import Metrics
from tests.binaries import require_binary
from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "ranker-alerts.yml"
METRIC_NAME = re.compile(r"\branker_[a-z_]+")


def exported_metric_names() -> set[str]:
    """Return every series name the service can export, with the _total and _bucket suffixes."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def run_promtool(*arguments: str) -> subprocess.CompletedProcess:
    promtool = require_binary("promtool", "apt-get install prometheus")
    return subprocess.run(
        [promtool, *arguments], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120
    )


def test_promtool_check_config():
    result = run_promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules():
    result = run_promtool("check", "rules", RULES.name)

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests():
    result = run_promtool("test", "rules", "tests/ranker-alerts-test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_cover_required_alerts():
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]

    assert {rule["alert"] for rule in rules} == {
        "RankerDown",
        "RankerHighLatencyP99",
        "RankerHighErrorRate",
        "RankerHighDegradedRate",
        "RankerBundleReloadRejected",
    }


@pytest.mark.parametrize("path", [RULES, PROMETHEUS_DIR / "tests" / "ranker-alerts-test.yml"])
def test_rules_use_exported_metrics(path: Path):
    unknown = set(METRIC_NAME.findall(path.read_text())) - exported_metric_names()

    assert not unknown, f"{path.name} names metrics the service does not export: {sorted(unknown)}"
