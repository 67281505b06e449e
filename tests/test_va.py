"""The VA track's own machinery: the label-frame grid, window averaging, -5 masking, label
delay (nested: each fold's chosen on its training videos), frames without a face, smoothing
chosen out of fold, bounded memory on long videos."""
import json
import shlex
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from solution import delay, folds, jobs
from solution.blend import apply_blend, best_width, nested_smoothing, smoothing_scores
from solution.config import TrainConfig
from solution.data import VideoStore, collate, frame_steps, gather, prediction_pieces, training_pieces
from solution.faces import face_chunks_from_crops, faces_from_crops
from solution.inference import frame_counts_to_predict
from solution.layouts import annotated_mask, open_release, release_videos
from solution.metrics import ccc_from_sums, ccc_per_dim, make_loss, per_video_score, score_predictions
from solution.report import frame_level_scores
from solution.runs import release_work
from solution.tracks import VA


def _store(va_data, work, **settings):
    release = open_release("va", va_data)
    sources = {s.vid: s for s in release_videos("va", va_data)}
    return release, VideoStore.from_cache(work, release, sources, TrainConfig(**settings),
                               frame_counts=frame_counts_to_predict(release, release.test_keys()))


def test_frame_steps_follow_each_videos_own_frame_rate():
    """Label frames thinned to a rate: the frame nearest every 1/rate seconds, at 25 and 30
    fps alike; every frame when the rate is 0 or not below the video's."""
    for fps in (25.0, 30.0, 29.97):
        steps = frame_steps(900, fps, 10.0)
        times = steps / fps
        assert np.all(np.abs(times - np.arange(len(steps)) / 10.0) <= 0.5 / fps + 1e-9)
        assert steps[0] == 0 and steps[-1] < 900 and np.all(np.diff(steps) > 0)
    assert np.array_equal(frame_steps(50, 10.0, 0.0), np.arange(50))
    assert np.array_equal(frame_steps(50, 10.0, 30.0), np.arange(50))


@pytest.mark.parametrize("rate", [0.0, 4.0])
def test_overlapping_windows_give_every_frame_exactly_one_prediction_in_order(va_data, va_features, rate):
    """Each window's rows say which label frame they are; after averaging the overlaps and
    carrying the steps back to the frames, frame k's prediction is k: every frame of every
    video (labelled, and test videos at the listing's count) once, in order, padding cut off."""
    release, store = _store(va_data, va_features, shared_rate=rate, window=24, hop=10)
    keys = sorted(release.labelled_keys()) + release.test_keys()
    pieces = prediction_pieces(store, keys)
    outputs = []
    for piece in pieces:
        steps, _ = store.label_steps(piece.key)
        window, _ = store.window_steps(piece.key)
        rows = steps[piece.start:piece.stop].astype(float)
        padded = np.full((window, 2), 1e6)  # what a batch's padding would hold
        padded[:len(rows)] = rows[:, None]
        outputs.append(padded)
    assert any(a.key == b.key and a.stop > b.start for a, b in zip(pieces, pieces[1:])), "windows should overlap"
    merged = gather(store, pieces, outputs)
    counts = release.test_frame_counts()
    for key in keys:
        frames = counts[key] if key in counts else len(release.video_targets(key))
        steps, _ = store.label_steps(key)
        expected = np.minimum(np.arange(frames), steps[-1])  # past the last step: held
        assert merged[key].shape == (frames, 2)
        np.testing.assert_allclose(merged[key][:, 0], expected, atol=1e-9)
        if rate == 0:
            assert len(steps) == frames
        else:
            assert len(steps) < frames


