"""Submissions: built ones validate and read back; each kind of breakage is reported."""
import zipfile

import numpy as np
import pandas as pd
import pytest

from solution import submission, submit
from solution.errors import DataError
from solution.layouts import EmiRelease, VaRelease
from solution.predictions import read_emi_predictions, read_va_predictions, write_emi_predictions
from solution.tracks import EMI_TARGETS


def emi_predictions(emi_data, rng=np.random.default_rng(0)):
    ids = EmiRelease(emi_data).test_ids()
    return pd.DataFrame(rng.uniform(-0.2, 1.2, (len(ids), 6)), index=pd.Index(ids[::-1]), columns=list(EMI_TARGETS))


def test_emi_submission_is_sorted_clipped_and_reads_back(emi_data, tmp_path):
    pred = emi_predictions(emi_data)
    write_emi_predictions(tmp_path / "p.csv", pred, clip=False)
    path = submission.make_submission("emi", tmp_path / "p.csv", emi_data, tmp_path / "subs", name="run1")
    assert path == tmp_path / "subs" / "run1.zip"
    assert submission.check_zip(path, emi_data) == []
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["predictions.csv"]
        archive.extractall(tmp_path / "x")
    text = (tmp_path / "x" / "predictions.csv").read_text()
    assert text.splitlines()[0] == "Filename," + ",".join(EMI_TARGETS)
    back = read_emi_predictions(tmp_path / "x" / "predictions.csv")
    assert back.index.tolist() == sorted(pred.index)
    np.testing.assert_allclose(back.to_numpy(), pred.sort_index().clip(0, 1).to_numpy(), atol=1e-6)
    assert all(len(line.split(",")[0]) == 5 for line in text.splitlines()[1:])


def test_emi_submission_missing_id_is_refused(emi_data, tmp_path):
    pred = emi_predictions(emi_data).iloc[1:]
    write_emi_predictions(tmp_path / "p.csv", pred)
    with pytest.raises(submission.DataError, match="no prediction for 1 test id"):
        submission.make_submission("emi", tmp_path / "p.csv", emi_data, tmp_path / "subs")
    assert not list((tmp_path / "subs").glob("*.zip")) if (tmp_path / "subs").exists() else True


def _good_emi_lines(emi_data):
    ids = EmiRelease(emi_data).test_ids()
    return [submission.EMI_HEADER] + [f"{i:05d}," + ",".join(["0.5"] * 6) for i in ids]


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


EMI_BREAKAGES = {
    "missing id": (lambda L: L[:1] + L[2:], "missing test id (1)"),
    "duplicate id": (lambda L: L + [L[1]], "duplicate id (1)"),
    "wrong header": (lambda L: ["id," + L[0].split(",", 1)[1]] + L[1:], "header must be"),
    "NaN": (lambda L: L[:1] + [L[1].rsplit(",", 1)[0] + ",nan"] + L[2:], "NaN, empty or non-numeric value (1)"),
    "empty value": (lambda L: L[:1] + [L[1].rsplit(",", 1)[0] + ","] + L[2:], "NaN, empty or non-numeric value (1)"),
    "out of range": (lambda L: L[:1] + [L[1].rsplit(",", 1)[0] + ",1.7"] + L[2:], "value outside [0, 1] (1)"),
    "unknown id": (lambda L: L + ["99999," + ",".join(["0.5"] * 6)], "id not in the test listing (1): 99999"),
    "unsorted": (lambda L: L[:1] + L[1:][::-1], "not sorted"),
}


@pytest.mark.parametrize("kind", list(EMI_BREAKAGES))
def test_emi_check_reports_each_problem(emi_data, tmp_path, kind):
    breaker, message = EMI_BREAKAGES[kind]
    lines = breaker(_good_emi_lines(emi_data))
    path = _zip(tmp_path / "bad.zip", {"predictions.csv": "\n".join(lines) + "\n"})
    problems = submission.check_zip(path, emi_data)
    assert any(message in p for p in problems), problems
    assert submit.main(["--check", str(path), "--data", str(emi_data)]) == 1


