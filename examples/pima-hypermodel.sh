#!/usr/bin/env bash
# Pima diabetes (768 rows, 8 features) with a KerasTuner hypermodel (examples/hypermodel.py) in place of the
# built-in network: the same nested CV as examples/pima.sh, for the figures side by side.
exec "$(dirname "$0")/_evaluate.sh" pima-indians-diabetes.csv pima-hypermodel --no-header --target -1 --metric accuracy \
    --hypermodel "$(dirname "$0")/hypermodel.py:build_model" "$@"