def test_unannotated_frames_are_masked_in_the_loss_and_the_metric(va_data, va_features):
    """-5 frames: False in target_mask, no effect on the loss or its gradient, skipped by
    the metric; whatever is predicted there changes nothing."""
    release, store = _store(va_data, va_features, shared_rate=0.0, window=40, hop=40)
    key = next(k for k in sorted(release.labelled_keys()) if not annotated_mask(release.video_targets(k)).all())
    pieces = [p for p in training_pieces(store, [key], np.random.default_rng(0))]
    batch = collate([store.piece(p) for p in pieces], store.modalities, store.dims, True)
    target, mask = batch["target"], batch["target_mask"]
    assert (~mask & batch["frame_mask"]).any(), "the chosen video should have -5 frames"
    assert torch.equal(mask, batch["frame_mask"] & ~(target == -5).any(-1))
    loss = make_loss("ccc+0.5*mse")
    pred = torch.rand(target.shape, requires_grad=True)
    value = loss(pred, target, mask)
    value.backward()
    assert pred.grad[~mask].abs().sum() == 0 and pred.grad[mask].abs().sum() > 0
    wild = pred.detach().clone()
    wild[~mask] = 5.0
    assert torch.allclose(loss(wild, target, mask), value.detach())

    truth = {key: release.video_targets(key)}
    guess = {key: np.where(truth[key] == -5, 0.0, np.clip(truth[key] + 0.1, -1, 1))}
    other = {key: np.where(truth[key] == -5, 0.9, guess[key])}
    assert score_predictions(VA, guess, truth) == score_predictions(VA, other, truth)
    assert per_video_score(VA, guess, truth) == per_video_score(VA, other, truth)


def test_label_delay_reads_the_media_earlier(va_data, va_features):
    """label_delay d: label frame k meets the media of time k / fps - d (annotators react late)."""
    release, now = _store(va_data, va_features, shared_rate=0.0)
    _, late = _store(va_data, va_features, shared_rate=0.0, label_delay=0.5)
    key = next(k for k in sorted(release.labelled_keys()) if release.video_fps(k) == 10.0)
    a, b = now.load(key, normalise=False), late.load(key, normalise=False)
    shift = 5  # 0.5 s at 10 fps
    for m in ("visual", "audio"):
        if a.seqs[m] is not None:
            np.testing.assert_allclose(b.seqs[m][shift:], a.seqs[m][:-shift], atol=1e-5)
            np.testing.assert_allclose(b.seqs[m][:shift], np.repeat(a.seqs[m][:1], shift, 0), atol=1e-5)
    np.testing.assert_array_equal(a.target, b.target)  # the labels stay where they are


def _work_beside(features_work, data, work, folds_table=None):
    """A work folder reading `features_work`'s features and fold file (or `folds_table`)."""
    work.mkdir()
    (work / "features").symlink_to(features_work / "features")
    source, rw = release_work(features_work, data), release_work(work, data)
    shutil.copy(source.folds_json, rw.folds_json)
    if folds_table is None:
        shutil.copy(source.folds_csv, rw.folds_csv)
    else:
        folds_table.to_csv(rw.folds_csv, index=False)
    return rw


def test_pooled_ccc_of_the_probe_follows_from_sums():
    """X1'X1, X1'Y and sum y^2 per part are all a cross-validation of the probe needs: its pooled
    CCC from them equals the CCC of the predictions themselves (features far from 0 included)."""
    rng = np.random.default_rng(3)
    rows = {}
    for part, n in enumerate((40, 25, 60)):
        x = rng.normal(size=(n, 6)) + np.array([0, 0, 50, 0, -20, 0]) + part
        y = np.tanh(x[:, :2] @ rng.normal(size=(2, 2)) * 0.3 + rng.normal(scale=0.3, size=(n, 2)))
        rows[part] = (x, y)
    sums = {part: delay.Sums.of(x[:10], y[:10]) + delay.Sums.of(x[10:], y[10:]) for part, (x, y) in rows.items()}
    pool = list(rows)
    preds, truth = [], []
    for part in pool:
        others = [q for q in pool if q != part]
        w = delay.fit_probe(delay.Sums.of(np.vstack([rows[q][0] for q in others]),
                                          np.vstack([rows[q][1] for q in others])), 0.1)
        x, y = rows[part]
        preds.append(np.hstack([x, np.ones((len(x), 1))]) @ w)
        truth.append(y)
        np.testing.assert_allclose(ccc_from_sums(*delay.probe_moments(w, sums[part])), ccc_per_dim(preds[-1], y),
                                   rtol=1e-9, atol=1e-12)
    direct = float(np.mean(ccc_per_dim(np.concatenate(preds), np.concatenate(truth))))
    assert delay.cv_score(sums, pool, [[q] for q in pool], 0.1) == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert abs(direct) > 0.1  # the probe predicts something: the check is not one of zeros


