#!/usr/bin/env bash
# The test command: install what is missing, lint, then run the whole suite
# (unit tests and real-server tests on the local runtime).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
.venv/bin/ruff check .
shellcheck -x charts/mysql-sts/scripts/*.sh scripts/*.sh scripts/kind/*.sh scripts/kind/runc-wrapper .ci/run
exec .venv/bin/pytest "$@"
