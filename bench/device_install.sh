#!/usr/bin/env bash
# On the GPU machine, after bench/device_wheels.sh's two halves were copied to /tmp/w: join Ray's wheel,
# install everything into /tmp/site (the image's own packages stay), and print what the tests will use.
set -euo pipefail
cd /tmp/w
for first in *.part-aa; do cat "${first%.part-aa}".part-* > "${first%.part-aa}"; rm "${first%.part-aa}".part-*; done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/w/*.whl
export PYTHONPATH=/tmp/site:$OLDPWD
cd "$OLDPWD"
KERAS_BACKEND=jax python3 -c "import ray, optuna, keras, jax; print('ray', ray.__version__, 'optuna', optuna.__version__, 'keras', keras.__version__, 'jax', jax.__version__, jax.devices())"