def test_delay_probe_finds_the_annotators_lag(va_data, va_features, capsys):
    """The synthetic annotators lag by about half a second; the probe finds it on all folds
    pooled and for each fold on its training videos alone (2 folds: the other fold, split by
    group), and on the official split (fold 0 trained on fold -1, split by group)."""
    assert delay.main(["--data", str(va_data), "--work", str(va_features), "--candidates", "0:1.5:0.25"]) == 0
    rw = release_work(va_features, va_data)
    found = json.loads((rw.root / "delay.json").read_text())
    assert 0.25 <= found["label_delay"] <= 0.75, found
    assert found["scores"][f"{found['label_delay']:g}"] > found["scores"]["0"] + 0.02, found
    assert sorted(found["by_fold"]) == ["0", "1"], found
    table = pd.read_csv(rw.folds_csv, dtype={"id": str, "group": str})
    for fold, chosen in found["by_fold"].items():
        assert 0.25 <= chosen <= 0.75, found
        assert found["scores_by_fold"][fold][f"{chosen:g}"] > found["scores_by_fold"][fold]["0"] + 0.02, found
        other = 1 - int(fold)
        parts = min(5, table.group[table.fold == other].nunique())
        assert found["inner_parts"][fold] == f"fold {other} in {parts} parts by group", found
    out = capsys.readouterr().out
    assert "chosen:" in out and "[delay] fold 0: " in out and "[delay] fold 1: " in out
    official = va_features.parent / "official_work"
    official.mkdir(exist_ok=True)
    (official / "features").symlink_to(va_features / "features")
    assert folds.main(["--data", str(va_data), "--work", str(official), "--scheme", "official"]) == 0
    assert delay.main(["--data", str(va_data), "--work", str(official), "--candidates", "0,0.5,1"]) == 0
    scored = json.loads((release_work(official, va_data).root / "delay.json").read_text())
    assert scored["folds"] == 1 and scored["scored_videos"] == len(open_release("va", va_data).videos("valid"))
    train_videos = len(open_release("va", va_data).videos("train"))
    assert scored["by_fold"] == {"0": 0.5}, scored
    assert scored["inner_parts"] == {"0": f"fold -1 in {min(5, train_videos)} parts by group"}, scored
    assert delay.main(["--data", str(va_data), "--work", str(va_features), "--candidates", "x"]) == 2


@pytest.mark.parametrize("k", [2, 3])
def test_each_folds_delay_is_chosen_without_its_own_labels(va_data, va_features, tmp_path, k):
    """Nested: scrambling the labels of fold 0's videos (in a copy of the release) leaves fold
    0's delay and inner scores exactly as they were; fold 1's, which train on those videos, and
    the pooled scores, which score them, change. With 2 folds fold 0's inner parts are fold
    1's groups; with 3 they are folds 1 and 2 (their probes shared with the other folds')."""
    candidates = ["--candidates", "0,0.5,1"]
    table = pd.read_csv(release_work(va_features, va_data).folds_csv, dtype={"id": str, "group": str})
    if k == 3:
        table["fold"] = np.arange(len(table)) % 3
    rw = _work_beside(va_features, va_data, tmp_path / "original", table)
    assert delay.main(["--data", str(va_data), "--work", str(tmp_path / "original"), *candidates]) == 0
    before = json.loads((rw.root / "delay.json").read_text())
    assert before["inner_parts"]["0"] == ("folds 1, 2" if k == 3 else before["inner_parts"]["0"])
    copy = tmp_path / "release"
    shutil.copytree(va_data, copy)
    rng = np.random.default_rng(0)
    for key in table.id[table.fold == 0]:
        [path] = [p for p in copy.rglob(f"{key}.txt") if "private" not in p.parts]
        header, *lines = path.read_text().splitlines()
        values = np.array([[float(v) for v in line.split(",")] for line in lines])
        annotated = annotated_mask(values)
        values[annotated] = values[annotated][rng.permutation(annotated.sum())]
        path.write_text("\n".join([header] + [f"{v:.6g},{a:.6g}" for v, a in values]) + "\n")
    rw = _work_beside(va_features, copy, tmp_path / "work", table)
    assert delay.main(["--data", str(copy), "--work", str(tmp_path / "work"), *candidates]) == 0
    after = json.loads((rw.root / "delay.json").read_text())
    assert after["by_fold"]["0"] == before["by_fold"]["0"]
    assert after["scores_by_fold"]["0"] == before["scores_by_fold"]["0"]
    assert after["scores_by_fold"]["1"] != before["scores_by_fold"]["1"]
    assert after["scores"] != before["scores"]


