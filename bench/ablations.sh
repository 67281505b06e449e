#!/usr/bin/env bash
# The README's ablation table: after `bash run_all.sh` (the EMI demo), train the dual-stage
# ablations on the same folds and print the out-of-fold report of every run.
#
#   bash bench/ablations.sh            # WORK_DIR, DATA_DIR, JOBS as for run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh
WORK_DIR="${WORK_DIR:-work}"
DATA_DIR="${DATA_DIR:-$WORK_DIR/demo-emi}"
JOBS="${JOBS:-$(nproc)}"
FOLDS="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["k"])' \
  "$("$PY" -m solution.runs --data "$DATA_DIR" --work "$WORK_DIR")/folds.json")"
THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
ABLATIONS=("ds_no_stage1 --no-stage1" "ds_no_quality_aug --set model.quality_augment=0"
           "ds_gated --fusion quality" "ds_concat --fusion concat")
for ablation in "${ABLATIONS[@]}"; do
  read -r name flags <<< "$ablation"
  for ((fold = 0; fold < FOLDS; fold++)); do echo "--name $name $flags --fold $fold"; done
done | xargs -P "$JOBS" -L 1 "$PY" -m solution.train_fold --model dual_stage --data "$DATA_DIR" --work "$WORK_DIR" \
    --threads "$THREADS" --log-every 100
"$PY" -m solution.report --data "$DATA_DIR" --work "$WORK_DIR" --runs dual_stage,ds_no_stage1,ds_no_quality_aug,ds_gated,ds_concat,linear
