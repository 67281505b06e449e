"""The quality panel (bench/quality.py): its scores against an independent computation, its
bookkeeping (results of several invocations of one tag add up, means over the releases every
run holds, --table prints a file back), the paired comparison and its intervals."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(release, kind, run, test, oof=0.5, panel="tune", train_args=""):
    return {"bench": "quality", "panel": panel, "tag": "t", "release": release, "kind": kind, "run": run,
            "oof": oof, "test": test, "oof_share": oof, "test_share": test / 2, "train_args": train_args,
            "machine": {}}


def test_an_earlier_invocation_is_kept_and_a_remeasured_release_replaced(quality, tmp_path):
    path = tmp_path / "results-t.jsonl"
    quality.write_records(path, [record("emi-media-101", "emi-media", "linear", 0.2),
                                 record("va-301", "va", "linear", 0.6),
                                 record("va-302", "va", "linear", 0.7, train_args="--set x=1"),
                                 record("mean all", "all", "linear", 0.4)])
    kept = quality.earlier_records(path, {"va-301"}, "tune", "")
    assert [r["release"] for r in kept] == ["emi-media-101"]  # va-301 measured again, va-302 other settings, means dropped
    assert quality.earlier_records(tmp_path / "none.jsonl", set(), "tune", "") == []
    means = quality.means(kept + [record("va-301", "va", "linear", 0.8)], ["emi-media", "va"], ["linear"],
                          "tune", "t", "", {})
    by = {(m["release"], m["run"]): m for m in means}
    assert by[("mean all", "linear")]["test"] == pytest.approx(0.5)
    assert by[("mean va", "linear")]["releases"] == 1


def test_table_prints_a_results_file(quality, tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [record("va-301", "va", "linear", 0.6),
                                                            record("va-301", "va", "blend", 0.7)]))
    assert quality.print_table(path) == 0
    out = capsys.readouterr().out
    assert "| va-301 | 0.600 (0.30) / 0.500 | 0.700 (0.35) / 0.500 |" in out
    assert "| **mean all** (1) |" in out
    assert quality.print_table(tmp_path / "missing.jsonl") == 1


def test_table_prints_one_table_per_tag(quality, tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    rows = [record("va-301", "va", "foalnet", 0.5), {**record("va-301", "va", "foalnet", 0.6, train_args="--set x=1"),
                                                     "tag": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert quality.print_table(path) == 0
    out = capsys.readouterr().out
    assert "t (tune panel):" in out and "x (tune panel, --set x=1):" in out
    assert "| va-301 | 0.500 (0.25) / 0.500 |" in out and "| va-301 | 0.600 (0.30) / 0.500 |" in out


def test_panel_must_be_named_to_run(quality, capsys):
    """No default panel: an ablation run without --panel stops before writing anything."""
    with pytest.raises(SystemExit) as stopped:
        quality.main(["--tag", "x", "--dir", "/nonexistent/quality"])
    assert stopped.value.code == 2 and "--panel tune or --panel report is required" in capsys.readouterr().err


def test_means_are_over_the_releases_every_run_holds(quality):
    rows = [record("va-301", "va", "a", 0.6), record("va-301", "va", "blend", 0.7),
            record("va-302", "va", "a", 0.2)]  # va-302 has no blend: left out of every mean
    by = {(m["release"], m["run"]): m for m in quality.means(rows, ["va"], ["a"], "tune", "t", "", {})}
    assert by[("mean va", "a")]["test"] == pytest.approx(0.6) and by[("mean va", "a")]["releases"] == 1
    assert quality.common_releases(rows, ["a", "blend"]) == ["va-301"]


def test_compare_gives_paired_intervals_and_cost(quality, tmp_path):
    """B - A per release, its mean and 95 % interval as scipy's paired t-test gives them,
    only over the releases both hold, and the score per extra CPU-hour."""
    from scipy import stats

    rng = np.random.default_rng(1)
    names = [f"emi-media-{i}" for i in range(6)]
    a = rng.uniform(0.3, 0.6, 6)
    b = a + 0.02 + rng.normal(0, 0.01, 6)
    rows_a = [{**record(n, "emi-media", "m", t), "tag": "A", "cpu": 3600.0} for n, t in zip(names, a)]
    rows_b = [{**record(n, "emi-media", "m", t), "tag": "B", "cpu": 7200.0} for n, t in zip(names[:5], b[:5])]
    quality.write_records(tmp_path / "results-A.jsonl", rows_a)
    quality.write_records(tmp_path / "results-B.jsonl", rows_b)
    text, records = quality.compare("A", "B", tmp_path)
    test = records[0]["test"]
    expected = stats.ttest_rel(b[:5], a[:5]).confidence_interval(0.95)
    assert test["n"] == 5 and records[0]["releases"] == names[:5]
    assert test["mean"] == pytest.approx(float(np.mean(b[:5] - a[:5])), abs=1e-5)
    assert (test["low"], test["high"]) == pytest.approx((expected.low, expected.high), abs=1e-5)
    assert test["verdict"] == ("above zero" if expected.low > 0 else "within noise")
    assert records[0]["test_per_cpu_hour"] == pytest.approx(test["mean"] / 1.0, rel=1e-3)  # one extra CPU-hour
    assert "| emi-media-5 |" not in text and "| emi-media-4 |" in text
    assert "gained per CPU-h spent" in text
    # The cheaper side that scores lower: a loss per CPU-hour saved, never read as a gain.
    text, records = quality.compare("B", "A", tmp_path)
    assert records[0]["test"]["mean"] < 0 and "lost per CPU-h saved" in text
    # A release scored on other held-back test videos (a learning curve's) is not paired.
    quality.write_records(tmp_path / "results-C.jsonl", [{**r, "tag": "C", "test_digest": "other"} for r in rows_b])
    text, records = quality.compare("A", "C", tmp_path)
    assert records == [] and "no release of both scored on the same held-back test videos" in text
    # Two runs of one file; a run named on one side only is refused.
    text, records = quality.compare("A:m", "A:m", tmp_path)
    assert records[0]["test"]["mean"] == 0 and records[0]["test"]["verdict"] == "within noise"
    with pytest.raises(SystemExit, match="on both sides"):
        quality.compare("A:m", "B", tmp_path)
    with pytest.raises(SystemExit, match="no results file"):
        quality.compare("A", "nothing", tmp_path)


def _fold_files(rw, run, make, test_keys, cpu):
    """Each fold's oof.csv, test.csv and metrics.json as train_fold writes them, from `make(key)`."""
    from solution import runs
    from solution.predictions import write_predictions

    table, info = runs.read_folds(rw)
    for fold in range(info["k"]):
        files = rw.fold_files(run, fold)
        write_predictions(files.oof, rw.track, {k: make(k) for k in table.id[table.fold == fold]})
        write_predictions(files.test, rw.track, {k: make(k) for k in test_keys})
        files.metrics.write_text(json.dumps({"fold": fold, "held_score": 0.0, "seconds": 1.0, "cpu_seconds": cpu,
                                                      "commit": "abc", "at": "2026-12-06T00:00:00Z",
                                                      "settings": {"fold": fold, "train": {"lr": 1}}}))


