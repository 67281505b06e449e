"""The fitted blend: weights recovered where the best blend is known, an honest estimate that
never sees the fold it scores, the CCC rescale, the saved form, and the ensemble command."""
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from solution import blend, ensemble, folds, inference, runs
from solution.blend import Stack
from solution.media import write_video
from solution.metrics import ccc_per_dim, pearson_per_dim, score_predictions
from solution.predictions import read_predictions, write_predictions
from solution.runs import release_work
from solution.submission import check_zip
from solution.tracks import EMI, EMI_TARGETS, VA


def known_stack(weights_a, rows=3000, noise=0.05, parts=5, seed=0):
    """Runs A, B (independent signals) and C (noise unrelated to the labels); the labels are
    weights_a[t] * A + (1 - weights_a[t]) * B per target t, plus a little noise."""
    rng = np.random.default_rng(seed)
    dims = len(weights_a)
    a, b, c = (rng.uniform(0, 1, (rows, dims)) for _ in range(3))
    w = np.asarray(weights_a)
    truth = w * a + (1 - w) * b + rng.normal(0, noise, (rows, dims))
    return Stack(("A", "B", "C"), np.stack([a, b, c]), truth, np.arange(rows) % parts)


@pytest.mark.parametrize("metric", ["pearson", "ccc"])
def test_shared_weights_recover_the_known_blend(metric):
    stack = known_stack([0.7] * 6)
    weights = blend.fit_weights(blend.moments(stack.preds, stack.truth), metric, "shared")
    assert weights.shape == (3, 6) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-9)
    assert (weights == weights[:, :1]).all()
    np.testing.assert_allclose(weights[:, 0], [0.7, 0.3, 0.0], atol=0.03)


@pytest.mark.parametrize("metric", ["pearson", "ccc"])
def test_per_target_weights_recover_each_targets_blend(metric):
    truth_a = [0.9, 0.7, 0.5, 0.3, 0.1, 0.6]
    stack = known_stack(truth_a, seed=1)
    weights = blend.fit_weights(blend.moments(stack.preds, stack.truth), metric, "per_target")
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-9)
    np.testing.assert_allclose(weights[0], truth_a, atol=0.03)
    np.testing.assert_allclose(weights[2], 0.0, atol=0.03)  # the useless run
    mom = blend.moments(stack.preds, stack.truth)
    shared = blend.fit_weights(blend.moments(stack.preds, stack.truth), metric, "shared")
    assert blend.blend_metric(metric, weights, mom).mean() > blend.blend_metric(metric, shared, mom).mean() + 0.02


def test_moment_metric_is_the_metric_of_the_blended_rows():
    stack = known_stack([0.2, 0.8], rows=500)
    mom = blend.moments(stack.preds, stack.truth)
    weights = np.random.default_rng(3).dirichlet(np.ones(3), size=2).T
    rows = blend.blend_rows(stack.preds, weights)
    np.testing.assert_allclose(blend.blend_metric("pearson", weights, mom), pearson_per_dim(rows, stack.truth))
    np.testing.assert_allclose(blend.blend_metric("ccc", weights, mom), ccc_per_dim(rows, stack.truth))


def test_moments_of_folds_pool_to_the_moments_of_their_union():
    stack = known_stack([0.2, 0.8, 0.5], rows=700)
    whole = blend.moments(stack.preds, stack.truth)
    pooled = blend.pool(list(blend.part_moments(stack).values()))
    for got, want in zip(pooled, whole):
        np.testing.assert_allclose(got, want, atol=1e-12)
    held = stack.part != 3
    without = blend.pool([m for p, m in blend.part_moments(stack).items() if p != 3])
    for got, want in zip(without, blend.moments(stack.preds[:, held], stack.truth[held])):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_one_run_is_the_blend_with_weight_one():
    stack = known_stack([0.5] * 6)
    single = Stack(("A",), stack.preds[:1], stack.truth, stack.part)
    assert (blend.fit_weights(blend.moments(single.preds, single.truth), "pearson", "per_target") == 1).all()
    fits = blend.compare_blends(EMI, single)
    assert [f.name for f in fits] == ["single"] and blend.choose(fits).weights.tolist() == [[1.0] * 6]


