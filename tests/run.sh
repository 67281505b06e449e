#!/usr/bin/env bash
# The test command: sets up .venv from requirements.txt, then runs the whole suite.
# Extra arguments go to pytest (e.g. bash tests/run.sh -k metrics -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh
exec "$PY" -m pytest tests -q "$@"