def test_score_release_matches_an_independent_computation(quality, emi_data, tmp_path):
    """The panel's EMI numbers recomputed by hand with numpy: out-of-fold Pearson pooled over
    the labelled videos, held-back test Pearson of the fold-averaged test predictions, the
    ceiling shares, the training CPU and the settings digest."""
    import pandas as pd

    from solution import ensemble, folds
    from solution.layouts import open_release
    from solution.predictions import prediction_filename
    from solution.runs import release_work

    work = tmp_path / "work"
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", "3"]) == 0
    rw = release_work(work, emi_data)
    release = open_release("emi", emi_data)
    clean = pd.read_csv(emi_data / "private" / "clean_intensities.csv", dtype={"Filename": str})
    clean = {f.zfill(5): row for f, row in zip(clean.Filename, clean.iloc[:, 1:].to_numpy(np.float64))}
    rng = np.random.default_rng(0)
    noisy = {run: {k: np.clip(v + rng.normal(0, noise, 6), 0, 1) for k, v in clean.items()}
             for run, noise in (("a", 0.05), ("b", 0.2))}
    test_keys = release.test_keys()
    for run in noisy:
        _fold_files(rw, run, noisy[run].__getitem__, test_keys, cpu=10.0)
    assert ensemble.main(["--data", str(emi_data), "--work", str(work), "--runs", "a,b"]) == 0
    rows = {r["run"]: r for r in quality.score_release(emi_data, work, ["a", "b"])}

    def pearson(pred: dict, truth: dict) -> float:
        keys = sorted(truth)
        p, t = np.stack([pred[k] for k in keys]), np.stack([truth[k] for k in keys])
        return float(np.mean([np.corrcoef(p[:, d], t[:, d])[0, 1] for d in range(6)]))

    labels = pd.concat([pd.read_csv(emi_data / f, dtype={"Filename": str}) for f in ("train_split.csv", "valid_split.csv")])
    labels = {f.zfill(5): row for f, row in zip(labels.Filename, labels.iloc[:, 1:].to_numpy(np.float64))}
    hidden = pd.read_csv(emi_data / "private" / "test_labels.csv", dtype={"Filename": str})
    hidden = {f.zfill(5): row for f, row in zip(hidden.Filename, hidden.iloc[:, 1:].to_numpy(np.float64))}
    ceiling = pearson(clean, labels)
    assert ceiling == pytest.approx(quality.labelled_ceiling(emi_data, json.loads((emi_data / "ceiling.json").read_text()),
                                                             release.track), abs=1e-4)
    for run in noisy:
        assert rows[run]["oof"] == pytest.approx(pearson(noisy[run], labels), abs=1e-4)
        assert rows[run]["test"] == pytest.approx(pearson(noisy[run], hidden), abs=1e-4)
        assert rows[run]["oof_share"] == pytest.approx(rows[run]["oof"] / ceiling, abs=2e-4)
        assert rows[run]["cpu"] == 30.0 and [f["commit"] for f in rows[run]["folds"]] == ["abc"] * 3
        assert rows[run]["way"] == "single"
    assert rows["a"]["settings"] == rows["b"]["settings"]  # trained alike: the same digest
    test_ceiling = json.loads((emi_data / "ceiling.json").read_text())["test"]["mean"]
    assert rows["a"]["test_share"] == pytest.approx(rows["a"]["test"] / test_ceiling, abs=2e-4)
    from solution.predictions import read_predictions

    blend_oof = read_predictions(rw.predictions / prediction_filename(rw.track, "oof"), rw.track)
    assert rows["blend"]["oof"] == pytest.approx(pearson(blend_oof, labels), abs=1e-4)
    assert rows["blend"]["way"] in ("shared", "per_target") and rows["blend"]["cpu"] == 60.0
    assert rows["blend"]["oof"] > rows["b"]["oof"] and "face=ok" in rows["blend"]["by_condition"]["oof"]


