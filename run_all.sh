#!/usr/bin/env bash
# From a release (the synthetic demo by default) to a validated leaderboard zip:
# demo data -> features -> folds -> every fold of every model -> report -> submission.
#
#   bash run_all.sh                      # EMI demo: dual-stage, Foal-Net and RCMA, blended (+ the linear baseline for the report)
#   DATA_DIR=/data/hume bash run_all.sh  # a real release in the official layout (features-only works too)
#   CONFIG=run.toml bash run_all.sh      # settings for every stage from one TOML file (see solution/config.py)
#   TRACK=va bash run_all.sh             # the VA demo (Aff-Wild2 layout): the same models, frame by frame
#   PREDICT_DATA=/data/test bash run_all.sh   # later: a new release or test listing through the trained models
#
# Environment:
#   TRACK          emi | va (default emi)
#   DATA_DIR       a release to read instead of generating the demo
#   WORK_DIR       intermediate files (default ./work); SUBMISSIONS_DIR (default ./submissions)
#   CONFIG         a TOML file with [features], [folds], [train], [model] tables, read by every stage
#   MODELS         comma list of models; the submission blends exactly these, with weights fit out of fold
#                  (default dual_stage,foalnet,rcma)
#   BASELINE       a model trained for the report only (default linear; empty to skip)
#   FOLDS          number of folds (default 5); JOBS: folds trained in parallel (default: cores)
#   SCHEME         grouped (default: K folds over train+valid) | official (train on train, score on valid)
#   LABEL_DELAY    VA: seconds the labels lag the media; auto (default) chooses it out of fold (solution.delay)
#   DEVICE         cpu | cuda (default cpu); SEED: demo generator seed (default 0)
#   FEATURE_ARGS   extra flags for solution.features, shell-quoted (e.g. "--visual 'hog,timm:resnet50?weights=/m/r50.safetensors'")
#   TRAIN_ARGS     extra flags for every solution.train_fold run, shell-quoted
#                  (e.g. "--set epochs=30 --set 'streams={visual=[\"hog\"]}'"; model.NAME.KEY=V reaches one model only)
#   PREDICT_DATA   a release or test listing that arrived later: predict it with the models trained
#                  earlier with the same DATA_DIR/WORK_DIR (no training; solution.predict)
#   VENV_DIR       the virtual environment (default ./.venv); PYTHON: the interpreter that builds it
set -euo pipefail
cd "$(dirname "$0")"
source solution/venv.sh

TRACK="${TRACK:-emi}"
WORK_DIR="${WORK_DIR:-work}"
SUBMISSIONS_DIR="${SUBMISSIONS_DIR:-submissions}"
MODELS="${MODELS:-dual_stage,foalnet,rcma}"
BASELINE="${BASELINE-linear}"
FOLDS="${FOLDS:-5}"
JOBS="${JOBS:-$(nproc)}"
DEVICE="${DEVICE:-cpu}"
case "$TRACK" in emi) EXT=csv ;; va) EXT=txt ;; *) echo "TRACK must be emi or va, got '$TRACK'" >&2; exit 2 ;; esac
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a whole number of at least 1, got '$JOBS'" >&2; exit 2; }
[[ "$FOLDS" =~ ^[1-9][0-9]*$ ]] || { echo "FOLDS must be a whole number of at least 1, got '$FOLDS'" >&2; exit 2; }
CONFIG_ARGS=()
if [ -n "${CONFIG:-}" ]; then
  [ -f "$CONFIG" ] || { echo "CONFIG=$CONFIG is not a file" >&2; exit 2; }
  CONFIG_ARGS=(--config "$CONFIG")
fi
# Shell-style splitting, so quoted values (TOML inline tables, paths with spaces) survive.
split_args() {  # split_args NAME VALUE -> fills the array NAME
  local lines
  lines="$("$PY" -c 'import shlex, sys; print("\n".join(shlex.split(sys.argv[1])))' "$2" 2>/dev/null)" ||
    { echo "cannot split the flags '$2' (unbalanced quotes?)" >&2; exit 2; }
  mapfile -t "$1" < <([ -n "$lines" ] && printf '%s\n' "$lines")
}
# Each stage's wall time, printed when the next one starts (and at the end), for the README's timing table.
SECONDS=0 STAGE="" STAGE_START=0  # after the venv: install time is not counted
stage() {  # stage "N/6 what": closes the running stage with its time, then announces the next
  [ -z "$STAGE" ] || echo "   (stage ${STAGE%% *} took $((SECONDS - STAGE_START)) s)"
  STAGE="$1" STAGE_START=$SECONDS
  [ -z "$1" ] || echo "== $1"
}
split_args FEATURE_EXTRA "${FEATURE_ARGS:-}"
split_args TRAIN_EXTRA "${TRAIN_ARGS:-}"

