#!/usr/bin/env bash
# Wheels that hpsearch needs on the lent GPU machine (Python 3.12, JAX for CUDA 13, PyTorch; no Ray,
# Keras, pydantic; nothing can be downloaded there; one call carries at most 64 MiB).
# Run here, in the repository root: it fills .whl-a/ (Ray's first half, about 40 MB) and .whl-b/ (Ray's
# second half and the small wheels), both ignored by git. Then, on the device, two calls in a row
# (a machine stays warm only 30 s after a call, and ignored files stay while it is warm):
#   1. carry [".whl-a"]:  mkdir -p /tmp/w && cp .whl-a/* /tmp/w/
#   2. carry [".whl-b"]:  cp .whl-b/* /tmp/w/ && source bench/device_install.sh && <the measurement>
# TensorFlow's wheel (hundreds of MB) cannot travel: on the device hpsearch runs with --backend jax and
# KERAS_BACKEND=jax in the driver (numeric tables only: StringLookup needs TensorFlow).
set -euo pipefail
pip="${PIP:-.venv/bin/pip}"
rm -rf .whl-a .whl-b && mkdir -p .whl-a .whl-b
"$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl-b \
    "ray==$("$pip" show ray | awk '/^Version/{print $2}')" "keras==$("$pip" show keras | awk '/^Version/{print $2}')" \
    pydantic pydantic-core annotated-types typing-inspection namex optree jsonschema jsonschema-specifications \
    referencing rpds-py tensorboardX optuna alembic mako sqlalchemy colorlog greenlet
ray_wheel=$(ls .whl-b/ray-*.whl)
split -b 40M "$ray_wheel" ".whl-a/$(basename "$ray_wheel").part-"
mv .whl-a/*.part-ab .whl-b/ 2>/dev/null || true
rm "$ray_wheel"
du -sh .whl-a .whl-b
