"""Submissions: built ones validate and read back; each kind of breakage is reported."""
import zipfile

import numpy as np
import pandas as pd
import pytest

from solution import submit
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
    path = submit.make_submission("emi", tmp_path / "p.csv", emi_data, tmp_path / "subs", name="run1")
    assert path == tmp_path / "subs" / "run1.zip"
    assert submit.check_zip(path, emi_data) == []
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
    with pytest.raises(submit.DataError, match="no prediction for 1 test id"):
        submit.make_submission("emi", tmp_path / "p.csv", emi_data, tmp_path / "subs")
    assert not list((tmp_path / "subs").glob("*.zip")) if (tmp_path / "subs").exists() else True


def _good_emi_lines(emi_data):
    ids = EmiRelease(emi_data).test_ids()
    return [submit.EMI_HEADER] + [f"{i:05d}," + ",".join(["0.5"] * 6) for i in ids]


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
    problems = submit.check_zip(path, emi_data)
    assert any(message in p for p in problems), problems
    assert submit.main(["--check", str(path), "--data", str(emi_data)]) == 1


def test_emi_check_zip_level_problems(emi_data, tmp_path):
    good = "\n".join(_good_emi_lines(emi_data)) + "\n"
    assert submit.check_zip(_zip(tmp_path / "ok.zip", {"x.csv": good}), emi_data) == []
    two = submit.check_zip(_zip(tmp_path / "two.zip", {"a.csv": good, "b.csv": good}), emi_data, "emi")
    assert "exactly one .csv" in two[0]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert "not a zip file" in submit.check_zip(tmp_path / "junk.zip", emi_data)[0]
    assert "file not found" in submit.check_zip(tmp_path / "none.zip", emi_data)[0]


def _va_predictions(va_data, shorten=0):
    counts = VaRelease(va_data).test_frame_counts()
    rng = np.random.default_rng(1)
    return {v: rng.uniform(-1.3, 1.3, (n - shorten, 2)) for v, n in counts.items()}, counts


@pytest.mark.parametrize("form", ["single", "per-video"])
def test_va_submission_both_forms_read_back(va_data, tmp_path, form, capsys):
    from solution.predictions import write_va_folder

    pred, counts = _va_predictions(va_data, shorten=3)
    write_va_folder(tmp_path / "pred", pred)
    path = submit.make_submission("va", tmp_path / "pred", va_data, tmp_path / "subs", name=form, va_format=form)
    note = capsys.readouterr().out
    assert "padded with their last value or cut" in note and all(f"{v} (-3)" in note for v in counts)
    assert submit.check_zip(path, va_data) == []
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
        submit.make_submission("va", tmp_path / "pred.txt", va_data, tmp_path / "subs", name="x")
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
    problems = submit.check_zip(path, va_data)
    assert any(message in p for p in problems), problems


def test_va_per_video_check(va_data, tmp_path):
    counts = VaRelease(va_data).test_frame_counts()
    videos = sorted(counts)
    members = {f"{v}.txt": "valence,arousal\n" + "0.1,0.2\n" * counts[v] for v in videos}
    assert submit.check_zip(_zip(tmp_path / "ok.zip", members), va_data) == []
    broken = dict(members)
    broken[f"{videos[0]}.txt"] = "valence,arousal\n" + "0.1,0.2\n" * (counts[videos[0]] - 2)
    broken["intruder.txt"] = "valence,arousal\n0,0\n"
    problems = submit.check_zip(_zip(tmp_path / "bad.zip", broken), va_data)
    assert any(f"{counts[videos[0]] - 2} frames, the test listing says {counts[videos[0]]}" in p for p in problems)
    assert any("not in the test listing (1): intruder" in p for p in problems)
    if len(videos) > 1:
        del broken[f"{videos[1]}.txt"]
        assert any("missing <video>.txt" in p for p in submit.check_zip(_zip(tmp_path / "b2.zip", broken), va_data))


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