def test_emi_check_zip_level_problems(emi_data, tmp_path):
    good = "\n".join(_good_emi_lines(emi_data)) + "\n"
    assert submission.check_zip(_zip(tmp_path / "ok.zip", {"x.csv": good}), emi_data) == []
    two = submission.check_zip(_zip(tmp_path / "two.zip", {"a.csv": good, "b.csv": good}), emi_data, "emi")
    assert "exactly one .csv" in two[0]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert "not a zip file" in submission.check_zip(tmp_path / "junk.zip", emi_data)[0]
    assert "file not found" in submission.check_zip(tmp_path / "none.zip", emi_data)[0]


def _va_predictions(va_data, shorten=0):
    counts = VaRelease(va_data).test_frame_counts()
    rng = np.random.default_rng(1)
    return {v: rng.uniform(-1.3, 1.3, (n - shorten, 2)) for v, n in counts.items()}, counts


@pytest.mark.parametrize("form", ["single", "per-video"])
def test_va_submission_both_forms_read_back(va_data, tmp_path, form, capsys):
    from solution.predictions import write_va_folder

    pred, counts = _va_predictions(va_data, shorten=3)
    write_va_folder(tmp_path / "pred", pred)
    path = submission.make_submission("va", tmp_path / "pred", va_data, tmp_path / "subs", name=form, va_format=form)
    note = capsys.readouterr().out
    assert "padded with their last value or cut" in note and all(f"{v} (-3)" in note for v in counts)
    assert submission.check_zip(path, va_data) == []
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "x")
    back = read_va_predictions(tmp_path / "x" / "predictions.txt" if form == "single" else tmp_path / "x")
    assert {v: len(a) for v, a in back.items()} == counts
    for video, values in pred.items():
        np.testing.assert_allclose(back[video][: len(values)], np.clip(values, -1, 1), atol=1e-5)
        np.testing.assert_allclose(back[video][len(values):], np.clip(values[-1:], -1, 1).repeat(3, 0), atol=1e-5)


def test_va_frame_count_beyond_tolerance_stops_naming_the_video(va_data, tmp_path, capsys):
    """Within --frame-tolerance a video is padded or cut (and listed); beyond it the submission
    stops and names every such video, since the predictions follow another fps or video."""
    from solution.predictions import write_va_single

    pred, counts = _va_predictions(va_data)
    far, near = sorted(counts)[:2]
    pred[far] = np.concatenate([pred[far], pred[far][:30]])       # 30 frames too many
    pred[near] = pred[near][:-4]                                   # 4 too few
    write_va_single(tmp_path / "pred.txt", pred)
    with pytest.raises(DataError, match=f"(?s)more than 10 frames.*{far}: {counts[far] + 30} predicted frames"):
        submission.make_submission("va", tmp_path / "pred.txt", va_data, tmp_path / "subs", name="x")
    assert not (tmp_path / "subs" / "x.zip").exists()
    code = submit.main(["--track", "va", "--pred", str(tmp_path / "pred.txt"), "--data", str(va_data),
                        "--out-dir", str(tmp_path / "subs"), "--name", "y", "--frame-tolerance", "30"])
    assert code == 0 and f"{far} (+30)" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "subs" / "y.zip") as archive:
        archive.extractall(tmp_path / "y")
    back = read_va_predictions(tmp_path / "y" / "predictions.txt")
    assert {v: len(a) for v, a in back.items()} == counts
    np.testing.assert_allclose(back[near][-4:], np.clip(pred[near][-1:], -1, 1).repeat(4, 0), atol=1e-5)


def _good_va_single(va_data):
    counts = VaRelease(va_data).test_frame_counts()
    return ["image_location,valence,arousal"] + [f"{v}/{i:05d}.jpg,0.1,-0.2" for v, n in counts.items()
                                                 for i in range(1, n + 1)]