def test_delay_needs_two_groups_in_a_single_training_fold(va_data, va_features, tmp_path, capsys):
    """Fold 0's training videos are all of fold 1; with one group there, no inner split exists."""
    table = pd.read_csv(release_work(va_features, va_data).folds_csv, dtype={"id": str, "group": str})
    table.loc[table.fold == 1, "group"] = "everyone"
    _work_beside(va_features, va_data, tmp_path / "work", table)
    assert delay.main(["--data", str(va_data), "--work", str(tmp_path / "work"), "--candidates", "0,0.5"]) == 2
    err = capsys.readouterr().err
    assert "fold 0's training videos" in err and "one group (everyone)" in err


def test_jobs_train_each_fold_with_its_own_label_delay(va_data, va_features, tmp_path, capsys):
    """--label-delays FILE: fold k's command gets --set label_delay=<FILE's by_fold[k]>; a missing
    or damaged FILE, a fold without a delay, or --set label_delay after -- too, is an error."""
    flags = ["--data", str(va_data), "--work", str(va_features), "--models", "linear,rcma"]
    delays = tmp_path / "delay.json"
    delays.write_text(json.dumps({"label_delay": 0.5, "by_fold": {"0": 0.25, "1": 0.75}}))
    assert jobs.main(["list", *flags, "--label-delays", str(delays), "--", "--set", "epochs=3"]) == 0
    given = {}
    for line in capsys.readouterr().out.splitlines():
        argv = shlex.split(line)
        fold = int(argv[argv.index("--fold") + 1])
        sets = [argv[i + 1] for i, token in enumerate(argv) if token == "--set"]
        given.setdefault(fold, []).append(sets)
    assert given == {0: [["epochs=3", "label_delay=0.25"]] * 2, 1: [["epochs=3", "label_delay=0.75"]] * 2}

    def error(path, *extra) -> str:
        assert jobs.main(["list", *flags, "--label-delays", str(path), *extra]) == 2
        return capsys.readouterr().err

    assert "no such file" in error(tmp_path / "none.json")
    (tmp_path / "cut.json").write_text('{"by_fold": {"0": 0.')
    assert "cut.json: unreadable" in error(tmp_path / "cut.json")
    (tmp_path / "old.json").write_text(json.dumps({"label_delay": 0.5, "scores": {}}))
    assert "no by_fold" in error(tmp_path / "old.json")
    (tmp_path / "one.json").write_text(json.dumps({"by_fold": {"0": 0.5}}))
    assert "no label delay for fold(s) [1]" in error(tmp_path / "one.json")
    (tmp_path / "text.json").write_text(json.dumps({"by_fold": {"0": 0.5, "1": "half"}}))
    assert "fold 1's label delay 'half'" in error(tmp_path / "text.json")
    for both in (["--set", "label_delay=0.4"], ["--set=train.label_delay=0.4"]):
        assert "both were given" in error(delays, "--", *both)
    # Delays chosen for another fold file may have seen a fold's held-out videos.
    (tmp_path / "stale.json").write_text(json.dumps({"by_fold": {"0": 0.5, "1": 0.5}, "fold_assignment": "0" * 12}))
    assert "chosen for other folds" in error(tmp_path / "stale.json")


