#!/usr/bin/env bash
# Kyphosis after surgery (81 rows, 3 features; `rownames` is an id and must not be a feature).
exec "$(dirname "$0")/_evaluate.sh" kyphosis.csv kyphosis --target Kyphosis --drop rownames --positive present "$@"
