"""The report folder: summary.md and its PNG plots, on small real runs (EMI and VA)."""
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import features_only_release
from solution import ensemble, folds, plots, report
from solution.evaluate import evaluate_emi, evaluate_va
from solution.layouts import EmiRelease
from solution.predictions import read_predictions
from solution.runs import release_work
from solution.tracks import EMI
from solution.train_fold import main as train_main

LINEAR = ["--set", "seeds=1", "--threads", "1"]
STAGES = [
    {"settings": {"TRACK": "emi", "MODELS": "linear,linear_b", "FOLDS": "3"}},
    {"config": "[train]\nepochs = 3\n"},
    {"stage": "2/7 features", "seconds": 12.0, "command": "python -m solution.features --data D --work W --workers 2"},
    {"stage": "4/7 training", "seconds": 30.0, "command": "python -m solution.train_fold --model linear --fold 0",
     "unknown": "ignored"},
]


def own_work(features_work, data, tmp, k):
    """A work folder of its own (runs and blend), sharing the session's extracted features."""
    shutil.copytree(features_work / "features", tmp / "features")
    assert folds.main(["--data", str(data), "--work", str(tmp), "--k", str(k)]) == 0
    return tmp


@pytest.fixture(scope="module")
def emi_report(emi_data, emi_features, tmp_path_factory):
    """Two linear runs over 3 folds, their blend, and the report with a stages file whose
    last line was cut off mid-write."""
    work = own_work(emi_features, emi_data, tmp_path_factory.mktemp("report_emi"), 3)
    for name, extra in (("linear", ["--set", "epochs=3"]), ("linear_b", ["--set", "epochs=2", "--set", "lr=3e-3"])):
        for fold in range(3):
            assert train_main(["--model", "linear", "--name", name, "--fold", str(fold), "--data", str(emi_data),
                               "--work", str(work)] + extra + LINEAR) == 0
    assert ensemble.main(["--data", str(emi_data), "--work", str(work), "--runs", "linear,linear_b"]) == 0
    stages = work / "stages.jsonl"
    stages.write_text("".join(json.dumps(s) + "\n" for s in STAGES) + '{"stage": "5/7 rep')
    assert report.main(["--data", str(emi_data), "--work", str(work), "--runs", "linear,linear_b",
                        "--stages", str(stages)]) == 0
    rw = release_work(work, emi_data)
    return rw, rw.root / "report"


def row(summary: str, first: str) -> list[str]:
    """The cells of the first Markdown table row starting with `first`."""
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells[1:]
    raise AssertionError(f"no table row {first!r}")


def listed_pngs(summary: str) -> set[str]:
    return set(re.findall(r"\]\(([^)]+\.png)\)", summary))


def assert_valid_png(path):
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        image.load()  # a truncated file fails here, not at open


def test_summary_names_every_run_with_its_fold_scores(emi_report):
    rw, out = emi_report
    summary = (out / "summary.md").read_text()
    saved = json.loads((out / "report.json").read_text())
    assert json.loads(rw.report_json.read_text()) == saved
    for run in ("linear", "linear_b"):
        cells = row(summary, run)
        held = [json.loads((rw.fold(run, f) / "metrics.json").read_text())["held_score"] for f in range(3)]
        assert [float(c) for c in cells[:3]] == pytest.approx(held, abs=5e-5)
        assert float(cells[3]) == pytest.approx(saved["runs"][run]["oof"], abs=5e-5)
        # the training settings of each run, as metrics.json recorded them
        assert f"### {run}" in summary
        assert saved["runs"][run]["settings"]["train"]["epochs"] == (3 if run == "linear" else 2)
    assert row(summary, "ceiling (noise-free, synthetic)")[3] == f"{saved['ceiling']:.4f}"


