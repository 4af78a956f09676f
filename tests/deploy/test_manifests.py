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
    assert settings.production and settings.database.keystore_same_cluster == "refuse"
    assert settings.operations.metrics_token and settings.privacy.master_key_file
    check_start(settings, demo=False)


def _manifest(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())


def test_the_authority_port_has_its_own_service_and_only_the_authority_may_reach_it() -> None:
    container = _manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLIGHTTOKEN_AUTHORITY_PORT"] == str(ports["authority"]) != env["FLIGHTTOKEN_PORT"]
    # The public Service never targets the authority port; the authority's Service only that.
    assert {p["targetPort"] for p in _manifest("service.yaml")["spec"]["ports"]} == {"http"}
    assert {p["targetPort"] for p in _manifest("authority-service.yaml")["spec"]["ports"]} == {"authority"}

    policy = _manifest("networkpolicy.yaml")["spec"]
    assert policy["podSelector"]["matchLabels"] == _manifest("deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert "Ingress" in policy["policyTypes"]
    for rule in policy["ingress"]:
        # A rule without ports opens every port; a rule naming the authority port must say from whom.
        assert rule.get("ports"), rule
        if any(p["port"] in ("authority", ports["authority"]) for p in rule["ports"]):
            assert rule.get("from"), rule
            for peer in rule["from"]:
                assert peer.get("namespaceSelector", {}).get("matchLabels") and \
                    peer.get("podSelector", {}).get("matchLabels"), peer
    open_to_all = [p["port"] for rule in policy["ingress"] if not rule.get("from") for p in rule["ports"]]
    assert open_to_all == ["http"]


def test_the_public_nginx_never_proxies_the_authority() -> None:
    container = _manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    authority_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "authority")
    conf = (DEPLOY / "nginx.conf").read_text()
    directives = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    assert f":{authority_port}" not in directives
    assert "/v1/alerts" not in directives and "/v1/watchlist" not in directives
