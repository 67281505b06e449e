#!/usr/bin/env bash
# From a release (the synthetic demo by default) to a validated leaderboard zip:
# demo data -> preflight check -> features -> folds -> every fold of every model -> report -> submission.
#
#   bash run_all.sh                      # EMI demo: dual-stage, Foal-Net and RCMA, blended (+ the linear baseline for the report)
#   DATA_DIR=/data/hume bash run_all.sh  # a real release in the official layout (features-only works too)
#   CONFIG=run.toml bash run_all.sh      # settings for every stage from one TOML file (see solution/config.py)
#   TRACK=va bash run_all.sh             # the VA demo (Aff-Wild2 layout): the same models, frame by frame
#   TRACK=expr bash run_all.sh           # the EXPR (or TRACK=au: AU) demo: one Aff-Wild2 release holding VA, EXPR and AU
#   PREDICT_DATA=/data/test bash run_all.sh   # later: a new release or test listing through the trained models
#
# Environment:
#   TRACK          emi | va | expr | au (default: the track of DATA_DIR, else emi; a release holding
#                  several Aff-Wild2 tracks is read as the first of va, expr, au it holds)
#   DATA_DIR       a release to read instead of generating the demo
#   WORK_DIR       intermediate files (default ./work); SUBMISSIONS_DIR (default ./submissions)
#   CONFIG         a TOML file with [features], [folds], [train], [model] tables, read by every stage
#   MODELS         comma list of models; the submission blends exactly these, with weights fit out of fold
#                  (default dual_stage,foalnet,rcma)
#   BASELINE       a model trained for the report only (default linear; empty to skip)
#   FOLDS          number of folds (default 5); JOBS: folds trained in parallel (default: cores)
#   GPUS           DEVICE=cuda: how many GPUs the JOBS parallel folds share, one a fold at a time
#                  (default: the GPUs found; CUDA_VISIBLE_DEVICES, when set, lists the ones to use)
#   SCHEME         grouped (default: K folds over train+valid) | official (train on train, score on valid)
#   LABEL_DELAY    VA: seconds the labels lag the media; auto (default) chooses each fold's own on that
#                  fold's training videos alone (solution.delay -> delay.json; solution.jobs --label-delays);
#                  a number (e.g. 0.4) trains every fold with it; pooled: every fold with the one delay
#                  chosen on all folds pooled (not nested: for measuring what nesting costs)
#   DEVICE         cpu | cuda (default cpu); SEED: demo generator seed (default 0)
#   FEATURE_ARGS   extra flags for solution.features, shell-quoted (e.g. "--visual 'hog,timm:resnet50?weights=/m/r50.safetensors'")
#   BLEND_ARGS     extra flags for solution.ensemble, shell-quoted (e.g. "--ways all")
#   TRAIN_ARGS     extra flags for every solution.train_fold run, shell-quoted
#                  (e.g. "--set epochs=30 --set 'streams={visual=[\"hog\"]}'"; model.NAME.KEY=V reaches one model only)
#   SUBMIT_FORMAT  tracks scored per frame: single (default: the ABAW6 single file) or per-video (a <video>.txt each)
#   TEST_LISTING   the test listing file, when the release's is not found by its usual names
#   VA_ANNOTATION_FIT  every Aff-Wild2 track (va, expr, au), despite the name: a training annotation whose
#                  line count differs from its video's frames by more than the larger of 5 frames and 2 %
#                  is an error (default: error); fit truncates it, or pads it with unannotated lines (VA -5,
#                  EXPR and AU -1), to the video's frames; drop leaves the video out of training (logged)
#   PREDICT_DATA   a release or test listing that arrived later: predict it with the models trained
#                  earlier with the same DATA_DIR/WORK_DIR (no training; solution.predict)
#   VENV_DIR       the virtual environment (default ./.venv); PYTHON: the interpreter that builds it
#
# The console is a progress report: one line per stage and its time, the feature stage's
# progress bar, one progress bar over the folds (python -m solution.jobs run) with a line per
# finished fold and its held-out score, then the blend, the submission and the report. Each
# fold's own output goes to WORK/<track>-<fingerprint>/runs/<model>/fold<k>/train.log (a failed
# fold's last lines are shown); WORK/<track>-<fingerprint>/stages.jsonl records every finished
# stage's time and command lines, with the settings, for the report (report/summary.md).
set -euo pipefail
cd "$(dirname "$0")"
source solution/venv.sh