VA_BREAKAGES = {
    "wrong frame count": (lambda L: L[:-1], "the test listing says 1.."),
    "duplicate frame": (lambda L: L + [L[1]], "duplicate image_location (1)"),
    "wrong header": (lambda L: ["location,valence,arousal"] + L[1:], "header must be"),
    "NaN": (lambda L: L[:1] + [L[1].rsplit(",", 1)[0] + ",nan"] + L[2:], "NaN, empty or non-numeric value (1)"),
    "out of range": (lambda L: L[:1] + [L[1].rsplit(",", 1)[0] + ",-3"] + L[2:], "value outside [-1, 1] (1)"),
    "missing video": (lambda L: L[:1] + [x for x in L[1:] if not x.startswith(L[1].split("/")[0] + "/")],
                      "missing test video (1)"),
    "bad location": (lambda L: L[:1] + ["frame1,0.1,0.1"] + L[2:], "image_location not like"),
}


@pytest.mark.parametrize("kind", list(VA_BREAKAGES))
def test_va_single_check_reports_each_problem(va_data, tmp_path, kind):
    breaker, message = VA_BREAKAGES[kind]
    path = _zip(tmp_path / "bad.zip", {"predictions.txt": "\n".join(breaker(_good_va_single(va_data))) + "\n"})
    problems = submission.check_zip(path, va_data)
    assert any(message in p for p in problems), problems


def test_va_per_video_check(va_data, tmp_path):
    counts = VaRelease(va_data).test_frame_counts()
    videos = sorted(counts)
    members = {f"{v}.txt": "valence,arousal\n" + "0.1,0.2\n" * counts[v] for v in videos}
    assert submission.check_zip(_zip(tmp_path / "ok.zip", members), va_data) == []
    broken = dict(members)
    broken[f"{videos[0]}.txt"] = "valence,arousal\n" + "0.1,0.2\n" * (counts[videos[0]] - 2)
    broken["intruder.txt"] = "valence,arousal\n0,0\n"
    problems = submission.check_zip(_zip(tmp_path / "bad.zip", broken), va_data)
    assert any(f"{counts[videos[0]] - 2} frames, the test listing says {counts[videos[0]]}" in p for p in problems)
    assert any("not in the test listing (1): intruder" in p for p in problems)
    if len(videos) > 1:
        del broken[f"{videos[1]}.txt"]
        assert any("missing <video>.txt" in p for p in submission.check_zip(_zip(tmp_path / "b2.zip", broken), va_data))


def test_submit_cli_builds_and_checks(emi_data, tmp_path, capsys):
    write_emi_predictions(tmp_path / "p.csv", emi_predictions(emi_data))
    assert submit.main(["--track", "emi", "--pred", str(tmp_path / "p.csv"), "--data", str(emi_data),
                        "--out-dir", str(tmp_path), "--name", "cli"]) == 0
    assert submit.main(["--check", str(tmp_path / "cli.zip"), "--data", str(emi_data)]) == 0
    assert "valid" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("Filename,Joy\n1,0.5\n")
    assert submit.main(["--track", "emi", "--pred", str(tmp_path / "bad.csv"), "--data", str(emi_data),
                        "--out-dir", str(tmp_path)]) == 2
    assert "bad.csv: EMI prediction file is missing column(s)" in capsys.readouterr().err


# ------------------------------------------------------------------ the ledger

def _fitted_blend(emi_data):
    """A blend as solution.ensemble saves it (solution.blend's own functions), of two stand-in
    runs on the small release's labelled videos, held out in two parts."""
    from solution.blend import choose, compare_blends, single_scores, stack_predictions, to_blend
    from solution.tracks import EMI

    release = EmiRelease(emi_data)
    keys = sorted(release.labelled_keys())
    targets = {k: release.video_targets(k) for k in keys}
    rng = np.random.default_rng(3)
    preds = {run: {k: np.clip(targets[k] + rng.normal(0, noise, 6), 0, 1) for k in keys}
             for run, noise in (("rcma", 0.1), ("linear", 0.3))}
    stack = stack_predictions(EMI, preds, targets, {k: i % 2 for i, k in enumerate(keys)})
    fits = compare_blends(EMI, stack)
    chosen = choose(fits)
    return to_blend(EMI, list(preds), chosen, fits, single_scores(EMI, stack), len(chosen.by_part))