@pytest.mark.parametrize("mode,rescale", [("shared", False), ("per_target", True)])
def test_honest_estimate_never_sees_the_fold_it_scores(mode, rescale):
    stack = known_stack([0.8, 0.3], rows=600)
    fit = blend.fitter(VA, mode, "fitted", rescale)
    rows, by_part = blend.cross_fit(stack, fit)
    held = stack.part == 2
    other_truth = stack.truth.copy()
    other_truth[held] = stack.preds[2, held] * 3 - 1  # fold 2's labels now follow the useless run
    rows_changed, by_part_changed = blend.cross_fit(Stack(stack.runs, stack.preds, other_truth, stack.part), fit)
    np.testing.assert_array_equal(rows_changed[held], rows[held])
    np.testing.assert_array_equal(by_part_changed[2][0], by_part[2][0])
    # Every other fold learnt from fold 2's labels, so those folds' blends do change.
    assert np.abs(rows_changed[~held] - rows[~held]).max() > 1e-3
    assert set(by_part) == {0, 1, 2, 3, 4}


def test_the_whole_procedure_never_sees_the_part_it_scores():
    """The nested estimate: each part is blended by the way the procedure chooses, and fits,
    without it. Here parts 0-2 want per-target weights (targets 0-2 follow A, 3-5 follow B)
    and part 3 the reverse, so with part 3 among them the fitted per-target weights fail on it
    and shared weights are chosen, while without it per-target weights win by far: part 3 must
    get per-target weights fit on parts 0-2, whatever its own labels say."""
    rng = np.random.default_rng(0)
    rows, parts = 200, np.repeat(np.arange(4), 200)
    a, b = rng.uniform(0, 1, (2, 4 * rows, 6))
    follows_a = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])
    truth = follows_a * a + (1 - follows_a) * b + rng.normal(0, 0.1, a.shape)
    last = parts == 3
    truth[last] = (1 - follows_a) * a[last] + follows_a * b[last] + rng.normal(0, 0.1, (rows, 6))
    stack = Stack(("A", "B"), np.stack([a, b]), truth, parts)
    fits = blend.compare_blends(EMI, stack)
    nested = blend.nest(EMI, stack, fits)
    assert blend.choose(fits).name == "shared" and nested.way_of[3].name == "per_target"
    for part in range(4):  # the choice without a part, recomputed on the other parts alone
        keep = parts != part
        alone = blend.compare_blends(EMI, Stack(stack.runs, stack.preds[:, keep], truth[keep], parts[keep]))
        assert nested.way_of[part].name == blend.choose(alone).name
        if part == 3:
            fitted = next(f for f in alone if f.name == "per_target")
            np.testing.assert_allclose(nested.way_of[3].by_part[3][0], fitted.weights, atol=1e-6)

    def nested_rows(stack, nested):
        out = np.empty(stack.truth.shape)
        for part, fit in nested.way_of.items():
            out[stack.part == part] = blend.blend_rows(stack.preds[:, stack.part == part], *fit.by_part[part])
        return out

    changed_truth = truth.copy()
    changed_truth[last] = rng.uniform(0, 1, (rows, 6))  # part 3's labels, now noise
    changed = Stack(stack.runs, stack.preds, changed_truth, parts)
    changed_nested = blend.nest(EMI, changed, blend.compare_blends(EMI, changed))
    before, after = nested_rows(stack, nested), nested_rows(changed, changed_nested)
    np.testing.assert_array_equal(after[last], before[last])
    assert changed_nested.inner_scores[3] == nested.inner_scores[3]
    assert np.abs(after[~last] - before[~last]).max() > 1e-3  # the other parts learnt from part 3's labels


