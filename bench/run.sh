#!/usr/bin/env bash
# Every benchmark of bench/ at the settings of bench/README.md (python bench/run_all.py in the project's venv).
#
#   bash bench/run.sh            # full: about 18 min on an idle 2-core machine
#   bash bench/run.sh --quick    # tiny settings, about 2 min: checks every script works
#   bash bench/run.sh --help     # the steps, the settings, where results go
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh >&2  # its install messages are not results
exec "$PY" bench/run_all.py "$@"
