#!/usr/bin/env bash
# Framingham ten-year coronary heart disease (4240 rows, 15 features, 645 missing cells, 15% positive).
exec "$(dirname "$0")/_evaluate.sh" framingham.csv framingham --target TenYearCHD "$@"