def test_nested_smoothing_and_rescale_never_see_the_part_they_score():
    """A frame-level blend: the way, the weights, the rescale and the smoothing width of a
    part all come from the other parts; its out-of-fold predictions do not move when its
    labels do."""
    rng = np.random.default_rng(8)
    t = np.arange(450) / 30.0
    targets, part_of, fps_of, preds = {}, {}, {}, {"a": {}, "b": {}}
    for i in range(8):
        truth = np.stack([np.sin(t * 0.7 + i), np.cos(t * 0.5 + 2 * i)], 1) * 0.8
        truth[50:70] = -5
        key = f"v{i}"
        targets[key], part_of[key], fps_of[key] = truth, i % 4, 30.0
        clean = np.where(truth == -5, 0.0, truth)
        preds["a"][key] = 0.4 * clean + rng.normal(0, 0.3, truth.shape)
        preds["b"][key] = 0.4 * clean + rng.normal(0, 0.2, truth.shape)
    first = ensemble.blend_procedure(VA, preds, targets, part_of, fps_of)
    assert first.blend["smooth_seconds"] > 0 and first.blend["rescale"] is not None
    moved = {k: (v if part_of[k] != 1 else np.where(v == -5, -5.0, -0.5 * v)) for k, v in targets.items()}
    second = ensemble.blend_procedure(VA, preds, moved, part_of, fps_of)
    for key in targets:
        if part_of[key] == 1:
            np.testing.assert_array_equal(second.oof[key], first.oof[key])
        else:
            assert np.abs(second.oof[key] - first.oof[key]).max() > 1e-6
    nested = first.blend["scores"]["nested"]
    assert nested["score"] == pytest.approx(score_predictions(VA, first.oof, targets)["mean"], abs=1e-6)
    assert set(nested["way_by_part"]) == set(first.blend["scores"]["smoothing"]["by_part"]) == {"0", "1", "2", "3"}


def test_honest_estimate_is_below_in_sample_when_weights_overfit():
    """Few rows, many useless runs: fitted weights flatter themselves in sample; the honest
    estimate is lower."""
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(40, 6))
    preds = rng.uniform(0, 1, (6, 40, 6))
    stack = Stack(tuple("abcdef"), preds, truth, np.arange(40) % 4)
    fit = blend.fit_blend(EMI, stack, "per_target")
    assert fit.honest["mean"] < fit.in_sample["mean"] - 0.05


def test_the_way_of_blending_is_chosen_by_the_honest_estimate():
    def way(name, method, in_sample, honest):
        return blend.Fit(name, "shared", method, np.ones((1, 2)), None, {"mean": in_sample}, {"mean": honest})

    flattering, modest = way("per_target", "fitted", 0.9, 0.5), way("shared", "fitted", 0.7, 0.6)
    equal = way("equal", "equal", 0.65, 0.65)
    # The fitted way with the best honest score, never the one that flatters itself in sample;
    # equal weights only when asked for, however well they score out of fold.
    assert blend.choose([equal, flattering, modest]) is modest
    better = way("shared", "fitted", 0.75, 0.7)
    assert blend.choose([equal, flattering, better]) is better
    assert blend.choose([equal, flattering, modest], "equal") is equal
    assert blend.choose([equal, flattering, modest], "all") is equal  # every way competes: equal's 0.65 is best


def test_rescale_restores_ccc_of_shrunk_predictions():
    rng = np.random.default_rng(2)
    truth = rng.uniform(-0.8, 0.8, (4000, 2))
    shrunk = np.stack([0.1 + 0.3 * truth + rng.normal(0, 0.08, truth.shape) for _ in range(3)])
    stack = Stack(("a", "b", "c"), shrunk, truth, np.arange(4000) % 5)
    average = blend.blend_rows(stack.preds, np.full((3, 2), 1 / 3))
    scale, shift = blend.fit_rescale(np.ones((1, 2)), blend.moments(average[None], truth))
    restored = average * scale + shift
    np.testing.assert_allclose(restored.std(0), truth.std(0))
    np.testing.assert_allclose(restored.mean(0), truth.mean(0), atol=1e-12)
    assert ccc_per_dim(average, truth).mean() < 0.6
    np.testing.assert_allclose(ccc_per_dim(restored, truth), pearson_per_dim(average, truth), atol=1e-9)
    fits = {f.name: f for f in blend.compare_blends(VA, stack)}
    assert set(fits) == {"equal", "equal+rescale", "shared", "shared+rescale", "per_target", "per_target+rescale"}
    assert fits["shared+rescale"].honest["mean"] > fits["shared"].honest["mean"] + 0.2
    assert blend.choose(list(fits.values())).rescale is not None
    assert blend.choose(list(fits.values()), "equal").name == "equal+rescale"
    # Pearson tracks: no rescale is offered, since it changes nothing.
    assert all(f.rescale is None for f in blend.compare_blends(EMI, Stack(stack.runs, np.repeat(shrunk, 3, 2) / 2 + 0.5,
                                                                              np.repeat(truth, 3, 1), stack.part)))


