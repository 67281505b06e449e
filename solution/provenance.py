"""Where a result came from: the code's commit, the machine, the time, and the CPU a process
has used. Written into every fold's metrics.json and every quality-panel record, so a number
can be traced to the code and machine that made it."""
from __future__ import annotations

import platform
import resource
import subprocess
import time
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def code_version() -> dict:
    """{"commit": HEAD's hash or None outside a git checkout, "dirty": uncommitted changes to
    tracked files}. Untracked files (work/, results) do not make a tree dirty."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_seconds(children_only: bool = False) -> float:
    """User and system CPU seconds of this process (every thread) and of its children that
    have ended (DataLoader workers, subprocesses waited for); or of those children alone."""
    usages = [resource.getrusage(resource.RUSAGE_CHILDREN)]
    if not children_only:
        usages.append(resource.getrusage(resource.RUSAGE_SELF))
    return sum(u.ru_utime + u.ru_stime for u in usages)


def now() -> str:
    """The time in UTC, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stamp() -> dict:
    """Commit, host and time: what a record carries to be traced."""
    return {**code_version(), "host": platform.node(), "at": now()}