if [ -z "${TRACK:-}" ] && [ -n "${DATA_DIR:-}" ] && [ -d "$DATA_DIR" ]; then
  # A release says its track (train_split.csv: EMI; an annotation folder such as VA_Estimation_Challenge:
  # that Aff-Wild2 track, the first of VA, EXPR, AU when it holds several); one that says
  # none is read as EMI, and the preflight check names what is missing.
  TRACK="$("$PY" -c 'import sys; from solution.layouts import detect_track; print(detect_track(sys.argv[1]))' \
    "$DATA_DIR" 2>/dev/null || echo emi)"
  echo "[run_all] $DATA_DIR: track $TRACK (set TRACK=emi|va|expr|au to choose)"
fi
TRACK="${TRACK:-emi}"
export TRACK  # every stage reads a release that holds several tracks (VA, EXPR, AU) as this one
WORK_DIR="${WORK_DIR:-work}"
SUBMISSIONS_DIR="${SUBMISSIONS_DIR:-submissions}"
MODELS="${MODELS:-dual_stage,foalnet,rcma}"
BASELINE="${BASELINE-linear}"
FOLDS="${FOLDS:-5}"
JOBS="${JOBS:-$(nproc)}"
DEVICE="${DEVICE:-cpu}"
SCHEME="${SCHEME:-grouped}"
# What the track says of itself (solution/tracks/): its prediction files' suffix, where a synthetic
# release keeps its test labels, whether solution.delay chooses its label delay (1 or 0).
TRACK_FACTS="$("$PY" -m solution.tracks "$TRACK")" || exit 2
read -r EXT HIDDEN_LABELS CHOOSES_DELAY <<< "$TRACK_FACTS"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a whole number of at least 1, got '$JOBS'" >&2; exit 2; }
[[ "$FOLDS" =~ ^[1-9][0-9]*$ ]] || { echo "FOLDS must be a whole number of at least 1, got '$FOLDS'" >&2; exit 2; }
case "$SCHEME" in grouped|official) ;; *) echo "SCHEME must be grouped or official, got '$SCHEME'" >&2; exit 2 ;; esac
if [ "$CHOOSES_DELAY" = 1 ] && [[ "${TRAIN_ARGS:-}" == *label_delay* ]]; then
  echo "TRAIN_ARGS sets label_delay: set LABEL_DELAY=<seconds> instead (run_all.sh gives each fold its delay)" >&2; exit 2
fi
case "${LABEL_DELAY:-auto}" in auto|pooled) ;; *) [[ "$LABEL_DELAY" =~ ^[0-9]*\.?[0-9]+$ ]] ||
  { echo "LABEL_DELAY must be auto, pooled or a number of seconds, got '$LABEL_DELAY'" >&2; exit 2; } ;; esac
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
# Each stage's wall time, printed when the next one starts (and at the end), for the timing table of
# bench/README.md, and recorded with its command lines in the stages file (JSON lines, rewritten atomically as
# each stage finishes: a stage that was announced but did not finish is not in it).
SECONDS=0 STAGE="" STAGE_START=0  # after the venv: install time is not counted
STAGES_FILE="" STAGE_LINES=() STAGE_COMMANDS=()
json() {  # json KIND ARGS...: one JSON line (settings KEY=VALUE...; config FILE; stage NAME SECONDS COMMAND...)
  "$PY" -c '
import json, shlex, sys
kind, args = sys.argv[1], sys.argv[2:]
if kind == "settings":
    print(json.dumps({"settings": dict(a.split("=", 1) for a in args)}))
elif kind == "config":
    print(json.dumps({"config": open(args[0], encoding="utf-8").read()}))
else:
    # Each command comes as its words, each ended by \x1f (see run), and goes out shell-quoted.
    commands = [shlex.join(c.split("\x1f")[:-1]) for c in args[2:]]
    print(json.dumps({"stage": args[0], "seconds": int(args[1]), "command": "\n".join(commands)}))
' "$@"
}
write_stages() {  # the stages file so far, atomically (temporary file, then mv)
  [ -n "$STAGES_FILE" ] || return 0
  mkdir -p "$(dirname "$STAGES_FILE")"
  printf '%s\n' "${STAGE_LINES[@]}" > "$STAGES_FILE.tmp.$$"
  mv -f "$STAGES_FILE.tmp.$$" "$STAGES_FILE"
}
run() {  # run CMD ARGS...: runs the command and records its exact command line for the stages file
  local words
  printf -v words '%s\x1f' "$@"
  STAGE_COMMANDS+=("$words")
  "$@"
}
stage() {  # stage "N/8 what": closes the running stage with its time, then announces the next
  local took=$((SECONDS - STAGE_START))
  if [ -n "$STAGE" ]; then
    echo "   (stage ${STAGE%% *} took $took s)"
    STAGE_LINES+=("$(json stage "$STAGE" "$took" ${STAGE_COMMANDS[@]+"${STAGE_COMMANDS[@]}"})")
    write_stages
  fi
  STAGE="$1" STAGE_START=$SECONDS STAGE_COMMANDS=()
  [ -z "$1" ] || echo "== $1"
}
# Model-loading progress bars of the Hugging Face libraries (the text model in every process)
# are noise on this console; the stages' own bars stay.
export HF_HUB_DISABLE_PROGRESS_BARS="${HF_HUB_DISABLE_PROGRESS_BARS:-1}"
split_args FEATURE_EXTRA "${FEATURE_ARGS:-}"
split_args TRAIN_EXTRA "${TRAIN_ARGS:-}"
split_args BLEND_EXTRA "${BLEND_ARGS:-}"