def test_weights_before_a_rescale_maximise_correlation_not_spread():
    """A predicts its half of the labels at a fifth of the scale, B its half at full scale:
    the best blend to rescale weighs A five times B; the raw CCC would favour B's spread."""
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 0.2, (2, 3000, 2))
    truth = a + b
    stack = Stack(("A", "B"), np.stack([0.2 * a, b]), truth, np.arange(3000) % 5)
    rescaled = blend.fit_blend(VA, stack, "shared", rescale=True)
    np.testing.assert_allclose(rescaled.weights[:, 0], [5 / 6, 1 / 6], atol=0.02)
    assert rescaled.honest["mean"] > 0.99
    raw = blend.fit_blend(VA, stack, "shared")
    assert raw.weights[0, 0] < 0.7 and raw.honest["mean"] < 0.95


def test_stack_pools_annotated_frames_and_refuses_bad_input():
    rng = np.random.default_rng(4)
    targets = {"v1": rng.uniform(-1, 1, (30, 2)), "v2": rng.uniform(-1, 1, (20, 2))}
    targets["v1"][5:9] = -5
    preds = {r: {k: np.clip(v + rng.normal(0, 0.3, v.shape), -1, 1) for k, v in targets.items()} for r in "ab"}
    preds["a"]["v2"] = np.concatenate([preds["a"]["v2"], np.zeros((3, 2))])  # extra frames are ignored
    preds["b"]["v2"] = np.concatenate([preds["b"]["v2"], np.zeros((3, 2))])
    stack = blend.stack_predictions(VA, preds, targets, {"v1": 0, "v2": 1})
    assert stack.preds.shape == (2, 46, 2) and stack.truth.shape == (46, 2) and list(np.bincount(stack.part)) == [26, 20]
    assert blend.score_rows(VA, stack.preds[0], stack.truth)["mean"] == pytest.approx(
        score_predictions(VA, preds["a"], targets)["mean"])
    broken = {"a": preds["a"], "b": {**preds["b"], "v1": np.full((30, 2), np.nan)}}
    with pytest.raises(blend.DataError, match="NaN"):
        blend.stack_predictions(VA, broken, targets, {"v1": 0, "v2": 1})
    with pytest.raises(blend.DataError, match="frames"):
        blend.stack_predictions(VA, {"a": {**preds["a"], "v1": preds["a"]["v1"][:10]}}, targets, {"v1": 0, "v2": 1})
    with pytest.raises(blend.DataError, match="no out-of-fold prediction"):
        blend.stack_predictions(VA, {"a": {"v1": preds["a"]["v1"]}}, targets, {"v1": 0, "v2": 1})


def test_one_fold_is_split_by_group_for_the_honest_estimate():
    fold_of = {f"{i:05d}": 0 for i in range(20)}
    group_of = {k: f"s{int(k) // 3}" for k in fold_of}
    parts = blend.holdout_parts(fold_of, group_of)
    assert len(set(parts.values())) == 5
    for key, other in zip(fold_of, list(fold_of)[1:]):
        if group_of[key] == group_of[other]:
            assert parts[key] == parts[other]
    assert blend.holdout_parts({"a": 0, "b": 1}, {"a": "x", "b": "x"}) == {"a": 0, "b": 1}


