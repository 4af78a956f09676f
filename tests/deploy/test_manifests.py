"""Deployment files stay valid: Kubernetes manifests against the API schemas, probes on real paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "ops" / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def test_kubernetes_manifests_validate_strictly() -> None:
    assert MANIFESTS
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30.0",
                           *map(str, MANIFESTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_probes_point_at_the_service_health_endpoints() -> None:
    from flighttoken.app import create_app
    from flighttoken.settings import load_settings

    paths = {route.path for route in create_app(load_settings({})).routes}
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths


def test_the_deployment_meets_production_mode() -> None:
    """The Deployment's settings pass production mode's start-up checks (secrets as placeholders)."""
    from flighttoken.production import check_start
    from flighttoken.settings import load_settings

    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] if "value" in e else
           "postgresql://db.invalid/secret" if e["name"].endswith("_URL") else "from-a-secret"
           for e in container["env"]}
    settings = load_settings(env)
    assert settings.production and settings.keystore_same_cluster == "refuse"
    assert settings.metrics_token and settings.master_key_file
    check_start(settings, demo=False)