# ---- PREDICT_DATA: predict a release that arrived after training (no training) ----
# With the DATA_DIR and WORK_DIR of the training run: the new release's (or test listing's)
# features with the trained extractor settings, every fold's checkpoints, the saved blend, the zip.
if [ -n "${PREDICT_DATA:-}" ]; then
  [ -d "$PREDICT_DATA" ] || { echo "PREDICT_DATA=$PREDICT_DATA is not a folder" >&2; exit 2; }
  TRAIN_DATA="${DATA_DIR:-$WORK_DIR/demo-$TRACK}"
  RELEASE_WORK="$("$PY" -m solution.runs --data "$TRAIN_DATA" --work "$WORK_DIR")"
  BLEND_ARGS=()  # the blend solution.ensemble saved; without one, MODELS with equal weights
  [ -f "$RELEASE_WORK/predictions/blend.json" ] || BLEND_ARGS=(--runs "$MODELS")
  THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
  NAME="predict-$(date +%Y%m%d-%H%M%S)"
  echo "== predicting $PREDICT_DATA with the models trained on $TRAIN_DATA ($RELEASE_WORK)"
  "$PY" -m solution.predict --train-data "$TRAIN_DATA" --data "$PREDICT_DATA" --work "$WORK_DIR" \
      --out-dir "$SUBMISSIONS_DIR" --name "$NAME" --device "$DEVICE" --threads "$THREADS" --workers "$JOBS" \
      ${BLEND_ARGS[@]+"${BLEND_ARGS[@]}"}
  "$PY" -m solution.submit --check "$SUBMISSIONS_DIR/$NAME.zip" --data "$PREDICT_DATA" --track "$TRACK"
  echo "done: $SUBMISSIONS_DIR/$NAME.zip"
  exit 0
fi
# ---- end of PREDICT_DATA ----

if [ -z "${DATA_DIR:-}" ]; then
  DATA_DIR="$WORK_DIR/demo-$TRACK"
  stage "1/6 demo data ($TRACK) -> $DATA_DIR"
  "$PY" -m solution.synth --track "$TRACK" --out "$DATA_DIR" --seed "${SEED:-0}"
else
  stage "1/6 using the release in $DATA_DIR"
  [ -d "$DATA_DIR" ] || { echo "DATA_DIR=$DATA_DIR is not a folder" >&2; exit 2; }
fi

stage "2/6 features -> $WORK_DIR/features"
"$PY" -m solution.features --data "$DATA_DIR" --work "$WORK_DIR" --workers "$JOBS" --device "$DEVICE" \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} ${FEATURE_EXTRA[@]+"${FEATURE_EXTRA[@]}"}

RELEASE_WORK="$("$PY" -m solution.runs --data "$DATA_DIR" --work "$WORK_DIR")"
SCHEME="${SCHEME:-grouped}"
case "$SCHEME" in grouped|official) ;; *) echo "SCHEME must be grouped or official, got '$SCHEME'" >&2; exit 2 ;; esac
[ "$SCHEME" = grouped ] || FOLDS=1
stage "3/6 folds ($SCHEME: $FOLDS, grouped by subject where the release says who the subjects are) -> $RELEASE_WORK"
"$PY" -m solution.folds --data "$DATA_DIR" --work "$WORK_DIR" --k "$FOLDS" --scheme "$SCHEME" \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"}
DELAY_ARGS=()  # frame-level tracks: how late the annotators are, chosen out of fold unless given
if [ "$TRACK" = va ]; then
  LABEL_DELAY="${LABEL_DELAY:-auto}"
  if [ "$LABEL_DELAY" = auto ]; then
    "$PY" -m solution.delay --data "$DATA_DIR" --work "$WORK_DIR" ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"}
    LABEL_DELAY="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["label_delay"])' "$RELEASE_WORK/delay.json")"
  fi
  DELAY_ARGS=(--set "label_delay=$LABEL_DELAY")
fi

RUNS="$MODELS${BASELINE:+,$BASELINE}"
THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
stage "4/6 training $RUNS, $FOLDS folds each, $JOBS at a time (logs: $RELEASE_WORK/runs/<model>/fold<k>/seed<s>/log.csv)"
for model in ${RUNS//,/ }; do
  for ((fold = 0; fold < FOLDS; fold++)); do echo "--model $model --fold $fold"; done
done | xargs -P "$JOBS" -L 1 "$PY" -m solution.train_fold --data "$DATA_DIR" --work "$WORK_DIR" \
    --device "$DEVICE" --threads "$THREADS" --log-every 10 ${DELAY_ARGS[@]+"${DELAY_ARGS[@]}"} \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}

stage "5/6 report (out-of-fold, epochs chosen without the held-out fold) and the blend of $MODELS"
"$PY" -m solution.report --data "$DATA_DIR" --work "$WORK_DIR" --runs "$RUNS"
"$PY" -m solution.ensemble --data "$DATA_DIR" --work "$WORK_DIR" --runs "$MODELS"
PRED="$RELEASE_WORK/predictions/test.$EXT"
HIDDEN="$DATA_DIR/private/test_labels.csv"; [ "$TRACK" = emi ] || HIDDEN="$DATA_DIR/private/VA_Estimation_Challenge/Test_Set"
if [ -e "$HIDDEN" ]; then
  echo "   the synthetic release keeps its test labels aside; the submitted predictions score:"
  "$PY" -m solution.evaluate --track "$TRACK" --pred "$PRED" --labels "$HIDDEN"
fi
NAME="${MODELS//,/+}-$(date +%Y%m%d-%H%M%S)"

stage "6/6 submission"
"$PY" -m solution.submit --track "$TRACK" --pred "$PRED" --data "$DATA_DIR" --out-dir "$SUBMISSIONS_DIR" --name "$NAME"
"$PY" -m solution.submit --check "$SUBMISSIONS_DIR/$NAME.zip" --data "$DATA_DIR" --track "$TRACK"
stage ""
echo "done: $SUBMISSIONS_DIR/$NAME.zip (all stages: $SECONDS s)"
