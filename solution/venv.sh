# Sourced by run_all.sh and tests/run.sh (and by you: `source solution/venv.sh`): create or
# reuse the virtual environment and install requirements.txt into it whenever that file, or
# the Python version, changes. Sets and exports $PY; leaves no other variable behind. On a
# failure it returns non-zero and never closes the shell that sourced it.
# VENV_DIR overrides where the environment lives; PYTHON picks the interpreter that builds it.
_abaw_venv() {
  local root venv python version want stamp log
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="${VENV_DIR:-$root/.venv}"
  python="${PYTHON:-python3}"
  if ! version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    echo "[venv] cannot run '$python' (set PYTHON to a Python 3.11 interpreter)" >&2
    return 1
  fi
  if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$version" ]; then
    echo "[venv] $venv was built with another Python than $python ($version): rebuilding it"
    "$python" -m venv --clear "$venv" || { echo "[venv] could not rebuild $venv" >&2; return 1; }
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "[venv] creating $venv with $python ($version)"
    "$python" -m venv "$venv" || { echo "[venv] could not create $venv" >&2; return 1; }
  fi
  want="$( (echo "python $version"; cat "$root/requirements.txt" "$root/solution/requirements-nodeps.txt") | sha256sum | cut -d' ' -f1)"
  stamp="$venv/.requirements.sha256"
  log="$venv/pip-install.log"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[venv] installing requirements.txt into $venv (a few minutes the first time; log: $log)"
    # facenet-pytorch pins torch<2.3 in its metadata yet runs on the torch we pin, so it goes in
    # without dependencies; requirements.txt carries what it imports.
    if "$venv/bin/python" -m pip install --disable-pip-version-check -r "$root/requirements.txt" > "$log" 2>&1 &&
       "$venv/bin/python" -m pip install --disable-pip-version-check --no-deps \
         -r "$root/solution/requirements-nodeps.txt" >> "$log" 2>&1; then
      echo "$want" > "$stamp"
    else
      grep -v "is neither a file nor a directory" "$log" | tail -n 30 >&2
      echo "[venv] pip install failed; full log: $log" >&2
      return 1
    fi
  fi
  PY="$venv/bin/python"
  export PY
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
  # Never reach for a model hub: weights come from local paths only.
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
}
if _abaw_venv; then unset -f _abaw_venv; else unset -f _abaw_venv; return 1 2>/dev/null || exit 1; fi