def _read_ledger_csv(path):
    import csv

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_ledger_lists_every_zip_written_through_the_cli(emi_data, tmp_path, capsys):
    """Two zips through the CLI: one of a saved blend's test predictions (in the release's
    work folder, where solution.ensemble writes them), one of a bare prediction file. The
    ledger beside them has a row each, with what each was made of; --ledger prints them."""
    import hashlib
    import re
    from datetime import datetime, timedelta, timezone

    from solution.blend import write_blend
    from solution.runs import release_work

    rw = release_work(tmp_path / "work", emi_data)
    blend = _fitted_blend(emi_data)
    write_blend(rw.predictions / "blend.json", blend)
    write_emi_predictions(rw.predictions / "test.csv", emi_predictions(emi_data))
    write_emi_predictions(tmp_path / "bare.csv", emi_predictions(emi_data))
    subs = tmp_path / "subs"
    for name, pred in (("blended", rw.predictions / "test.csv"), ("bare", tmp_path / "bare.csv")):
        assert submit.main(["--track", "emi", "--pred", str(pred), "--data", str(emi_data),
                            "--out-dir", str(subs), "--name", name]) == 0
    assert f"added bare.zip to {subs / 'ledger.csv'}" in capsys.readouterr().out

    columns, rows = _read_ledger_csv(subs / "ledger.csv")
    assert tuple(columns) == submission.LEDGER_COLUMNS
    assert [r["zip"] for r in rows] == ["blended.zip", "bare.zip"] and {r["track"] for r in rows} == {"emi"}
    assert rows == submission.read_ledger(subs / "ledger.csv")
    fingerprint = rw.root.name.split("-", 1)[1]
    for row in rows:
        when = datetime.fromisoformat(row["time"])
        assert when.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - when) < timedelta(minutes=10)
        assert row["zip_sha256"] == hashlib.sha256((subs / row["zip"]).read_bytes()).hexdigest()
        assert row["fingerprint"] == fingerprint  # bare: that of --data, as release_work names its folder
        assert row["commit"] == submission.git_commit() and re.fullmatch(r"([0-9a-f]{4,}(-dirty)?)?", row["commit"])
    blended, bare = rows
    chosen = blend["scores"]["chosen"]
    assert blended["runs"] == "rcma+linear" and blended["blend"] == chosen and blended["metric"] == "pearson"
    assert float(blended["honest_oof"]) == pytest.approx(blend["scores"]["blends"][chosen]["honest"], abs=1e-6)
    assert blended["settings_digest"] == hashlib.sha256((rw.predictions / "blend.json").read_bytes()).hexdigest()
    assert blended["pred"] == str((rw.predictions / "test.csv").resolve())
    assert bare["runs"] == bare["blend"] == bare["honest_oof"] == bare["settings_digest"] == ""

    assert submit.main(["--ledger", "--out-dir", str(subs)]) == 0
    out = capsys.readouterr().out
    assert f"{subs / 'ledger.csv'}: 2 zip(s)" in out
    table = out.splitlines()[1:]
    assert table[0].split()[:5] == ["#", "time", "(UTC)", "track", "zip"] and len(table) == 4
    assert "blended.zip" in table[2] and "rcma+linear" in table[2] and blended["honest_oof"] in table[2]
    assert "bare.zip" in table[3] and table[2].rstrip().endswith("ok")
    (subs / "blended.zip").unlink()
    assert submit.main(["--ledger", "--out-dir", str(subs), "--track", "emi"]) == 0
    assert "missing" in capsys.readouterr().out.splitlines()[3]


LEDGER_DAMAGE = {
    "cut short": lambda b: b[: len(b) - 7],
    "empty": lambda b: b"",
    "other header": lambda b: b.replace(b"time,track,zip", b"when,track,zip", 1),
    "row with a missing field": lambda b: b.replace(b",emi,", b",", 1),
    "not UTF-8": lambda b: b.replace(b"emi", b"\xff\xfe", 1),
}


