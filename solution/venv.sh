# Sourced by run_all.sh and tests/run.sh: create or reuse the virtual environment and
# install requirements.txt into it whenever that file changes. Sets $PY.
# VENV_DIR overrides where the environment lives; PYTHON picks the interpreter that builds it.
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$_repo_root/.venv}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
  echo "[venv] creating $VENV_DIR with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv "$VENV_DIR" || { echo "[venv] could not create $VENV_DIR" >&2; exit 1; }
fi
_want="$(cat "$_repo_root/requirements.txt" "$_repo_root/solution/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
_stamp="$VENV_DIR/.requirements.sha256"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "[venv] installing requirements.txt into $VENV_DIR (a few minutes the first time; log: $VENV_DIR/pip-install.log)"
  # facenet-pytorch pins torch<2.3 in its metadata yet runs on the torch we pin, so it goes in
  # without dependencies; requirements.txt carries what it imports.
  if "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check -r "$_repo_root/requirements.txt" \
      > "$VENV_DIR/pip-install.log" 2>&1 &&
     "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-deps \
      -r "$_repo_root/solution/requirements-nodeps.txt" >> "$VENV_DIR/pip-install.log" 2>&1; then
    echo "$_want" > "$_stamp"
  else
    grep -v "is neither a file nor a directory" "$VENV_DIR/pip-install.log" | tail -n 30 >&2
    echo "[venv] pip install failed; full log: $VENV_DIR/pip-install.log" >&2
    exit 1
  fi
fi
PY="$VENV_DIR/bin/python"
export PYTHONPATH="$_repo_root${PYTHONPATH:+:$PYTHONPATH}"
# Never reach for a model hub: weights come from local paths only.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
