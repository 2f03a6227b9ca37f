# syntax=docker/dockerfile:1
# hpsearch on Ray's own image, for KubeRay (examples/kuberay-rayjob.yaml) and any container platform.
#   docker build -t hpsearch:0.1.0 .                                   # CPU
#   docker build -t hpsearch:0.1.0-gpu --build-arg EXTRAS=gpu .        # NVIDIA GPUs
# The Ray and Python versions match the ones hpsearch is tested with (ray 2.60.0, Python 3.11):
# a Ray cluster's nodes and its clients must run the same Ray.
# The GPU image is the same CPU base with the `gpu` extra: TensorFlow's and JAX's pip CUDA 12 and cuDNN
# wheels are its one CUDA (rayproject/ray's -gpu images bring a second, system-wide one). The host
# needs only the NVIDIA driver and container toolkit.
ARG BASE=rayproject/ray:2.60.0-py311
FROM ${BASE}
ARG EXTRAS=""
WORKDIR /home/ray/hpsearch
# 1. The dependencies, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY --chown=ray:users pyproject.toml ./
RUN python - "${EXTRAS}" > /tmp/requirements.txt <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = [e for e in sys.argv[1].split(",") if e]
print("\n".join(project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]]))
PY
RUN pip install --no-cache-dir -r /tmp/requirements.txt "ray[default,tune]==2.60.0"
# 2. The code, without touching the dependencies. Non-editable: the built-in spaces ship inside the
#    package (search/spaces/).
COPY --chown=ray:users README.md ./
COPY --chown=ray:users search ./search
COPY --chown=ray:users spaces ./spaces
RUN pip install --no-cache-dir --no-deps . \
    && cd / && hpsearch --version && python -c "from search.space import load_space; load_space('default')"
# A run's outputs; mount a volume here (or pass --results s3://... / gs://...).
WORKDIR /home/ray/work
ENV KERAS_BACKEND=jax
ENTRYPOINT []
CMD ["hpsearch", "--help"]