@pytest.mark.parametrize("damage", list(LEDGER_DAMAGE))
def test_damaged_ledger_stops_a_submission_naming_it(emi_data, tmp_path, capsys, damage):
    """A damaged ledger is an error naming it (never set aside or rewritten: it is the record
    of what was submitted), raised before a zip is written, so no zip escapes the ledger."""
    write_emi_predictions(tmp_path / "p.csv", emi_predictions(emi_data))
    args = ["--track", "emi", "--pred", str(tmp_path / "p.csv"), "--data", str(emi_data), "--out-dir", str(tmp_path)]
    assert submit.main(args + ["--name", "first"]) == 0
    ledger = tmp_path / "ledger.csv"
    broken = LEDGER_DAMAGE[damage](ledger.read_bytes())
    ledger.write_bytes(broken)
    capsys.readouterr()
    assert submit.main(args + ["--name", "second"]) == 2
    err = capsys.readouterr().err
    assert f"{ledger}: unreadable submission ledger" in err and "move it away to start a new ledger" in err
    assert not (tmp_path / "second.zip").exists() and ledger.read_bytes() == broken
    assert submit.main(["--ledger", "--out-dir", str(tmp_path)]) == 2
    assert f"{ledger}: unreadable submission ledger" in capsys.readouterr().err


def test_a_zip_whose_ledger_row_cannot_be_written_is_removed(emi_data, tmp_path, monkeypatch):
    """Every zip in the folder is in its ledger: when the row cannot be written (a full disk),
    the new zip goes too, and the error names the ledger."""
    from solution import fileio

    write_emi_predictions(tmp_path / "p.csv", emi_predictions(emi_data))

    def full_disk(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "write_text", full_disk)
    with pytest.raises(OSError, match="ledger.csv") as info:
        submission.make_submission("emi", tmp_path / "p.csv", emi_data, tmp_path / "subs", name="lost")
    assert not (tmp_path / "subs" / "lost.zip").exists() and not (tmp_path / "subs" / "ledger.csv").exists()
    assert any("lost.zip was removed" in note for note in info.value.__notes__)


def test_ledger_row_of_solution_predict_and_of_a_smoothed_blend(emi_data, tmp_path):
    """solution.predict's predictions: the blend comes from predict.json beside them (here
    --runs, equal weights: no honest score), the fingerprint from the work folder above. A
    frame-level blend's honest score is that of the smoothed blend."""
    import json

    from solution.predict import equal_blend
    from solution.runs import release_work
    from solution.tracks import EMI

    rw = release_work(tmp_path / "work", emi_data)
    folder = rw.root / "predict" / "new-0123abcd"
    blend = equal_blend(EMI, ["rcma", "linear"])
    (folder).mkdir(parents=True)
    (folder / "predict.json").write_text(json.dumps({"blend": blend, "train_data": str(emi_data)}))
    write_emi_predictions(folder / "test.csv", emi_predictions(emi_data))
    path = submission.make_submission("emi", folder / "test.csv", emi_data, tmp_path / "subs", name="new")
    (row,) = submission.read_ledger(tmp_path / "subs" / "ledger.csv")
    assert row["zip"] == path.name and row["fingerprint"] == rw.root.name.split("-", 1)[1]
    assert row["runs"] == "rcma+linear" and row["blend"] == "equal (not fitted)" and row["honest_oof"] == ""
    assert len(row["settings_digest"]) == 64

    smoothed = {"runs": ["a", "b"], "smooth_seconds": 0.4, "method": "fitted",
                "scores": {"metric": "ccc", "chosen": "shared+rescale", "smoothing": {"honest": 0.5},
                           "blends": {"shared+rescale": {"honest": 0.45}}}}
    assert submission.blend_way(smoothed) == "shared+rescale, smoothed 0.4 s"
    assert submission.honest_score(smoothed) == ("ccc", "0.500000")
