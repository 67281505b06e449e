"""The class tracks (EXPR, AU): their annotation readers and what they refuse, the F1 metrics
against scikit-learn, the class-weighted losses, the decision rules chosen out of fold, the
blend of probabilities and its nested estimate, prediction files and submissions read back."""
import os

import numpy as np
import pytest
import torch

from solution import decisions, ensemble
from solution.errors import DataError
from solution.metrics import class_weights, make_task_loss, score, score_predictions, task_loss_spec
from solution.tracks import get_track

EXPR, AU, VA = get_track("expr"), get_track("au"), get_track("va")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_expr_annotation_reads_as_one_hot_with_unannotated_rows(tmp_path):
    path = write(tmp_path / "v.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n4\n4\n-1\n0\n7\n")
    values = EXPR.read_annotation(path)
    assert values.shape == (5, 8) and values.dtype == np.float32
    assert values[:2].argmax(1).tolist() == [4, 4] and values[4, 7] == 1 and (values[2] == -1).all()
    assert EXPR.annotated(values).tolist() == [True, True, False, True, True]
    assert EXPR.decide(values[[0, 3]]).ravel().tolist() == [4, 0]


@pytest.mark.parametrize("body,error", [
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n1\n", "first line must be"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1\n8\n", "line 3: '8': expected a class 0-7"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1\nhappy\n", "line 3: not a number"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1.5\n", "expected a class 0-7"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n", "no frames"),
])
def test_expr_annotation_errors_name_the_file_and_line(tmp_path, body, error):
    path = write(tmp_path / "bad.txt", body)
    with pytest.raises(DataError, match=error) as raised:
        EXPR.read_annotation(path)
    assert str(path) in str(raised.value)


def test_au_annotation_reads_units_and_refuses_other_values(tmp_path):
    header = ",".join(AU.targets)
    path = write(tmp_path / "v.txt", f"{header}\n" + ",".join("1" if i in (6, 10) else "0" for i in range(12))
                 + "\n" + ",".join(["-1"] * 12) + "\n")
    values = AU.read_annotation(path)
    assert values.shape == (2, 12) and values[0].tolist() == [1.0 if i in (6, 10) else 0.0 for i in range(12)]
    assert AU.annotated(values).tolist() == [True, False]
    bad = write(tmp_path / "bad.txt", f"{header}\n" + ",".join(["0"] * 11 + ["2"]) + "\n")
    with pytest.raises(DataError, match="line 2: .*expected 0 or 1 per unit"):
        AU.read_annotation(bad)
    partial = write(tmp_path / "partial.txt", f"{header}\n" + ",".join(["-1"] * 6 + ["0"] * 6) + "\n")
    with pytest.raises(DataError, match="some units -1 and some not"):
        AU.read_annotation(partial)
    short = write(tmp_path / "short.txt", f"{header}\n0,1\n")
    with pytest.raises(DataError, match="line 2: 2 value"):
        AU.read_annotation(short)


def test_f1_metrics_are_scikit_learns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 8, 500)
    probs = rng.dirichlet(np.ones(8), 500) + 0.5 * np.eye(8)[truth] * (rng.uniform(size=(500, 1)) < 0.6)
    result = score(EXPR, probs, np.eye(8)[truth])
    assert result["mean"] == pytest.approx(f1_score(truth, probs.argmax(1), average="macro", labels=range(8)))
    units = (rng.uniform(size=(500, 12)) < 0.3).astype(float)
    p = np.clip(units * 0.4 + rng.uniform(0, 0.7, units.shape), 0, 1)
    expected = np.mean([f1_score(units[:, u], p[:, u] > 0.5, zero_division=0) for u in range(12)])
    assert score(AU, p, units)["mean"] == pytest.approx(expected)


