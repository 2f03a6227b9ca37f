#!/usr/bin/env bash
# Shared by the example scripts: nested CV of hpsearch on one table from ../shared/datasets.
# Usage: examples/_evaluate.sh FILE NAME [hpsearch evaluate options...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${DATASETS:-$root/../shared/datasets}/$1"
name="$2"
shift 2
[ -f "$data" ] || { echo "error: $data not found; set DATASETS to the folder holding the shared tables." >&2; exit 2; }
hpsearch="$root/.venv/bin/hpsearch"
[ -x "$hpsearch" ] || hpsearch=hpsearch
# Budget for 2 cores: 5 outer folds x (20 trials + CV of the top 2); the rest are hpsearch's defaults.
exec "$hpsearch" evaluate "$data" --outer-folds 5 --samples 20 --top-k 2 \
    --results "${RESULTS:-$root/results}" --name "$name-$(date -u +%Y%m%dT%H%M%S)" "$@"