def test_labelled_ceiling_without_its_entry_is_computed_again(quality, emi_data):
    """Releases written before ceiling.json had a "labelled" entry: EMI recomputes it from the
    clean intensities; VA weighs the train and valid ceilings by their frames."""
    from solution.layouts import open_release
    from solution.tracks import VA

    ceiling = json.loads((emi_data / "ceiling.json").read_text())
    track = open_release("emi", emi_data).track
    recorded = quality.labelled_ceiling(emi_data, ceiling, track)
    del ceiling["labelled"]
    assert quality.labelled_ceiling(emi_data, ceiling, track) == pytest.approx(recorded, abs=1e-4)
    va = {"train": {"mean": 0.8, "frames": 100}, "valid": {"mean": 0.6, "frames": 300}, "test": {"mean": 0.1, "frames": 9}}
    assert quality.labelled_ceiling(emi_data, va, VA) == pytest.approx(0.65)


def test_score_release_of_perfect_va_predictions_is_one(quality, va_data, tmp_path):
    """VA: predictions equal to the annotations score CCC 1 out of fold and on the held-back
    test, whatever rescale and smoothing the procedure chooses; shares divide by the ceilings."""
    from solution import ensemble, folds
    from solution.layouts import open_release, read_va_annotation
    from solution.runs import release_work

    work = tmp_path / "work"
    assert folds.main(["--data", str(va_data), "--work", str(work), "--k", "3"]) == 0
    rw = release_work(work, va_data)
    release = open_release("va", va_data)
    hidden = {f.stem: read_va_annotation(f) for f in
              (va_data / "private" / "VA_Estimation_Challenge" / "Test_Set").glob("*.txt")}
    truth = {**{k: release.video_targets(k) for k in release.labelled_keys()}, **hidden}

    def perfect(key):
        value = truth[key]
        return np.where(value == -5, 0.0, value)

    for run in ("a", "b"):
        _fold_files(rw, run, perfect, release.test_keys(), cpu=5.0)
    assert ensemble.main(["--data", str(va_data), "--work", str(work), "--runs", "a,b"]) == 0
    rows = {r["run"]: r for r in quality.score_release(va_data, work, ["a", "b"])}
    ceiling = json.loads((va_data / "ceiling.json").read_text())
    for run in ("a", "blend"):
        assert rows[run]["oof"] == pytest.approx(1.0, abs=1e-3) and rows[run]["test"] == pytest.approx(1.0, abs=1e-3)
        assert rows[run]["test_share"] == pytest.approx(rows[run]["test"] / ceiling["test"]["mean"], abs=2e-4)
        assert rows[run]["oof_share"] == pytest.approx(rows[run]["oof"] / ceiling["labelled"]["mean"], abs=2e-4)