def test_class_losses_weigh_rare_classes_and_take_logits():
    targets = {"v": np.eye(8, dtype=np.float32)[[0] * 90 + [3] * 10]}
    weights = class_weights(EXPR, targets)
    assert weights[3] == pytest.approx(3 * weights[0]) and weights[5] == 1.0  # sqrt(90/10); absent: 1
    assert task_loss_spec(EXPR, "ccc") == "ce" and task_loss_spec(AU, "ccc") == "bce"
    assert task_loss_spec(EXPR, "focal") == "focal" and task_loss_spec(VA, "ccc") == "ccc"
    loss = make_task_loss(EXPR, "ccc", targets)
    target = torch.tensor(np.eye(8, dtype=np.float32)[[0, 3, 3]])
    right, wrong = torch.tensor(np.eye(8)[[0, 3, 3]] * 5.0), torch.tensor(np.eye(8)[[3, 0, 0]] * 5.0)
    assert loss(right.float(), target) < 0.1 < loss(wrong.float(), target)
    mask = torch.tensor([True, False, False])
    assert loss(wrong.float(), target, mask) > 1.0 and loss(right.float()[:0], target[:0]).item() == 0.0
    au_loss = make_task_loss(AU, "ccc", {"v": np.eye(12, dtype=np.float32)[[0, 1, 2]]})
    on = torch.zeros(2, 12)
    on[:, 0] = 1
    assert au_loss(on * 8 - 4, on) < au_loss(4 - on * 8, on)


@pytest.mark.parametrize("track,spec", [(AU, "smooth"), (EXPR, "focla"), (EXPR, "mse"), (AU, "0.7*ccc+0.3*mse")])
def test_a_loss_the_class_kind_does_not_know_is_an_error(track, spec):
    with pytest.raises(DataError) as raised:
        task_loss_spec(track, spec)
    message = str(raised.value)
    allowed = "ce, focal, smooth" if track is EXPR else "bce, focal"
    assert f"loss={spec!r}" in message and f"track {track.name} " in message and f"one of {allowed};" in message


