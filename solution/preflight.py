"""What a preflight check records (solution.inspect): the facts found and every problem with
the file that has it (Inspection), and what every track's checks share.

A problem is an `error` when a later stage would stop on it, or learn from something wrong,
a `warning` when the run goes on without that input, a `note` otherwise. A leaf module: the
tracks' checks (solution/tracks/*_preflight.py) import it, and it imports no track.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from solution.errors import DataError

LEVELS = ("error", "warning", "note")
SHOW = 5  # ids shown in a line of the summary; --json has them all


@dataclass
class Inspection:
    """What was found (`facts`, JSON-able) and every problem with the file that has it."""

    data: Path
    facts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def add(self, level: str, file, problem: str) -> None:
        file = "" if file is None else str(file)
        if file and problem.startswith(file + ": "):
            problem = problem[len(file) + 2:]
        self.problems.append({"level": level, "file": file, "problem": problem})

    def error_from(self, exc: Exception, fallback=None, level: str = "error") -> None:
        """A DataError (or MediaError) message 'FILE: problem' -> a problem naming FILE."""
        message = str(exc)
        head, sep, rest = message.partition(": ")
        if sep and ("/" in head or Path(head).exists()):
            self.add(level, head, rest)
        else:
            self.add(level, fallback, message)

    def count(self, level: str) -> int:
        return sum(p["level"] == level for p in self.problems)

    @property
    def ok(self) -> bool:
        return self.count("error") == 0

    def to_json(self) -> dict:
        return {"data": str(self.data), **self.facts, "problems": self.problems,
                "counts": {level: self.count(level) for level in LEVELS}, "ok": self.ok}


def rel(path, root: Path) -> str:
    if path is None:
        return ""
    path = Path(path)
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def some(ids) -> str:
    ids = list(ids)
    return ", ".join(map(str, ids[:SHOW])) + (f" (+{len(ids) - SHOW} more)" if len(ids) > SHOW else "")


def metadata_and_groups(found: Inspection, release, data: Path, labelled: list[str], folds: int | None) -> None:
    """metadata.csv's rows and subjects, and whether the labelled videos make groups enough
    for `folds` folds (by subject, else by the release's grouping)."""
    meta_path = data / "metadata.csv"
    fact = {"file": str(meta_path) if meta_path.is_file() else None}
    try:
        subjects = release.subjects()
        meta = release.metadata()
        if meta is not None:
            fact.update(rows=int(len(meta)), columns=[str(c) for c in meta.columns][:12])
        elif meta_path.is_file():
            found.add("note", meta_path, "no id column: the file is ignored")
    except DataError as exc:
        found.error_from(exc, meta_path)
        subjects = None
    if subjects is not None:
        missing = [k for k in labelled if k not in subjects]
        if missing:
            found.add("error", meta_path, f"no subject for {len(missing)} labelled video(s) ({some(missing)}): the "
                      "folds group videos by subject")
        groups = {subjects[k] for k in labelled if k in subjects}
        fact.update(subjects=len(groups), grouping="subject")
    else:
        if meta_path.is_file():
            found.add("note", meta_path, "no 'subject' column: each video is its own subject for the folds")
        groups = {release.group_of(k) for k in labelled}
        fact.update(subjects=None, grouping=release.grouping)
    fact["groups"] = len(groups)
    found.facts["metadata"] = fact
    if folds is not None and folds > 1 and labelled and len(groups) < folds:
        found.add("error", meta_path if subjects is not None else data,
                  f"only {len(groups)} group(s) ({fact['grouping']}) for {folds} folds: use fewer folds")


def probe_width(found: Inspection, paths: list, fact: dict) -> None:
    """The width of an organizer folder, from the first readable of its first three pickles
    (`fact`'s width, read and frames); an unreadable one is a warning naming it."""
    from solution.readers import load_feature_pickle

    for path in sorted(paths)[:3]:
        try:
            array = load_feature_pickle(path)
        except DataError as exc:
            found.error_from(exc, path, level="warning")
            continue
        fact.update(width=int(array.shape[1]), read=str(path), frames=int(array.shape[0]))
        return
