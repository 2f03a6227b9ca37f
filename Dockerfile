# hpsearch on Ray's own image, for KubeRay (examples/kuberay-rayjob.yaml) and any container platform.
#   docker build -t hpsearch:0.1.0 .                                   # CPU
#   docker build -t hpsearch:0.1.0-gpu --build-arg EXTRAS=gpu \
#       --build-arg BASE=rayproject/ray:2.60.0-py311-gpu .             # NVIDIA GPUs
# The Ray and Python versions match the ones hpsearch is tested with (ray 2.60.0, Python 3.11):
# a Ray cluster's nodes and its clients must run the same Ray.
ARG BASE=rayproject/ray:2.60.0-py311
FROM ${BASE}
ARG EXTRAS=""
WORKDIR /home/ray/hpsearch
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users search ./search
COPY --chown=ray:users spaces ./spaces
# Non-editable: the built-in spaces ship inside the package (search/spaces/).
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" "ray[default,tune]==2.60.0" \
    && cd / && hpsearch --help >/dev/null && python -c "from search.space import load_space; load_space('default')"
# A run's outputs; mount a volume here (or pass --results s3://... / gs://...).
WORKDIR /home/ray/work
ENV KERAS_BACKEND=jax
ENTRYPOINT []
CMD ["hpsearch", "--help"]