def test_saved_blend_round_trip_applies_the_same_numbers(tmp_path):
    stack = known_stack([0.9, 0.2], rows=400)
    fits = blend.compare_blends(VA, stack)
    chosen = blend.choose(fits)
    saved = blend.to_blend(VA, stack.runs, chosen, fits, blend.single_scores(VA, stack), 5)
    blend.write_blend(tmp_path / "blend.json", saved)
    back = blend.read_blend(tmp_path / "blend.json")
    assert back == json.loads(json.dumps(saved))
    assert {"track", "runs", "mode", "weights", "rescale", "scores"} <= set(back)
    assert back["mode"] in blend.MODES and back["runs"] == ["A", "B", "C"]
    # One "video" of frames per 100 rows: apply_blend gives what blend_rows gave in the fit.
    by_run = {run: {f"v{i}": stack.preds[r, i * 100:(i + 1) * 100] for i in range(4)} for r, run in enumerate(stack.runs)}
    applied = blend.apply_blend(back, by_run)
    expected = blend.blend_rows(stack.preds, chosen.weights, chosen.rescale)
    np.testing.assert_allclose(np.concatenate([applied[f"v{i}"] for i in range(4)]), expected, atol=1e-12)
    clipped = blend.apply_blend(back, by_run, VA.low, VA.high)
    assert all(np.abs(v).max() <= 1 for v in clipped.values())
    with pytest.raises(blend.DataError, match="no saved blend"):
        blend.read_blend(tmp_path / "absent.json")
    with pytest.raises(blend.DataError, match="needs predictions of run"):
        blend.apply_blend(back, {"A": by_run["A"]})


# ---------------------------------------------------------------- the command, on small fake releases

def fake_emi_release(root, rng, labelled=120, test=30):
    """Split CSVs only, with labels 0.6*A + 0.4*B of two hidden signals; returns the signals."""
    root.mkdir(parents=True)
    ids = np.arange(1, labelled + test + 1)
    a, b = rng.uniform(0, 1, (2, len(ids), 6))
    labels = np.clip(0.6 * a + 0.4 * b + rng.normal(0, 0.05, a.shape), 0, 1)
    frame = pd.DataFrame(labels, columns=list(EMI_TARGETS))
    frame.insert(0, "Filename", [f"{i:05d}" for i in ids])
    frame.iloc[:90].to_csv(root / "train_split.csv", index=False)
    frame.iloc[90:labelled].to_csv(root / "valid_split.csv", index=False)
    frame.iloc[labelled:][["Filename"]].to_csv(root / "test_split.csv", index=False)
    keys = [f"{i:05d}" for i in ids]
    return {"a": dict(zip(keys, a)), "b": dict(zip(keys, b))}


def write_fold_files(rw, run, signal, rng, noise, test_keys):
    """oof.csv, test.csv and metrics.json of every fold, in the layout train_fold writes."""
    table, info = runs.read_folds(rw)
    for fold in range(info["k"]):
        held = table.id[table.fold == fold]
        out = rw.fold(run, fold)
        write_predictions(out / "oof.csv", rw.track,
                          {k: signal[k] + rng.normal(0, noise, np.shape(signal[k])) for k in held})
        write_predictions(out / "test.csv", rw.track,
                          {k: signal[k] + rng.normal(0, noise, np.shape(signal[k])) for k in test_keys})
        (out / "metrics.json").write_text(json.dumps({"held_score": 0.0, "seconds": 0.0}))


