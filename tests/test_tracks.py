"""The track registry (solution/tracks/): the contract every unit fulfils, and a check over the
source that no other module branches on a track's name.

The rule of test_no_module_branches_on_a_track_name, over every module of solution/ but the
track units themselves (solution/tracks/) and the synthetic release families' generators
(solution/synth/emi.py, solution/synth/affwild2.py and its affwild2_classes.py):
  - no string literal (docstrings aside) is a track's or a release family's name ("emi",
    "va", "affwild2"): `track.name == "va"`, `{"emi": ...}[name]` or `choices=["emi", "va"]`
    all have one;
  - no identifier has a track's or a family's name as one of its words (split at `_` and at
    case changes): EMI, VA, VA_UNANNOTATED, EmiRelease, read_va_annotation, `is EMI` ... are
    each a unit's own, so code that uses one is code about that unit. Import statements are
    the exception (a module may re-export a unit's names under their older home, e.g.
    solution.layouts), and so are the names in ALLOWED, each with its reason.
Generic code asks the track instead (solution/tracks/base.py: Track and its methods).
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solution.metrics import METRICS
from solution import tracks
from solution.errors import DataError
from solution.tracks import EMI, VA, Track, detect_track, get_track, open_release, track_names
from solution.tracks.base import TRACKS

REPO = Path(__file__).resolve().parent.parent
UNITS = {REPO / "solution" / "tracks"}
FAMILY_GENERATORS = {REPO / "solution" / "synth" / "emi.py", REPO / "solution" / "synth" / "affwild2.py",
                     REPO / "solution" / "synth" / "affwild2_classes.py"}  # affwild2.py's world of EXPR and AU
# Identifiers with a track's word that are not about that track, and why they stay.
ALLOWED = {
    "va_format": "the submission form option (--va-format, make_submission's keyword), named before the other "
                 "tracks; it is passed to the track as its form, never compared with a track",
    "va_timeseries": "the frame-level time-series plot (plots.va_timeseries, va_timeseries.png), drawn from "
                     "track.targets; its file name is an output users know",
}


def _words(identifier: str) -> set[str]:
    return set(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier).lower().split("_"))


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def track_name_uses(path: Path, names: set[str]) -> list[str]:
    """Every place in the module that names a track or family: 'line: what'."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings, imports, found = _docstrings(tree), set(), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(id(alias) for alias in node.names)
    for node in ast.walk(tree):
        if id(node) in imports:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value.strip().lower() in names:
                found.append(f"{node.lineno}: the string {node.value!r}")
            continue
        identifier = {ast.Name: "id", ast.Attribute: "attr", ast.FunctionDef: "name", ast.AsyncFunctionDef: "name",
                      ast.ClassDef: "name", ast.arg: "arg", ast.keyword: "arg", ast.alias: "asname"}.get(type(node))
        value = getattr(node, identifier, None) if identifier else None
        if value and value not in ALLOWED and _words(value) & names:
            found.append(f"{getattr(node, 'lineno', 0)}: the name {value}")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def generic_modules() -> list[Path]:
    out = []
    for path in sorted((REPO / "solution").rglob("*.py")):
        if path in FAMILY_GENERATORS or any(unit in path.parents for unit in UNITS):
            continue
        out.append(path)
    return out


def test_no_module_branches_on_a_track_name():
    names = {t.name for t in TRACKS.values()} | {t.family for t in TRACKS.values()}
    assert names >= {"emi", "va", "affwild2"}
    problems = {str(p.relative_to(REPO)): uses for p in generic_modules() if (uses := track_name_uses(p, names))}
    assert not problems, "modules that name a track (ask the track instead, solution/tracks/base.py):\n" + "\n".join(
        f"  {path}: {'; '.join(uses)}" for path, uses in problems.items())


def test_the_rule_catches_what_it_is_for(tmp_path):
    names = {"emi", "va", "affwild2"}
    source = tmp_path / "branchy.py"
    source.write_text('"""A docstring naming emi is prose."""\n'
                      "from solution.tracks import EMI, VA_UNANNOTATED  # a re-export is no branch\n"
                      "def f(track, x):\n"
                      '    if track.name == "va":\n'
                      "        return x is EMI\n"
                      '    return {"emi": 1}.get(track.name, VA_UNANNOTATED)\n'
                      "def read_va_annotation(va_format):\n"
                      "    return va_format\n")
    uses = track_name_uses(source, names)
    assert [u.split(":")[0] for u in uses] == ["4", "5", "6", "6", "7"], uses
    assert any("'va'" in u for u in uses) and any("EMI" in u for u in uses) and any("VA_UNANNOTATED" in u for u in uses)


