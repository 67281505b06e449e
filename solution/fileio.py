"""Atomic writes: every output goes to a temporary file in the same folder, then is renamed,
so an interrupted run never leaves a half-written file that a later stage would trust."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_pickle(path, obj) -> None:
    write_bytes(path, pickle.dumps(obj, protocol=4))


def write_csv(path, frame, **kwargs) -> None:
    """pandas DataFrame -> CSV, atomically. Floats keep 6 decimals unless told otherwise."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("float_format", "%.6f")
    kwargs.setdefault("lineterminator", "\n")
    write_text(path, frame.to_csv(**kwargs))
