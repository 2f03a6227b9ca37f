"""cluster.yaml against the cluster-config schema that ships inside the `ray` package."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

from tests.conftest import REPO


def test_cluster_yaml_matches_rays_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types) and types["cpu_worker"]["max_workers"] > 0
    # the dashboard stays on the head's loopback: reached through `ray dashboard` (SSH forwarding)
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    assert any("pip install" in c and "hpsearch" in c for c in config["setup_commands"])


KUBERAY = json.loads((REPO / "tests" / "data" / "kuberay-rayjob-v1.json").read_text())


def _unknown(keys, known) -> list[str]:  # noqa: ANN001
    return sorted(set(keys) - set(known))


def test_kuberay_manifest_uses_only_rayjob_v1_fields():
    """The field names of KubeRay's ray.io/v1 RayJob (tests/data/kuberay-rayjob-v1.json, read from
    KubeRay's CRD and Go types at the commit it names): a misspelt or moved field fails here."""
    manifest = yaml.safe_load((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
    assert manifest["apiVersion"] == KUBERAY["apiVersion"] and manifest["kind"] == KUBERAY["kind"]
    spec = manifest["spec"]
    assert not _unknown(spec, KUBERAY["spec"])
    cluster = spec["rayClusterSpec"]
    assert not _unknown(cluster, KUBERAY["rayClusterSpec"])
    assert not _unknown(cluster["headGroupSpec"], KUBERAY["headGroupSpec"])
    for group in cluster["workerGroupSpecs"]:
        assert not _unknown(group, KUBERAY["workerGroupSpec"])
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert all(isinstance(v, str) for v in cluster["headGroupSpec"]["rayStartParams"].values())  # map of strings


def test_kuberay_job_can_be_submitted_and_keeps_its_token():
    """The submitter reaches the head's job API over the pod network: not on loopback, token on."""
    manifest = yaml.safe_load((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
    spec, cluster = manifest["spec"], manifest["spec"]["rayClusterSpec"]
    assert spec["submissionMode"] in KUBERAY["submissionModes"] and spec["submissionMode"] == "K8sJobMode"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"].get("dashboard-host", "0.0.0.0") == "0.0.0.0"
    assert cluster["authOptions"]["mode"] == "token" and "token" in KUBERAY["authModes"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"  # the job API stays inside the cluster
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert 8265 in ports
    assert cluster["rayVersion"] == ray.__version__  # the image's Ray is the one hpsearch is tested with
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-py" in dockerfile and f"ray[default,tune]=={ray.__version__}" in dockerfile
    images = {c["image"] for part in [head, *cluster["workerGroupSpecs"]] for c in part["template"]["spec"]["containers"]}
    assert images == {"hpsearch:0.1.0"} and "docker build -t hpsearch:0.1.0 ." in dockerfile


def test_kuberay_manifest_is_a_rayjob_that_runs_hpsearch():
    manifest = yaml.safe_load((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob" and manifest["apiVersion"] == "ray.io/v1"
    assert manifest["spec"]["entrypoint"].startswith("python -m search run") and "--address auto" in manifest["spec"]["entrypoint"]