@pytest.mark.parametrize("track", ["emi", "va"])
def test_a_learning_curve_subset_keeps_the_test_videos(quality, emi_data, va_data, tmp_path, track):
    """A share of the labelled subjects, whole; the same test videos and hidden labels; a
    release the preflight check accepts; made once (a second call reuses it)."""
    import pandas as pd

    from solution import inspect
    from solution.layouts import open_release

    source = emi_data if track == "emi" else va_data
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".txt")}
    out = quality.derive_subset(source, tmp_path / "half", 0.5, seed=3)
    # The source release is untouched, though the subset's files are hard links to its own.
    assert {p: p.read_bytes() for p in before} == before
    full, half = open_release(track, source), open_release(track, out)
    assert half.test_keys() == full.test_keys()
    assert set(half.labelled_keys()) < set(full.labelled_keys())
    meta = pd.read_csv(source / "metadata.csv", dtype=str)
    id_column = "Filename" if track == "emi" else "video"
    subject = dict(zip(meta[id_column], meta.subject))
    kept = {subject[k] for k in half.labelled_keys()}
    assert all(subject[k] not in kept for k in set(full.labelled_keys()) - set(half.labelled_keys()))
    assert len(kept) == max(3, round(0.5 * len({subject[k] for k in full.labelled_keys()})))
    assert inspect.main([str(out), "--track", track, "--folds", "2"]) == 0
    ceiling = json.loads((out / "ceiling.json").read_text())
    assert ceiling["test"] == json.loads((source / "ceiling.json").read_text())["test"]
    if track == "emi":
        clean = pd.read_csv(source / "private" / "clean_intensities.csv", dtype={"Filename": str}).set_index("Filename")
        keys = sorted(half.labelled_keys())
        labels = np.stack([half.video_targets(k) for k in keys])
        truth = clean.loc[keys].to_numpy(np.float64)
        expected = np.mean([np.corrcoef(truth[:, d], labels[:, d])[0, 1] for d in range(6)])
        assert "labelled" not in ceiling  # the source's: computed again for the subset
        assert quality.labelled_ceiling(out, ceiling, half.track) == pytest.approx(expected, abs=1e-4)
    else:
        assert quality.labelled_ceiling(out, ceiling, half.track) is None
    stamp = (out / "subset.json").stat().st_mtime_ns
    assert quality.derive_subset(source, tmp_path / "half", 0.5, seed=3) == out
    assert (out / "subset.json").stat().st_mtime_ns == stamp


