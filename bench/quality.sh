#!/usr/bin/env bash
# The quality panel (python bench/quality.py in the project's venv): every default model and the
# baseline on many synthetic releases, out of fold and on held-back test labels, against each
# release's noise-free ceiling.
#
#   bash bench/quality.sh                # the report releases: about an hour on 2 cores
#   bash bench/quality.sh --quick        # one report release of each kind: about 15 minutes
#   bash bench/quality.sh --panel tune   # the tune releases, where defaults and ablations are decided
#   bash bench/quality.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh >&2
exec "$PY" bench/quality.py "$@"
