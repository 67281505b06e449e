#!/usr/bin/env bash
# The quality panel (python bench/quality.py in the project's venv): every default model and the
# baseline on many synthetic releases, out of fold and on held-back test labels, against each
# release's noise-free ceiling.
#
#   bash bench/quality.sh --panel tune            # the tune releases, where defaults and ablations are decided
#   bash bench/quality.sh --panel tune --quick    # one tune release of each kind
#   bash bench/quality.sh --panel report          # the report releases: once, at the end of an issue that changes quality
#   bash bench/quality.sh --compare A B           # two runs paired per release, with 95 % intervals and cost
#   bash bench/quality.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh >&2
exec "$PY" bench/quality.py "$@"
