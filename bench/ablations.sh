#!/usr/bin/env bash
# The ablation tables of bench/README.md: after `bash run_all.sh` (the EMI demo), train each model's
# ablations on the same folds and print the out-of-fold report of every run.
#
#   bash bench/ablations.sh            # WORK_DIR, DATA_DIR, JOBS as for run_all.sh
#   ONLY=rcma bash bench/ablations.sh  # one model's ablations
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh
WORK_DIR="${WORK_DIR:-work}"
DATA_DIR="${DATA_DIR:-$WORK_DIR/demo-emi}"
JOBS="${JOBS:-$(nproc)}"
FOLDS="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["k"])' \
  "$("$PY" -m solution.runs --data "$DATA_DIR" --work "$WORK_DIR")/folds.json")"
THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
ABLATIONS=("dual_stage ds_no_stage1 --no-stage1" "dual_stage ds_no_quality_aug --set model.quality_augment=0"
           "dual_stage ds_gated --fusion quality" "dual_stage ds_concat --fusion concat"
           "foalnet fn_no_align --no-align" "foalnet fn_no_match --no-match" "foalnet fn_mean_pool --set model.pool=mean"
           "rcma rcma_one_recursion --recursions 1" "rcma rcma_no_attention --no-attention" "rcma rcma_joint_all --joint all")
ONLY="${ONLY:-}"  # e.g. ONLY=foalnet: that model's ablations only
RUNS=dual_stage,foalnet,rcma,linear
JOBS_LIST=()
for ablation in "${ABLATIONS[@]}"; do
  read -r model name flags <<< "$ablation"
  [ -z "$ONLY" ] || [ "$model" = "$ONLY" ] || continue
  RUNS="$RUNS,$name"
  for ((fold = 0; fold < FOLDS; fold++)); do JOBS_LIST+=("--model $model --name $name $flags --fold $fold"); done
done
printf '%s\n' "${JOBS_LIST[@]}" | xargs -P "$JOBS" -L 1 "$PY" -m solution.train_fold --data "$DATA_DIR" --work "$WORK_DIR" \
    --threads "$THREADS" --log-every 100
"$PY" -m solution.report --data "$DATA_DIR" --work "$WORK_DIR" --runs "$RUNS"