def test_ensemble_command_blends_emi_runs_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data, work = tmp_path / "data", tmp_path / "work"
    signals = fake_emi_release(data, rng)
    assert folds.main(["--data", str(data), "--work", str(work), "--k", "4"]) == 0
    rw = release_work(work, data)
    test_keys = [f"{i:05d}" for i in range(121, 151)]
    write_fold_files(rw, "a", signals["a"], rng, 0.05, test_keys)
    write_fold_files(rw, "b", signals["b"], rng, 0.05, test_keys)
    useless = {k: rng.uniform(0, 1, 6) for k in signals["a"]}
    write_fold_files(rw, "c", useless, rng, 0.0, test_keys)
    capsys.readouterr()
    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", "a,b,c",
                          "--zip", "blended", "--zip-dir", str(tmp_path / "subs")]) == 0
    out = capsys.readouterr().out
    assert "fitted shared" in out and "fitted per target" in out and "honest" in out and "a alone" in out
    assert "rescale would change nothing" in out

    saved = blend.read_blend(rw.predictions / "blend.json")
    assert saved["track"] == "emi" and saved["runs"] == ["a", "b", "c"] and saved["rescale"] is None
    assert saved["method"] == "fitted" and saved["mode"] in blend.MODES
    weights = np.array([saved["weights"][r] for r in "abc"])
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-9)
    assert (weights[2] < 0.05).all() and (weights[0] > weights[1]).all()
    chosen = saved["scores"]["blends"][saved["scores"]["chosen"]]
    assert chosen["honest"] > saved["scores"]["blends"]["equal"]["honest"]
    assert chosen["honest"] > max(saved["scores"]["single"].values())

    # oof.csv is the blend's own out-of-fold predictions: scoring it gives the honest estimate.
    release_targets = {k: np.asarray(v) for k, v in zip(*_labels(data))}
    oof = read_predictions(rw.predictions / "oof.csv", EMI)
    assert sorted(oof) == sorted(release_targets)
    assert score_predictions(EMI, oof, release_targets)["mean"] == pytest.approx(chosen["honest"], abs=1e-5)
    # test.csv is the saved blend applied to each run's fold-averaged test predictions.
    test_by_run = {r: inference.run_predictions(rw, r)[1] for r in "abc"}
    expected = blend.apply_blend(saved, test_by_run, EMI.low, EMI.high)
    test = read_predictions(rw.predictions / "test.csv", EMI)
    assert sorted(test) == test_keys
    np.testing.assert_allclose(np.stack([test[k] for k in test_keys]), np.stack([expected[k] for k in test_keys]),
                               atol=1e-6)
    assert check_zip(tmp_path / "subs" / "blended.zip", data) == []

    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", "a,b,c", "--equal",
                          "--out", str(tmp_path / "eq")]) == 0
    equal = blend.read_blend(tmp_path / "eq" / "blend.json")
    assert equal["method"] == "equal" and all(w == pytest.approx([1 / 3] * 6) for w in equal["weights"].values())
    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", "a", "--out", str(tmp_path / "one")]) == 0
    assert blend.read_blend(tmp_path / "one" / "blend.json")["weights"] == {"a": [1.0] * 6}


def _labels(data):
    from solution.layouts import EmiRelease

    release = EmiRelease(data)
    keys = list(release.labelled_keys())
    return keys, [release.video_targets(k) for k in keys]


