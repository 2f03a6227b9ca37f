#!/usr/bin/env bash
# Pima Indians diabetes (768 rows, 8 numeric features, no header, 0/1 in the last column).
# Accuracy is the figure the tutorials quote, so the search and the threshold aim at it.
exec "$(dirname "$0")/_evaluate.sh" pima-indians-diabetes.csv pima --no-header --target -1 --metric accuracy "$@"