def test_blend_weights_and_estimates_are_blend_json(emi_report):
    rw, out = emi_report
    summary = (out / "summary.md").read_text()
    blend = json.loads((rw.predictions / "blend.json").read_text())
    saved = json.loads((out / "report.json").read_text())["blend"]
    assert saved["weights"] == blend["weights"] and saved["mode"] == blend["mode"]
    weights = summary.split("Weights:")[1]
    for run, values in blend["weights"].items():
        assert [float(c) for c in row(weights, run)] == pytest.approx(values, abs=5e-4)
    chosen = blend["scores"]["blends"][blend["scores"]["chosen"]]
    nested = blend["scores"]["nested"]
    assert f"honest (out-of-fold) estimate of the whole procedure: **{nested['score']:.4f}**" in summary
    assert all(f"fold {p} {way}" in summary for p, way in nested["way_by_part"].items())
    assert f"the chosen way's own honest estimate: {chosen['honest']:.4f}" in summary
    assert f"in-sample: {chosen['in_sample']:.4f}" in summary
    assert f"**{blend['scores']['chosen']}**" in summary


def test_hidden_test_scores_are_labelled_synthetic(emi_report, emi_data):
    rw, out = emi_report
    summary = (out / "summary.md").read_text()
    assert "## Test score (synthetic data only)" in summary
    truth = evaluate_emi(rw.predictions / "test.csv", emi_data / "private" / "test_labels.csv")
    assert float(row(summary.split("## Test score")[1], "blend")[0]) == pytest.approx(truth["mean"], abs=5e-5)
    assert set(json.loads((out / "report.json").read_text())["runs"]["linear"]["test_synthetic"]) == {"mean", "per_dim"}


def test_stages_commands_and_settings(emi_report):
    _, out = emi_report
    summary = (out / "summary.md").read_text()
    assert row(summary, "2/7 features") == ["12"] and row(summary, "total") == ["42"]
    assert "python -m solution.features --data D --work W --workers 2" in summary
    assert row(summary, "MODELS") == ["`linear,linear_b`"]
    assert "```toml\n[train]\nepochs = 3\n```" in summary
    assert "1 unreadable line(s)" in summary and "5/7 rep" not in summary


def test_every_listed_plot_is_a_png(emi_report):
    _, out = emi_report
    summary = (out / "summary.md").read_text()
    listed = listed_pngs(summary)
    assert {"pred_vs_true.png", "fold_scores.png", "training_curves.png", "blend_weights.png",
            "score_by_condition.png"} <= listed
    assert listed == {p.name for p in out.glob("*.png")}  # nothing drawn but unlisted, nothing listed but missing
    for name in listed:
        assert_valid_png(out / name)
    assert "fusion_by_condition.png (" not in summary  # the linear model has no fusion weights: not drawn, not listed


def test_without_blend_conditions_or_hidden_labels(emi_report, emi_data, tmp_path, capsys):
    """The organizers' release (no metadata, no private labels) and no blend: the report
    says what is absent and still draws what it can, from the best run."""
    rw, _ = emi_report
    plain = features_only_release(emi_data, tmp_path / "plain")
    work = tmp_path / "work"
    shutil.copytree(rw.root, work / rw.root.name)  # the same release (same labelled ids), apart from the fixture's
    out = tmp_path / "out"
    assert report.main(["--data", str(plain), "--work", str(work), "--runs", "linear_b",
                        "--blend-dir", str(tmp_path / "none"), "--out", str(out), "--stages", str(tmp_path / "absent")]) == 0
    summary = (out / "summary.md").read_text()
    assert "No blend.json" in summary and "Test score" not in summary and "Scores by condition" not in summary
    assert "No stages file" in summary
    assert listed_pngs(summary) == {"pred_vs_true.png", "fold_scores.png", "training_curves.png"}
    assert "linear_b's (best run)" in summary
    for name in listed_pngs(summary):
        assert_valid_png(out / name)
    assert "not drawn" not in capsys.readouterr().err


def test_a_missing_fold_is_named(emi_report, emi_data, capsys):
    rw, _ = emi_report
    shutil.copytree(rw.run("linear"), rw.run("partial"))
    (rw.fold("partial", 1) / "metrics.json").unlink()
    try:
        assert report.main(["--data", str(emi_data), "--work", str(rw.root.parent), "--runs", "linear,partial"]) == 2
        assert "partial: fold(s) [1] not finished" in capsys.readouterr().err
    finally:
        shutil.rmtree(rw.run("partial"))