# ---- PREDICT_DATA: predict a release that arrived after training (no training) ----
# With the DATA_DIR and WORK_DIR of the training run: the new release's (or test listing's)
# features with the trained extractor settings, every fold's checkpoints, the saved blend, the zip.
if [ -n "${PREDICT_DATA:-}" ]; then
  [ -d "$PREDICT_DATA" ] || { echo "PREDICT_DATA=$PREDICT_DATA is not a folder" >&2; exit 2; }
  TRAIN_DATA="${DATA_DIR:-$WORK_DIR/demo-$TRACK}"
  RELEASE_WORK="$("$PY" -m solution.runs --data "$TRAIN_DATA" --work "$WORK_DIR")"
  PREDICT_BLEND=()  # the blend solution.ensemble saved; without one, MODELS with equal weights
  [ -f "$RELEASE_WORK/predictions/blend.json" ] || PREDICT_BLEND=(--runs "$MODELS")
  THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1
  NAME="predict-$(date +%Y%m%d-%H%M%S)"
  echo "== predicting $PREDICT_DATA with the models trained on $TRAIN_DATA ($RELEASE_WORK)"
  "$PY" -m solution.predict --train-data "$TRAIN_DATA" --data "$PREDICT_DATA" --work "$WORK_DIR" \
      --out-dir "$SUBMISSIONS_DIR" --name "$NAME" --device "$DEVICE" --threads "$THREADS" --workers "$JOBS" \
      ${PREDICT_BLEND[@]+"${PREDICT_BLEND[@]}"}
  "$PY" -m solution.submit --check "$SUBMISSIONS_DIR/$NAME.zip" --data "$PREDICT_DATA" --track "$TRACK"
  echo "done: $SUBMISSIONS_DIR/$NAME.zip"
  exit 0
fi
# ---- end of PREDICT_DATA ----

[ "$SCHEME" = grouped ] || FOLDS=1
if [ -z "${DATA_DIR:-}" ]; then
  DATA_DIR="$WORK_DIR/demo-$TRACK"
  stage "1/8 demo data ($TRACK) -> $DATA_DIR"
  run "$PY" -m solution.synth --track "$TRACK" --out "$DATA_DIR" --seed "${SEED:-0}"
else
  stage "1/8 using the release in $DATA_DIR"
  [ -d "$DATA_DIR" ] || { echo "DATA_DIR=$DATA_DIR is not a folder" >&2; exit 2; }
fi
[ "$CHOOSES_DELAY" = 0 ] || LABEL_DELAY="${LABEL_DELAY:-auto}"
STAGE_LINES=("$(json settings "TRACK=$TRACK" "DATA_DIR=$DATA_DIR" "WORK_DIR=$WORK_DIR" "MODELS=$MODELS" \
  "BASELINE=$BASELINE" "FOLDS=$FOLDS" "JOBS=$JOBS" "DEVICE=$DEVICE" "SCHEME=$SCHEME" "SEED=${SEED:-0}" \
  "FEATURE_ARGS=${FEATURE_ARGS:-}" "TRAIN_ARGS=${TRAIN_ARGS:-}" "BLEND_ARGS=${BLEND_ARGS:-}" "LABEL_DELAY=${LABEL_DELAY:-}" "CONFIG=${CONFIG:-}" \
  "VA_ANNOTATION_FIT=${VA_ANNOTATION_FIT:-}")")
[ -z "${CONFIG:-}" ] || STAGE_LINES+=("$(json config "$CONFIG")")

