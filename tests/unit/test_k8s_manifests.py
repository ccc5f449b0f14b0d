"""The Kubernetes manifests, validated offline against the Kubernetes API models (no cluster here): every field known
(a round trip through the typed models keeps every key), required fields present, and the pieces agree with each other
and with the service (probe paths, port, API-key variable, shared volume = workdir, config valid)."""
from pathlib import Path

import pytest
import yaml

from recplugin.config import from_dict
from recplugin.serving.guards import PROBES

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
MODELS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service", ("v1", "ConfigMap"): "V1ConfigMap",
          ("v1", "Secret"): "V1Secret", ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
          ("batch/v1", "Job"): "V1Job", ("batch/v1", "CronJob"): "V1CronJob"}


def documents() -> dict[str, dict]:
    """Every manifest by kind/name."""
    docs = [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in docs}


@pytest.mark.parametrize("key", sorted(documents()))
def test_each_manifest_is_a_valid_kubernetes_object(key):
    from kubernetes import client

    doc = documents()[key]
    api = client.ApiClient()
    model = api._ApiClient__deserialize(doc, MODELS[(doc["apiVersion"], doc["kind"])])  # required fields checked here
    assert api.sanitize_for_serialization(model) == doc  # an unknown or misspelt field would be dropped


def test_the_manifests_agree_with_each_other_and_the_service():
    docs = documents()
    config = from_dict(yaml.safe_load(docs["ConfigMap/recplugin-config"]["data"]["recplugin.yaml"]))
    deployment = docs["Deployment/recplugin"]["spec"]
    pod = deployment["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["replicas"] > 1 and config.serving.event_log_per_host and "://" in config.index.uri
    assert container["ports"][0]["containerPort"] == config.serving.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in PROBES
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez" and "/livez" in PROBES
    assert container["readinessProbe"]["timeoutSeconds"] > config.serving.ready_timeout_s
    secret = next(e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == config.serving.api_key_env)
    assert secret["key"] in docs[f"Secret/{secret['name']}"]["stringData"]
    job = docs["Job/recplugin-offline"]["spec"]["template"]["spec"]
    cron = docs["CronJob/recplugin-refresh"]["spec"]
    refresh = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid" and refresh["containers"][0]["command"][-1] == "refresh"
    for spec in (pod, job, refresh):
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        assert mounts["shared"] == config.workdir and claims["shared"] in {k.split("/")[1] for k in docs if k.startswith("PersistentVolumeClaim/")}
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["RECPLUGIN_CONFIG"] == mounts["config"] + "/recplugin.yaml"
    assert docs["PersistentVolumeClaim/recplugin-shared"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert docs["Service/recplugin"]["spec"]["selector"] == deployment["selector"]["matchLabels"]
