"""Kubernetes manifests: schema-checked offline with kubernetes-validate, and consistent with each other."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO_ROOT

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
# The Kubernetes release whose schemas the manifests are checked against. autoscaling/v2 and
# policy/v1, the newest API versions used, are stable there.
KUBERNETES_VERSION = "1.30.0"


def manifest_paths() -> list[Path]:
    return sorted(path for path in KUBERNETES_DIR.glob("*.yaml") if path.name != "kustomization.yaml")


def load_resources() -> dict[str, dict]:
    """Return every resource by its kind; each kind occurs once."""
    resources = {}
    for path in manifest_paths():
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in resources, f"second {document['kind']} in {path.name}"
            resources[document["kind"]] = document
    return resources


@pytest.mark.parametrize("path", manifest_paths(), ids=lambda path: path.name)
def test_manifest_matches_schema(path: Path):
    for document in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {error.path}: {error.message}")


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())

    assert sorted(kustomization["resources"]) == [path.name for path in manifest_paths()]


def test_selectors_match_pod_labels():
    resources = load_resources()
    pod_labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]

    for kind in ("Service", "PodDisruptionBudget", "Deployment"):
        spec = resources[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind


def test_autoscaler_targets_deployment():
    resources = load_resources()
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]

    assert (target["kind"], target["name"]) == ("Deployment", resources["Deployment"]["metadata"]["name"])
    assert resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2


def test_probes_use_health_endpoints():
    container = load_resources()["Deployment"]["spec"]["template"]["spec"]["containers"][0]

    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # Autoscaling on CPU use needs a CPU request to compute a utilization.
    assert "cpu" in container["resources"]["requests"]


def test_configmap_names_real_settings():
    data = load_resources()["ConfigMap"]["data"]
    known = {f"RANKER_{name.upper()}" for name in Settings.model_fields}

    assert set(data) <= known, sorted(set(data) - known)
    settings = Settings(**{key.removeprefix("RANKER_").lower(): value for key, value in data.items()})
    assert settings.redis_cluster is True


def test_pod_user_matches_image_user():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    pod = load_resources()["Deployment"]["spec"]["template"]["spec"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
