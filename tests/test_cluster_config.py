"""cluster.yaml against the cluster-config schema that ships inside the `ray` package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
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
    # every node's Ray is the one hpsearch is tested with (the client's and the image's)
    installs = [c for t in types.values() for c in t.get("worker_setup_commands", [])] + config["setup_commands"]
    assert all(f'"ray[default,tune]=={ray.__version__}"' in c for c in installs if "hpsearch" in c)


KUBERAY = json.loads((REPO / "tests" / "data" / "kuberay-rayjob-v1.json").read_text())


def rayjob_manifest() -> dict:
    """The RayJob of examples/kuberay-rayjob.yaml (the file also holds its volume claim)."""
    return next(d for d in yaml.safe_load_all((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
                if d["kind"] == "RayJob")


def test_kuberay_example_brings_its_volume_and_names_that_do_not_collide():
    documents = list(yaml.safe_load_all((REPO / "examples" / "kuberay-rayjob.yaml").read_text()))
    claims = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    job = rayjob_manifest()
    cluster = job["spec"]["rayClusterSpec"]
    used = {v["persistentVolumeClaim"]["claimName"] for part in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
            for v in part["template"]["spec"]["volumes"]}
    assert used == {c["metadata"]["name"] for c in claims}  # every claim the pods mount is defined here
    assert all("ReadWriteMany" in c["spec"]["accessModes"] and c["spec"]["resources"]["requests"]["storage"]
               for c in claims)  # the head and the workers mount it at once
    # a generated name and no fixed run name: a second `kubectl create` is a second search, not a conflict
    assert "name" not in job["metadata"] and job["metadata"]["generateName"].endswith("-")
    assert "--name" not in job["spec"]["entrypoint"]
    assert "KubeRay operator >= 1.5.1" in (REPO / "examples" / "kuberay-rayjob.yaml").read_text()


def test_the_image_installs_the_dependencies_before_the_code():
    """The Dockerfile's dependency layer depends on pyproject.toml alone; the code comes after it, with
    --no-deps, so a change of code reuses the layer with TensorFlow, JAX and Keras. The script that
    lists the dependencies, run here, lists pyproject's (and the gpu extra's with EXTRAS=gpu)."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 or newer reads pyproject.toml")

    dockerfile = (REPO / "Dockerfile").read_text()
    steps = [line for line in dockerfile.splitlines() if re.match(r"(COPY|RUN) ", line)]
    copies = [s for s in steps if s.startswith("COPY")]
    assert copies[0].split()[-2] == "pyproject.toml" and "search" not in copies[0]
    deps = next(i for i, s in enumerate(steps) if "-r /tmp/requirements.txt" in s)
    code = next(i for i, s in enumerate(steps) if s.startswith("COPY") and " search " in s)
    assert deps < code and "--no-deps ." in dockerfile.split(steps[code])[1]
    script = dockerfile.split("<<'PY'\n")[1].split("\nPY\n")[0]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extras, expected in (("", project["dependencies"]),
                             ("gpu", project["dependencies"] + project["optional-dependencies"]["gpu"])):
        listed = subprocess.run([sys.executable, "-", extras], input=script, capture_output=True, text=True,
                                cwd=REPO, check=True).stdout.split("\n")
        assert [line for line in listed if line] == expected
    assert "-gpu" not in dockerfile.split("FROM")[0].split("ARG BASE=")[1].splitlines()[0]  # one CUDA: pip's


def _unknown(keys, known) -> list[str]:  # noqa: ANN001
    return sorted(set(keys) - set(known))


def test_kuberay_manifest_uses_only_rayjob_v1_fields():
    """The field names of KubeRay's ray.io/v1 RayJob (tests/data/kuberay-rayjob-v1.json, read from
    KubeRay's CRD and Go types at the commit it names): a misspelt or moved field fails here."""
    manifest = rayjob_manifest()
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
    manifest = rayjob_manifest()
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
    manifest = rayjob_manifest()
    assert manifest["kind"] == "RayJob" and manifest["apiVersion"] == "ray.io/v1"
    assert manifest["spec"]["entrypoint"].startswith("python -m search run") and "--address auto" in manifest["spec"]["entrypoint"]