def test_plots_survive_nan_one_fold_and_one_run(tmp_path):
    """Each plot on the thinnest data: one run, one fold, NaN scores, a log without inner
    scores, a condition too small to score, a single frame."""
    log = pd.DataFrame({"phase": ["main"], "epoch": [1], "train_loss": [math.nan], "inner_score": [math.nan]})
    plots.fold_scores(tmp_path / "a.png", {"only": [math.nan]}, {"only": math.nan}, "ccc", None)
    plots.training_curves(tmp_path / "b.png", {"only": [log]}, "ccc")
    plots.blend_weights(tmp_path / "c.png", {"only": [1.0, 1.0]}, ("valence", "arousal"), "per_target")
    plots.score_by_condition(tmp_path / "d.png", {"only": {"face=ok": math.nan}}, {"face=ok": 9, "face=missing": 1}, "ccc")
    plots.fusion_by_condition(tmp_path / "e.png", {"only": [{"condition": "face=ok", "videos": 3, "w_visual": 0.5,
                                                             "w_audio": math.nan}]})
    plots.pred_vs_true(tmp_path / "f.png", np.zeros((1, 2)), np.zeros((1, 2)), ("valence", "arousal"),
                       {"valence": math.nan}, "ccc", -1.0, 1.0, "one frame")
    plots.va_timeseries(tmp_path / "g.png", [("v", np.arange(3), np.full((3, 2), np.nan), np.zeros((3, 2)), {})],
                        ("valence", "arousal"), "ccc", "frame", "all unannotated")
    for name in "abcdefg":
        assert_valid_png(tmp_path / f"{name}.png")
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary file behind


def test_va_report_draws_videos_over_time(va_data, va_features, tmp_path):
    work = own_work(va_features, va_data, tmp_path / "work", 2)
    for fold in range(2):
        assert train_main(["--model", "linear", "--fold", str(fold), "--data", str(va_data), "--work", str(work),
                           "--set", "epochs=2", "--set", "window=30", "--set", "hop=20"] + LINEAR) == 0
    assert ensemble.main(["--data", str(va_data), "--work", str(work), "--runs", "linear"]) == 0
    assert report.main(["--data", str(va_data), "--work", str(work), "--runs", "linear"]) == 0
    rw = release_work(work, va_data)
    out = rw.root / "report"
    summary = (out / "summary.md").read_text()
    assert "va_timeseries.png" in listed_pngs(summary) and "test videos against the hidden labels" in summary
    for name in listed_pngs(summary):
        assert_valid_png(out / name)
    truth = evaluate_va(rw.predictions / "test.txt", va_data / "private" / "VA_Estimation_Challenge" / "Test_Set")
    assert float(row(summary.split("## Test score")[1], "blend")[0]) == pytest.approx(truth["mean"], abs=5e-5)
    assert row(summary.split("## Frame level")[1], "linear")[-1].endswith("frames)")


def test_report_and_ensemble_name_what_is_missing(emi_data, trained, tmp_path, capsys):
    from solution import ensemble, report

    assert report.main(["--data", str(emi_data), "--work", str(tmp_path)]) == 2
    assert "no trained runs" in capsys.readouterr().err
    assert report.main(["--data", str(emi_data), "--work", str(trained), "--runs", "absent"]) == 2
    assert "fold(s) [0, 1, 2] not finished" in capsys.readouterr().err
    assert ensemble.main(["--data", str(emi_data), "--work", str(trained), "--runs", "dual_stage",
                          "--out", str(tmp_path / "p")]) == 0
    assert len(read_predictions(tmp_path / "p" / "test.csv", EMI)) == len(EmiRelease(emi_data).test_ids())


def test_report_shows_scores_and_fusion_weights_by_condition(emi_data, trained, capsys):
    from solution import report

    assert report.main(["--data", str(emi_data), "--work", str(trained), "--runs", "dual_stage,linear"]) == 0
    out = capsys.readouterr().out
    assert "mean fusion weights of dual_stage by condition" in out and "face=ok" in out
    assert "OOF by condition" in out
    rw = release_work(trained, emi_data)
    table = report.fusion_by_condition(emi_data, rw, "dual_stage")
    missing_text = table[table.condition == "transcript=missing"]
    assert len(missing_text) and missing_text.w_text.iloc[0] == 0.0
    saved = json.loads(rw.report_json.read_text())
    assert "face=ok" in saved["runs"]["linear"]["score_by_condition"]
    assert report.fusion_by_condition(emi_data, rw, "linear") is None
