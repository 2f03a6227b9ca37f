#!/usr/bin/env bash
# Sonar, mines vs rocks (208 rows, 60 features, no header, labels M/R in the last column).
exec "$(dirname "$0")/_evaluate.sh" sonar.csv sonar --no-header --target -1 --positive M "$@"