def test_reused_folds_are_linked_and_their_logs_copied(quality, tmp_path):
    """--reuse: another tag's finished runs of some models appear in this tag's work folder,
    their files hard links but their logs copies (a later run appends to its folds' logs)."""
    source, target = tmp_path / "work-a" / "rel", tmp_path / "work-b" / "rel"
    for model in ("m1", "m2"):
        fold = source / "emi-abc" / "runs" / model / "fold0"
        fold.mkdir(parents=True)
        (fold / "metrics.json").write_text("{}")
        (fold / "train.log").write_text("trained\n")
    assert quality.reuse_folds(source, target, ["m1"]) == ["m1"]
    linked = target / "emi-abc" / "runs" / "m1" / "fold0"
    assert (linked / "metrics.json").stat().st_ino == (source / "emi-abc/runs/m1/fold0/metrics.json").stat().st_ino
    with open(linked / "train.log", "a") as log:
        log.write("appended\n")
    assert (source / "emi-abc/runs/m1/fold0/train.log").read_text() == "trained\n"
    assert not (target / "emi-abc" / "runs" / "m2").exists()
    # A resumed invocation: the links are left alone and still named as reused
    assert quality.reuse_folds(source, target, ["m1"]) == ["m1"]
    trained_here = target / "emi-abc" / "runs" / "m2" / "fold0"
    trained_here.mkdir(parents=True)
    (trained_here / "metrics.json").write_text("{}")
    assert quality.reuse_folds(source, target, ["m2"]) == []  # this tag's own folds: not reused


def test_run_provenance_says_which_folds_this_invocation_trained(quality):
    import calendar
    import time

    started = calendar.timegm(time.strptime("2026-12-06T12:00:00Z", "%Y-%m-%dT%H:%M:%SZ"))
    metrics = [{"fold": 0, "at": "2026-12-06T11:59:00Z", "cpu_seconds": 10.0, "commit": "a" * 40, "dirty": False,
                "settings": {"fold": 0, "x": 1}},
               {"fold": 1, "at": "2026-12-06T12:01:00Z", "cpu_seconds": 20.0, "settings": {"fold": 1, "x": 1}},
               {"fold": 2, "cpu_seconds": 5.0, "settings": {"fold": 2, "x": 1}}]
    got = quality.run_provenance(metrics, started)
    assert [f["trained"] for f in got["folds"]] == ["earlier", "now", "unknown"]
    assert got["cpu"] == 35.0 and got["folds"][0]["commit"] == "a" * 10
    other = quality.run_provenance([{**m, "settings": {**m["settings"], "x": 2}} for m in metrics], started)
    assert other["settings"] != got["settings"]
    assert quality.run_provenance(metrics[:1] + [{"fold": 1}], started)["cpu"] is None  # one fold's CPU unknown


def test_subject_oracle_removes_each_subjects_offset_only(quality):
    """Predictions off by a constant per subject score far below the labels; with each
    subject's mean moved onto its mean label they score as the rest of their error allows."""
    from solution.metrics import score_predictions
    from solution.tracks import EMI, VA

    rng = np.random.default_rng(2)
    keys = [f"{i:05d}" for i in range(60)]
    subject_of = {k: f"s{i % 6}" for i, k in enumerate(keys)}
    offset = {s: rng.normal(0, 0.5, 6) for s in sorted(set(subject_of.values()))}
    targets = {k: rng.uniform(0, 1, 6) for k in keys}
    noise = {k: rng.normal(0, 0.05, 6) for k in keys}
    preds = {k: targets[k] + noise[k] + offset[subject_of[k]] for k in keys}
    oracle = quality.subject_oracle(EMI, preds, targets, subject_of)
    assert score_predictions(EMI, preds, targets)["mean"] < oracle - 0.2
    centred = {k: targets[k] + noise[k] - np.mean([noise[j] for j in keys if subject_of[j] == subject_of[k]], 0)
               for k in keys}
    assert oracle == pytest.approx(score_predictions(EMI, centred, targets)["mean"], abs=1e-9)
    frames = {k: np.where(np.arange(50)[:, None] < 5, -5.0, rng.uniform(-1, 1, (50, 2))) for k in keys[:4]}
    late = {k: np.where(v == -5, 0.0, v) + 0.4 for k, v in frames.items()}  # every video off by 0.4
    assert quality.subject_oracle(VA, late, frames, {k: k for k in frames}) == pytest.approx(1.0)