def test_frames_without_a_face_are_predicted_and_counted(va_data, va_features):
    """A frame without a face crop still has features from its neighbours and the voice, a
    quality of 0 on the visual stream, and the report counts and scores such frames apart."""
    release, store = _store(va_data, va_features, shared_rate=0.0)
    keys = sorted(release.labelled_keys())
    gaps = 0
    for key in keys:
        video = store.load(key, normalise=False)
        face = release.face_frames(key, len(video.target))
        assert face is not None and len(video.quality["visual"]) == len(face)
        assert np.isfinite(video.seqs["visual"]).all()
        assert np.all(video.quality["visual"][face] >= 0) and np.all(video.quality["visual"] <= 1)
        gaps += int((~face & annotated_mask(video.target)).sum())
    assert gaps > 0, "the fixture should have annotated frames without a crop"
    targets = {k: release.video_targets(k) for k in keys}
    rng = np.random.default_rng(0)
    oof = {k: np.clip(t + rng.normal(0, 0.2, t.shape), -1, 1) for k, t in targets.items()}
    scores = frame_level_scores(release, oof, targets)
    assert scores["frames_without_face"]["frames"] == gaps
    assert scores["frames_with_face"]["frames"] + gaps == sum(int(annotated_mask(t).sum()) for t in targets.values())
    assert 0 < scores["frames_without_face"]["score"] <= 1 and 0 < scores["oof_per_video"] <= 1


def test_smoothing_is_chosen_out_of_fold_and_applied_by_the_blend():
    """Noisy predictions of a slow signal: smoothing helps and is chosen; clean ones: none is."""
    rng = np.random.default_rng(3)
    t = np.arange(600) / 30.0
    targets, noisy, clean, part_of, fps_of = {}, {}, {}, {}, {}
    for i in range(6):
        truth = np.stack([np.sin(t * 0.7 + i), np.cos(t * 0.5 + 2 * i)], 1) * 0.8
        truth[100:130] = -5  # unannotated stretch
        key = f"v{i}"
        targets[key], part_of[key], fps_of[key] = truth, i % 3, 30.0
        clean[key] = np.where(truth == -5, 0.0, truth)
        noisy[key] = clean[key] + rng.normal(0, 0.4, truth.shape)
    by_width = smoothing_scores(VA, noisy, targets, fps_of)
    width = best_width(by_width)
    assert width > 0 and by_width[width] > by_width[0.0] + 0.05
    # Out of fold: each part smoothed by the width best on the others (nothing is fit to a
    # single run, so its inner predictions are its own).
    inner = {p: {k: noisy[k] for k in noisy if part_of[k] != p} for p in set(part_of.values())}
    honest, widths = nested_smoothing(VA, noisy, inner, targets, part_of, fps_of)
    assert set(honest) == set(noisy) and all(honest[k].shape == noisy[k].shape for k in noisy)
    assert set(widths) == {0, 1, 2} and all(w > 0 for w in widths.values())
    assert score_predictions(VA, honest, targets)["mean"] > score_predictions(VA, noisy, targets)["mean"]
    assert best_width(smoothing_scores(VA, clean, targets, fps_of)) == 0.0
    blend = {"runs": ["a"], "weights": {"a": [1.0, 1.0]}, "smooth_seconds": width}
    with pytest.raises(ValueError, match="fps_of"):
        apply_blend(blend, {"a": noisy})
    smoothed = apply_blend(blend, {"a": noisy}, -1, 1, fps_of)
    assert np.std(np.diff(smoothed["v0"][:, 0])) < 0.5 * np.std(np.diff(noisy["v0"][:, 0]))


def test_face_crops_are_read_a_chunk_at_a_time(va_data):
    """Chunked reading (bounded memory on long videos) gives exactly the whole track."""
    release = open_release("va", va_data)
    key = max(release.labelled_keys(), key=lambda k: len(release.video_targets(k)))
    crops, video = release.frames_dir(key), release.video_path(key)
    whole = faces_from_crops(crops, video, 5.0, 48)
    chunks = list(face_chunks_from_crops(crops, video, 5.0, 48, chunk=7))
    assert len(chunks) > 2 and max(len(c.times) for c in chunks) == 7
    np.testing.assert_array_equal(np.concatenate([c.faces for c in chunks]), whole.faces)
    np.testing.assert_array_equal(np.concatenate([c.confidence for c in chunks]), whole.confidence)
    np.testing.assert_array_equal(np.concatenate([c.times for c in chunks]), whole.times)