def test_ensemble_command_names_what_is_wrong(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data, work = tmp_path / "data", tmp_path / "work"
    signals = fake_emi_release(data, rng, labelled=40, test=5)
    assert folds.main(["--data", str(data), "--work", str(work), "--k", "3"]) == 0
    rw = release_work(work, data)
    test_keys = [f"{i:05d}" for i in range(41, 46)]
    for run in "ab":
        write_fold_files(rw, run, signals[run], rng, 0.05, test_keys)
    args = ["--data", str(data), "--work", str(work), "--out", str(tmp_path / "p"), "--runs"]

    oof = read_predictions(rw.fold("b", 0) / "oof.csv", EMI)
    write_predictions(rw.fold("b", 0) / "oof.csv", EMI, dict(list(oof.items())[1:]))
    assert ensemble.main(args + ["a,b"]) == 2
    assert "predict different out-of-fold videos" in capsys.readouterr().err
    write_predictions(rw.fold("b", 0) / "oof.csv", EMI, oof)

    text = (rw.fold("b", 1) / "test.csv").read_text().splitlines()
    (rw.fold("b", 1) / "test.csv").write_text("\n".join(text[:2] + [text[2].rsplit(",", 1)[0] + ",nan"] + text[3:]) + "\n")
    assert ensemble.main(args + ["a,b"]) == 2
    assert "b" in capsys.readouterr().err
    write_fold_files(rw, "b", signals["b"], rng, 0.05, test_keys)

    (rw.fold("b", 2) / "metrics.json").unlink()
    assert ensemble.main(args + ["a,b"]) == 2
    assert "fold(s) [2] not finished" in capsys.readouterr().err
    assert ensemble.main(args + ["a,a"]) == 2
    assert "named twice" in capsys.readouterr().err
    assert ensemble.main(args + ["a"]) == 0
    assert not (tmp_path / "p" / "oof.csv").read_text().count("nan")


def fake_va_release(root, rng, labelled=8, test=3):
    """Annotation files (some frames unannotated), a test listing with frame counts, and a
    30 fps video per name with as many frames (smoothing reads each video's frame rate; an
    annotation that does not fit its video is an error)."""
    ann = root / "annotations" / "VA_Estimation_Challenge"
    truth = {}
    for i in range(labelled):
        name, split = f"vid{i}", "Train_Set" if i < 6 else "Validation_Set"
        frames = int(rng.integers(60, 120))
        values = np.clip(np.cumsum(rng.normal(0, 0.15, (frames, 2)), 0) * 0.3, -1, 1)
        values[rng.integers(0, frames - 10):][:8] = -5
        truth[name] = values
        (ann / split).mkdir(parents=True, exist_ok=True)
        (ann / split / f"{name}.txt").write_text("valence,arousal\n" + "".join(f"{v:.4f},{a:.4f}\n" for v, a in values))
    counts = {f"test{i}": int(rng.integers(40, 80)) for i in range(test)}
    for name, frames in [*((k, len(v)) for k, v in truth.items()), *counts.items()]:
        write_video(root / "batch1" / f"{name}.mp4", np.zeros((frames, 16, 16, 3), np.uint8), 30.0)
    (ann / "test_set.csv").write_text("video,frames\n" + "".join(f"{v},{n}\n" for v, n in counts.items()))
    return truth, counts


def test_ensemble_command_rescales_shrunk_va_blends(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data, work = tmp_path / "data", tmp_path / "work"
    truth, counts = fake_va_release(data, rng)
    assert folds.main(["--data", str(data), "--work", str(work), "--k", "4"]) == 0
    rw = release_work(work, data)
    assert rw.track is VA
    clean = {k: np.where(v == -5, 0.0, v) for k, v in truth.items()}
    test_signal = {k: rng.uniform(-0.5, 0.5, (n, 2)) for k, n in counts.items()}
    for run in "ab":
        shrunk = {k: 0.35 * v for k, v in {**clean, **test_signal}.items()}
        write_fold_files(rw, run, shrunk, rng, 0.03, list(counts))
    capsys.readouterr()
    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", "a,b",
                          "--zip", "va", "--zip-dir", str(tmp_path / "subs")]) == 0
    out = capsys.readouterr().out
    assert "+ rescale" in out
    saved = blend.read_blend(rw.predictions / "blend.json")
    assert saved["rescale"] is not None and all(a > 1.5 for a in saved["rescale"]["scale"])
    scores = saved["scores"]["blends"]
    assert scores[saved["scores"]["chosen"]]["honest"] > scores["shared"]["honest"] + 0.1
    oof = read_predictions(rw.predictions / "oof.txt", VA)
    assert {k: len(v) for k, v in oof.items()} == {k: len(v) for k, v in truth.items()}
    # oof.txt is the whole procedure's honest prediction: way, weights, rescale and smoothing
    # of each fold chosen without it
    assert score_predictions(VA, oof, truth)["mean"] == pytest.approx(saved["scores"]["nested"]["score"], abs=1e-5)
    # Each run alone is scored as it would be submitted alone: rescaled and smoothed as chosen out of fold.
    assert "a alone as submitted alone" in out and set(saved["scores"]["alone_nested"]) == {"a", "b"}
    test = read_predictions(rw.predictions / "test.txt", VA)
    assert {k: len(v) for k, v in test.items()} == counts
    assert check_zip(tmp_path / "subs" / "va.zip", data, "va") == []
    with zipfile.ZipFile(tmp_path / "subs" / "va.zip") as archive:
        assert archive.namelist() == ["predictions.txt"]
    assert ensemble.main(["--data", str(data), "--work", str(work), "--runs", "a,b", "--no-rescale",
                          "--out", str(tmp_path / "raw")]) == 0
    assert blend.read_blend(tmp_path / "raw" / "blend.json")["rescale"] is None
