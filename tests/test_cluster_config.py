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


def test_kuberay_manifest_is_a_rayjob_that_runs_hpsearch():
    manifest = yaml.safe_load((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob" and manifest["apiVersion"] == "ray.io/v1"
    assert manifest["spec"]["entrypoint"].startswith("python -m search run") and "--address auto" in manifest["spec"]["entrypoint"]