def test_registry_hands_out_the_units():
    assert track_names() == ["emi", "va", "expr", "au"]  # registration order is detection order
    assert get_track("emi") is EMI and get_track("VA") is VA and tracks.TRACKS["va"] is VA
    with pytest.raises(ValueError, match=r"unknown track 'ce'; choose one of \['au', 'emi', 'expr', 'va'\]"):
        get_track("ce")


def test_every_unit_fulfils_the_contract():
    abstract = [name for name, value in vars(Track).items()
                if callable(value) and not name.startswith("_") and _raises_not_implemented(value)]
    assert {"looks_like", "open_release", "release_videos", "write_predictions", "read_predictions", "evaluate",
            "write_mean_predictions", "hidden_test_labels", "submission_members", "check_members", "claims",
            "inspect", "summary_split", "summary_listing"} <= set(abstract)
    for track in TRACKS.values():
        missing = [name for name in abstract if getattr(type(track), name) is getattr(Track, name)]
        assert not missing, f"track {track.name} does not implement {missing}"
        assert track.metric in METRICS and track.level in ("video", "frame") and track.dim == len(track.targets)
        assert track.kind in ("regression", "multiclass", "multilabel")
        assert track.family and track.layout and track.detect_hint and track.prediction_suffix and track.hidden_test
        assert track.submission_formats
        assert (REPO / "solution" / "synth" / f"{track.family}.py").is_file()


def _raises_not_implemented(function) -> bool:
    tree = ast.parse(Path(sys.modules[function.__module__].__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function.__name__ and node.lineno == \
                function.__code__.co_firstlineno:
            return any(isinstance(n, ast.Raise) and isinstance(n.exc, ast.Name) and n.exc.id == "NotImplementedError"
                       for n in ast.walk(node))
    return False


def test_annotated_rows_follow_the_tracks_mark():
    values = np.array([[0.1, -0.2], [-5.0, -5.0], [1.0, 0.0]], np.float32)
    assert VA.annotated(values).tolist() == [True, False, True]
    assert EMI.annotated(np.zeros((4, 6))).tolist() == [True] * 4  # every EMI label is one
    assert VA.rescalable and not EMI.rescalable
    assert VA.chooses_label_delay and not EMI.chooses_label_delay


def test_detect_track_and_open_release(emi_data, va_data, tmp_path):
    assert detect_track(emi_data) == "emi" and detect_track(va_data) == "va"
    assert type(open_release("emi", emi_data)).__name__ == "EmiRelease"
    release = open_release(VA, va_data)
    assert release.track is VA and release.grouping == "recording" and release.group_of("a_left") == "a"
    assert release.key_column == "video" and release.test_listing_problem() is None
    emi = EMI.open_release(emi_data)
    assert emi.grouping == "video" and emi.key_of(42) == "00042" and emi.key_of("42.mp4") == "00042"
    assert emi.key_of("x") is None
    key = emi.test_keys()[0]
    assert emi.source(key, "test") == next(s for s in EMI.release_videos(emi_data) if s.vid == key)
    with pytest.raises(DataError, match="neither an EMI release .train_split.csv. nor a VA release .a "
                                        "VA_Estimation_Challenge annotation folder."):
        detect_track(tmp_path)


def test_run_all_asks_the_track():
    def ask(name):
        return subprocess.run([sys.executable, "-m", "solution.tracks", name], cwd=REPO, capture_output=True, text=True)

    assert ask("emi").stdout.split() == ["csv", "private/test_labels.csv", "0"]
    assert ask("va").stdout.split() == ["txt", "private/VA_Estimation_Challenge/Test_Set", "1"]
    done = ask("xyz")
    assert ask("expr").stdout.split() == ["txt", "private/EXPR_Recognition_Challenge/Test_Set", "0"]
    assert done.returncode == 2 and "TRACK must be one of emi, va, expr, au, got 'xyz'" in done.stderr