# Seconds before any long work: what the release holds, and every problem with the file that has
# it; an error (a problem a later stage would stop on, or learn from wrongly) stops the run here.
stage "2/8 preflight check of $DATA_DIR (python -m solution.inspect)"
run "$PY" -m solution.inspect "$DATA_DIR" --track "$TRACK" --folds "$FOLDS"
# The release's work folder (keyed by its labelled videos), known once the release is there.
RELEASE_WORK="$("$PY" -m solution.runs --data "$DATA_DIR" --work "$WORK_DIR")"
STAGES_FILE="$RELEASE_WORK/stages.jsonl"

stage "3/8 features -> $WORK_DIR/features"
run "$PY" -m solution.features --data "$DATA_DIR" --work "$WORK_DIR" --workers "$JOBS" --device "$DEVICE" \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} ${FEATURE_EXTRA[@]+"${FEATURE_EXTRA[@]}"}

stage "4/8 folds ($SCHEME: $FOLDS, grouped by subject where the release says who the subjects are) -> $RELEASE_WORK"
run "$PY" -m solution.folds --data "$DATA_DIR" --work "$WORK_DIR" --k "$FOLDS" --scheme "$SCHEME" \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"}
# Frame-level tracks: how late the annotators are. auto: each fold's own delay, chosen on its training
# videos alone (nested), given to its command by solution.jobs --label-delays; else one delay for every fold.
JOBS_DELAY_ARGS=() DELAY_ARGS=()
if [ "$CHOOSES_DELAY" = 1 ]; then
  if [ "$LABEL_DELAY" = auto ] || [ "$LABEL_DELAY" = pooled ]; then
    run "$PY" -m solution.delay --data "$DATA_DIR" --work "$WORK_DIR" ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"}
    JOBS_DELAY_ARGS=(--label-delays "$RELEASE_WORK/delay.json")
    if [ "$LABEL_DELAY" = pooled ]; then
      JOBS_DELAY_ARGS=()
      DELAY_ARGS=(--set "label_delay=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["label_delay"])' \
        "$RELEASE_WORK/delay.json")")
    fi
  else
    DELAY_ARGS=(--set "label_delay=$LABEL_DELAY")
  fi
fi

RUNS="$MODELS${BASELINE:+,$BASELINE}"
stage "5/8 training $RUNS, $FOLDS folds each, $JOBS at a time"
run "$PY" -m solution.jobs run --data "$DATA_DIR" --work "$WORK_DIR" --models "$RUNS" --folds "$FOLDS" \
    --jobs "$JOBS" --device "$DEVICE" ${JOBS_DELAY_ARGS[@]+"${JOBS_DELAY_ARGS[@]}"} \
    -- --log-every 10 ${DELAY_ARGS[@]+"${DELAY_ARGS[@]}"} \
    ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}

stage "6/8 the blend of $MODELS, its weights fit out of fold"
run "$PY" -m solution.ensemble --data "$DATA_DIR" --work "$WORK_DIR" --runs "$MODELS" ${BLEND_EXTRA[@]+"${BLEND_EXTRA[@]}"}
PRED="$RELEASE_WORK/predictions/test.$EXT"
HIDDEN="$DATA_DIR/$HIDDEN_LABELS"
if [ -e "$HIDDEN" ]; then
  echo "   the synthetic release keeps its test labels aside; the submitted predictions score:"
  run "$PY" -m solution.evaluate --track "$TRACK" --pred "$PRED" --labels "$HIDDEN"
fi
NAME="${MODELS//,/+}-$(date +%Y%m%d-%H%M%S)"

stage "7/8 submission"
run "$PY" -m solution.submit --track "$TRACK" --pred "$PRED" --data "$DATA_DIR" --out-dir "$SUBMISSIONS_DIR" --name "$NAME" \
    --format "${SUBMIT_FORMAT:-single}"
run "$PY" -m solution.submit --check "$SUBMISSIONS_DIR/$NAME.zip" --data "$DATA_DIR" --track "$TRACK"

# Last, so the stages file it is given holds every other stage; after the blend, so it shows it.
stage "8/8 report (out-of-fold, epochs chosen without the held-out fold; the blend; the stages)"
run "$PY" -m solution.report --data "$DATA_DIR" --work "$WORK_DIR" --runs "$RUNS" --stages "$STAGES_FILE" --out "$RELEASE_WORK/report"
stage ""
echo "done: $SUBMISSIONS_DIR/$NAME.zip (all stages: $SECONDS s)"
echo "report: $RELEASE_WORK/report/ (summary.md and plots; the stages and their commands: $STAGES_FILE)"
