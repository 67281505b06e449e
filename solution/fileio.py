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
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A block that fails (a full disk, a write error) leaves `path` as it was, absent or with its
    previous complete content, and removes the temporary file. The error names `path`: the
    OS reports a failed write without a file name, and the temporary name means nothing to
    the user. (A killed process leaves its hidden `.<name>.XXXXXXXX<suffix>` temporary file
    behind; nothing reads it, and it can be deleted.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, tmp, Path(tmp)):
            exc.filename = str(path)  # "[Errno 28] No space left on device: '<path>'"
        else:  # e.g. torch.save's C++ writer: "RuntimeError: [enforce fail ...] unexpected pos"
            exc.add_note(f"while writing {path} (left as it was)")
        raise
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


def unreadable(path, what: str, exc: Exception, fix: str):
    """The DataError for a file of ours that cannot be read: cut short by a killed copy or a
    lost disk (never half-written by us: writes are atomic); it names the file and the remedy."""
    from solution.errors import DataError

    detail = str(exc).splitlines()[0] if str(exc) else ""
    return DataError(f"{path}: unreadable {what} ({type(exc).__name__}: {detail}), truncated or damaged; {fix}")


def read_json(path, what: str = "JSON file", fix: str = "delete it and run the stage that writes it again"):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: cut JSON, or cut inside a UTF-8 character
        raise unreadable(path, what, exc, fix) from exc


def listed(folder, pattern: str) -> list[Path]:
    """The files of `folder` matching `pattern`, sorted, without the hidden temporary files a
    killed write leaves behind (`.<name>.XXXXXXXX<suffix>`, which the pattern may match too)."""
    return sorted(p for p in Path(folder).glob(pattern) if not p.name.startswith("."))