def test_decision_rules_raise_f1_and_map_probabilities_monotonically():
    rng = np.random.default_rng(1)
    truth = rng.choice(3, 3000, p=[0.8, 0.15, 0.05])
    logits = np.log([0.8, 0.15, 0.05]) + 1.5 * np.eye(3)[truth] + rng.normal(0, 1, (3000, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rule = decisions.fit_decision("multiclass", probs, np.eye(3)[truth])
    mapped = decisions.apply_decision(probs, rule)
    before = decisions.macro_f1_of_labels(truth, probs.argmax(1), 3)
    assert decisions.macro_f1_of_labels(truth, mapped.argmax(1), 3) > before + 0.05
    np.testing.assert_allclose(mapped.sum(1), 1.0)
    units = (rng.uniform(size=(3000, 2)) < [0.1, 0.5]).astype(float)
    p = np.clip(0.25 * units + rng.uniform(0, 0.35, units.shape), 0, 1)  # positives mostly below 0.5
    rule = decisions.fit_decision("multilabel", p, units)
    assert rule["kind"] == "thresholds" and rule["values"][0] < 0.5
    after = decisions.apply_decision(p, rule)
    assert ((after > 0.5) == (p > np.array(rule["values"]))).all()
    assert decisions.fit_decision("regression", p, units) is None


def fake_expr_runs(seed=0, videos=12):
    rng = np.random.default_rng(seed)
    prior = np.array([0.35, 0.06, 0.03, 0.03, 0.15, 0.08, 0.08, 0.22])
    targets, part_of, fps_of, preds = {}, {}, {}, {"a": {}, "b": {}}
    for i in range(videos):
        classes = rng.choice(8, size=10, p=prior).repeat(30)
        label = np.eye(8, dtype=np.float32)[classes]
        label[:20] = -1
        key = f"v{i}"
        targets[key], part_of[key], fps_of[key] = label, i % 4, 30.0
        for run, noise in (("a", 1.0), ("b", 1.5)):
            logits = np.log(prior) + 1.2 * np.eye(8)[classes] + rng.normal(0, noise, (300, 8))
            preds[run][key] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return preds, targets, part_of, fps_of


def test_class_blend_weighs_probabilities_and_chooses_its_decision_out_of_fold():
    """The better run gets the larger weight (log loss); class biases chosen out of fold raise
    the macro F1 well above the default decision's; the nested estimate is the score of the
    out-of-fold predictions, and a part's predictions do not move when its labels do."""
    preds, targets, part_of, fps_of = fake_expr_runs()
    first = ensemble.blend_procedure(EXPR, preds, targets, part_of, fps_of)
    blend = first.blend
    assert blend["weights"]["a"][0] > blend["weights"]["b"][0] and blend["decision"]["kind"] == "biases"
    assert [f.name for f in first.fits] == ["equal", "shared"]  # a distribution: no per-class weights
    assert first.score["mean"] > blend["scores"]["decision"]["before"] + 0.05
    assert first.score["mean"] == pytest.approx(score_predictions(EXPR, first.oof, targets)["mean"])
    moved = {k: (v if part_of[k] != 2 else np.where(v == -1, -1.0, np.roll(v, 1, axis=1))) for k, v in targets.items()}
    second = ensemble.blend_procedure(EXPR, preds, moved, part_of, fps_of)
    for key in targets:
        if part_of[key] == 2:
            np.testing.assert_array_equal(second.oof[key], first.oof[key])


def test_class_prediction_files_and_submissions_read_back(tmp_path):
    """Probabilities in the harness's files; labels in both submission forms, read back as
    one-hot rows; a label file and a probability file score alike."""
    probs = {"1-30-64x64": np.eye(8)[[4, 4, 0]] * 0.7 + 0.3 / 8, "2-30-64x64_left": np.eye(8)[[7]] * 0.7 + 0.3 / 8}
    EXPR.write_predictions(tmp_path / "p.txt", probs)
    back = EXPR.read_frame_predictions(tmp_path / "p.txt")
    np.testing.assert_allclose(back["1-30-64x64"], probs["1-30-64x64"], atol=1e-6)
    text = EXPR.label_single_text(probs)
    assert text.splitlines()[0] == "image_location," + ",".join(EXPR.targets)
    assert text.splitlines()[1:] == ["1-30-64x64/00001.jpg,4", "1-30-64x64/00002.jpg,4", "1-30-64x64/00003.jpg,0",
                                     "2-30-64x64_left/00001.jpg,7"]
    write(tmp_path / "labels.txt", text)
    labels = EXPR.read_frame_predictions(tmp_path / "labels.txt")
    assert labels["1-30-64x64"].argmax(1).tolist() == [4, 4, 0] and labels["1-30-64x64"].max() == 1.0
    counts = {"1-30-64x64": 3, "2-30-64x64_left": 1}
    assert EXPR.check_single_text(text, counts, "z") == []
    broken = text.replace(",7\n", ",9\n")
    assert any("not a class 0-7" in p for p in EXPR.check_single_text(broken, counts, "z"))
    assert any("1..3" in p for p in EXPR.check_single_text(text.replace("1-30-64x64/00003.jpg,0\n", ""), counts, "z"))
    per_video = EXPR.label_file_text(probs["1-30-64x64"])
    assert per_video == ",".join(EXPR.targets) + "\n4\n4\n0\n" and EXPR.check_video_text(per_video, 3, "z") == []
    au = {"v": np.array([[0.9] + [0.1] * 11, [0.2] * 12])}
    assert AU.label_file_text(au["v"]).splitlines()[1:] == ["1," + ",".join(["0"] * 11), ",".join(["0"] * 12)]
    assert AU.check_video_text(AU.label_file_text(au["v"]), 2, "z") == []


# ---------------------------------------------------------------- a release's bad inputs, named

def _copy(expr_data, tmp_path):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(expr_data, copy, copy_function=os.link)
    return copy


def _rewrite(path, text):
    path.unlink()  # a hard link: the fixture's file stays as it is
    path.write_text(text)


def _inspect(copy, track, capsys):
    from solution import inspect

    status = inspect.main([str(copy), "--track", track])
    return status, capsys.readouterr().out


def _annotation(copy, track):
    folder = EXPR.annotation_folder if track == "expr" else AU.annotation_folder
    return sorted((copy / "6th_ABAW_Annotations" / folder / "Train_Set").glob("*.txt"))


def test_a_release_of_several_tracks_is_read_as_the_one_asked_for(expr_data, monkeypatch):
    from solution.tracks import detect_track
    from solution.tracks.base import tracks_held

    assert tracks_held(expr_data) == ["va", "expr", "au"]
    monkeypatch.setenv("TRACK", "au")
    assert detect_track(expr_data) == "au"
    release = AU.open_release(expr_data)
    key = sorted(release.labelled_keys())[0]
    assert release.video_targets(key).shape[1] == 12
    assert EXPR.open_release(expr_data).test_keys() == release.test_keys() == VA.open_release(expr_data).test_keys()


@pytest.mark.parametrize("track", ["expr", "au"])
def test_bad_annotations_are_named_by_the_preflight(expr_data, tmp_path, capsys, track):
    """A header that is not the challenge's, a label out of range, and a line count that does
    not fit the video: each an error naming the file; a video whose every frame is -1: left
    out, with a warning naming it."""
    unit = EXPR if track == "expr" else AU
    for case in ("header", "value", "lines", "unannotated"):
        copy = _copy(expr_data, tmp_path / case)
        path = _annotation(copy, track)[0]
        lines = path.read_text().splitlines()
        bad = {"header": ["valence,arousal"] + lines[1:],
               "value": lines[:3] + (["9"] if track == "expr" else [",".join(["2"] * 12)]) + lines[4:],
               "lines": lines + lines[1:] * 2,
               "unannotated": lines[:1] + [unit.unannotated_line] * (len(lines) - 1)}[case]
        _rewrite(path, "\n".join(bad) + "\n")
        status, out = _inspect(copy, track, capsys)
        assert path.name in out, (case, out)
        if case == "unannotated":
            assert status == 0 and "left out of training" in out
            assert path.stem not in unit.open_release(copy).labelled_keys()
        else:
            assert status == 2, (case, out)
            expected = {"header": "first line must be", "value": "line 4", "lines": "annotation lines, but its video"}
            assert expected[case] in out, (case, out)


def test_a_two_person_video_without_its_crops_and_an_empty_test_video_are_errors(expr_data, tmp_path, capsys):
    import shutil

    copy = _copy(expr_data, tmp_path)
    path = _annotation(copy, "expr")[0]
    shutil.copy(path, path.with_name(f"{path.stem}_left.txt"))  # a second person in the first one's video
    status, out = _inspect(copy, "expr", capsys)
    assert status == 2 and f"{path.stem}_left" in out and "cannot tell which person" in out
    listing = copy / "6th_ABAW_Annotations" / EXPR.annotation_folder / "test_set.csv"
    rows = listing.read_text().splitlines()
    _rewrite(listing, "\n".join(rows[:1] + [rows[1].split(",")[0] + ",0"] + rows[2:]) + "\n")
    with pytest.raises(DataError, match=f"{listing}: line 2: frame count must be a positive integer"):
        EXPR.open_release(copy).test_frame_counts()


def test_a_listed_test_video_without_frames_is_a_preflight_error(expr_data, tmp_path, capsys):
    """The organizers' listing gives no frame counts; a test video whose file holds none has
    nothing to predict: the preflight names the listing and the video, as the reader refuses it."""
    import av

    copy = _copy(expr_data, tmp_path)
    folder = copy / "6th_ABAW_Annotations" / EXPR.annotation_folder
    videos = [row.split(",")[0] for row in (folder / "test_set.csv").read_text().splitlines()[1:]]
    (folder / "test_set.csv").unlink()
    listing = write(folder / "EXPR_test_set_release.txt", "\n".join(videos) + "\n")
    empty = next(copy.glob(f"batch*/{videos[0]}.mp4"))
    empty.unlink()
    # An AVI with a stream and no frames: its header says 0 frames (an empty MP4 has no stream at all).
    with av.open(str(empty.with_suffix(".avi")), mode="w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"
        container.start_encoding()
    status, out = _inspect(copy, "expr", capsys)
    assert status == 2 and listing.name in out and f"test video {videos[0]!r} has no frames to predict" in out, out
    with pytest.raises(DataError, match="has no frames to predict"):
        EXPR.open_release(copy).test_frame_counts()


def test_a_decision_rule_is_kept_only_where_it_helps_videos_it_was_not_fit_on():
    """checked_decision: a bias every part shares is learnt and kept; a quirk of each part (its
    own class over-predicted) is what a rule fit on the other parts gets wrong, so none is kept."""
    from solution.blend import checked_decision

    preds, targets, part_of, _ = fake_expr_runs()
    assert checked_decision(EXPR, preds["a"], targets, part_of)["kind"] == "biases"  # the shared prior shift
    rng = np.random.default_rng(3)
    quirky = {}
    for key, label in targets.items():
        truth = np.where(label[:, 0] == -1, 0, label.argmax(1))
        logits = 2.0 * np.eye(8)[truth] + rng.normal(0, 1, (len(truth), 8))
        logits[:, part_of[key]] += 2.5  # this part's own class, whatever the truth
        quirky[key] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert checked_decision(EXPR, quirky, targets, part_of) is None
