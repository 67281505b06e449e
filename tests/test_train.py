"""Folds and fold training, end to end on the small release's cached features."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import features_only_release
from solution import folds, synth
from solution.ensemble import combine
from solution.layouts import EmiRelease
from solution.metrics import pearson_per_dim
from solution.predictions import read_emi_predictions
from solution.report import build_report
from solution.tracks import EMI_TARGETS
from solution.train_fold import describe_labels, main as train_main, resolve_settings

REPO = Path(__file__).resolve().parent.parent
FAST = ["--set", "epochs=25", "--set", "stage1_epochs=3", "--set", "patience=8", "--set", "model.dim=32",
        "--set", "seeds=1", "--threads", "1"]


@pytest.fixture(scope="session")
def trained(emi_data, emi_features, tmp_path_factory):
    """3 grouped folds; every fold of dual_stage and of linear."""
    work = tmp_path_factory.mktemp("trained")
    shutil.copytree(emi_features / "features", work / "features")
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", "3"]) == 0
    for model in ("dual_stage", "linear"):
        for fold in range(3):
            args = ["--model", model, "--fold", str(fold), "--data", str(emi_data), "--work", str(work)]
            assert train_main(args + (FAST if model == "dual_stage" else ["--set", "seeds=1"])) == 0
    return work


def test_folds_are_grouped_balanced_and_shared(emi_data, tmp_path):
    table, info = folds.make_folds(emi_data, k=3, seed=0)
    meta = EmiRelease(emi_data).metadata()
    assert table.groupby("group").fold.nunique().max() == 1  # no subject in two folds
    sizes = table.fold.value_counts()
    assert sizes.max() - sizes.min() <= meta.subject.value_counts().max()
    assert info["grouping"] == "subject" and info["k"] == 3
    folds.write_folds(tmp_path, table, info)
    again, _ = folds.read_folds(tmp_path, emi_data)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    official, official_info = folds.make_folds(emi_data, scheme="official")
    assert official_info["k"] == 1
    assert set(official.fold[official.split == "valid"]) == {0} and set(official.fold[official.split == "train"]) == {-1}


def test_fold_file_from_another_dataset_is_refused(emi_data, tmp_path, capsys):
    other = tmp_path / "other"
    synth.generate("emi", other, seed=99, workers=1, videos=12, subjects=6, seconds=1.0, fps=8.0, size=48)
    assert folds.main(["--data", str(other), "--work", str(tmp_path / "w"), "--k", "2"]) == 0
    with pytest.raises(folds.DataError, match="made for another dataset"):
        folds.read_folds(tmp_path / "w", emi_data)
    assert folds.main(["--data", str(emi_data), "--work", str(tmp_path / "w"), "--k", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_training_outputs_and_scores(emi_data, trained):
    labels = EmiRelease(emi_data).labelled()
    test_ids = EmiRelease(emi_data).test_ids()
    fold_table, _ = folds.read_folds(trained)
    for fold in range(3):
        run = trained / "runs" / "dual_stage" / f"fold{fold}"
        for name in ("oof.csv", "test.csv", "metrics.json", "fusion_weights.csv", "seed0/best.pt", "seed0/last.pt",
                     "seed0/log.csv", "seed0/predictions.npz"):
            assert (run / name).is_file(), name
        oof = read_emi_predictions(run / "oof.csv")
        assert sorted(oof.index) == sorted(int(v) for v in fold_table.id[fold_table.fold == fold])
        assert sorted(read_emi_predictions(run / "test.csv").index) == test_ids
        log = pd.read_csv(run / "seed0" / "log.csv")
        assert (log.phase == "stage1").sum() == 3 and (log.phase == "stage2").sum() >= 1
        weights = pd.read_csv(run / "fusion_weights.csv")
        np.testing.assert_allclose(weights.filter(like="w_").sum(axis=1), 1.0, atol=1e-5)
    report = build_report(emi_data, trained, ["dual_stage", "linear"])
    # The trained model beats the trivial predictor (a constant scores 0) out of fold.
    assert report["runs"]["dual_stage"]["oof"] > 0.15
    assert report["runs"]["linear"]["oof"] > 0.05
    assert report["ceiling"] > report["runs"]["dual_stage"]["oof"]
    oof, test = combine(trained, ["dual_stage"])
    assert len(oof) == len(labels) and sorted(test.index) == test_ids
    assert pearson_per_dim(oof.to_numpy(), labels.loc[oof.index, list(EMI_TARGETS)].to_numpy()).mean() == \
        pytest.approx(report["runs"]["dual_stage"]["oof"], abs=1e-6)


def test_finished_fold_is_skipped(emi_data, trained, capsys, caplog):
    stamp = (trained / "runs" / "linear" / "fold0" / "metrics.json").stat().st_mtime
    assert train_main(["--model", "linear", "--fold", "0", "--data", str(emi_data), "--work", str(trained)]) == 0
    assert (trained / "runs" / "linear" / "fold0" / "metrics.json").stat().st_mtime == stamp


def _train(emi_data, work, *extra):
    return train_main(["--model", "dual_stage", "--fold", "1", "--data", str(emi_data), "--work", str(work),
                       *FAST, *extra])


def _work_copy(trained, tmp_path, name):
    work = tmp_path / name
    work.mkdir()
    for item in ("features", "folds.csv", "folds.json"):
        (shutil.copytree if item == "features" else shutil.copy)(trained / item, work / item)
    return work


def test_same_seed_same_predictions_and_killed_fold_resumes(emi_data, trained, tmp_path):
    reference = trained / "runs" / "dual_stage" / "fold1"
    again = _work_copy(trained, tmp_path, "again")
    assert _train(emi_data, again) == 0
    assert (again / "runs/dual_stage/fold1/oof.csv").read_bytes() == (reference / "oof.csv").read_bytes()
    # Kill a run once it has checkpointed a few epochs, then rerun: it resumes and ends where
    # an uninterrupted run ends.
    killed = _work_copy(trained, tmp_path, "killed")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "solution.train_fold", "--model", "dual_stage", "--fold", "1", "--data", str(emi_data),
           "--work", str(killed), *FAST]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "runs/dual_stage/fold1/seed0/log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(pd.read_csv(log)) >= 6:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (killed / "runs/dual_stage/fold1/metrics.json").exists(), "finished before it could be killed"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    assert (killed / "runs/dual_stage/fold1/oof.csv").read_bytes() == (reference / "oof.csv").read_bytes()


def test_ablation_switches(emi_data, trained, tmp_path):
    work = _work_copy(trained, tmp_path, "ablate")
    assert _train(emi_data, work, "--no-stage1", "--fusion", "concat", "--name", "ds_plain") == 0
    run = work / "runs/ds_plain/fold1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["settings"]["model_config"]["stage1"] is False
    assert metrics["settings"]["model_config"]["fusion"] == "concat"
    assert (pd.read_csv(run / "seed0" / "log.csv").phase == "stage1").sum() == 0
    weights = pd.read_csv(run / "fusion_weights.csv").filter(like="w_")
    # Concatenation weighs every present modality alike.
    assert np.allclose(weights.max(axis=1), weights.apply(lambda r: 1 / (r > 0).sum(), axis=1))


def test_seeds_are_averaged(emi_data, trained, tmp_path):
    work = _work_copy(trained, tmp_path, "seeds")
    args = ["--model", "linear", "--fold", "0", "--data", str(emi_data), "--work", str(work), "--threads", "1",
            "--set", "epochs=10"]
    assert train_main(args + ["--set", "seeds=2"]) == 0
    run = work / "runs" / "linear" / "fold0"
    per_seed = [np.load(run / f"seed{i}" / "predictions.npz")["held"] for i in range(2)]
    assert not np.allclose(per_seed[0], per_seed[1])
    oof = read_emi_predictions(run / "oof.csv")
    np.testing.assert_allclose(oof.to_numpy(), np.mean(per_seed, axis=0), atol=2e-6)
    assert len(json.loads((run / "metrics.json").read_text())["seed_scores"]) == 2


def test_bad_inputs_fail_before_training(emi_data, trained, tmp_path, capsys):
    work = _work_copy(trained, tmp_path, "bad")
    assert _train(emi_data, work, "--set", "model.nope=1") == 2
    assert "no such setting" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text("[model]\nwidth = 3\n")
    assert _train(emi_data, work, "--config", str(tmp_path / "c.toml")) == 2
    assert "[model] has no setting(s) ['width']" in capsys.readouterr().err
    hog = next(p for p in (work / "features").iterdir() if p.name.startswith("visual-hog"))
    entries = sorted(hog.glob("*.npz"))
    victim = entries[0]
    with np.load(victim) as data:
        arrays = dict(data)
    arrays["features"][0, 0] = np.nan
    np.savez(victim, **arrays)
    assert _train(emi_data, work) == 2
    assert f"{victim}: NaN or inf" in capsys.readouterr().err
    entries[1].unlink()
    victim.unlink()
    assert _train(emi_data, work) == 2
    assert "features missing for 2 video(s)" in capsys.readouterr().err
    assert train_main(["--model", "linear", "--fold", "7", "--data", str(emi_data), "--work", str(work)]) == 2
    assert "fold 7 is not in" in capsys.readouterr().err
    assert not (work / "runs" / "dual_stage").exists()


def test_config_file_and_label_descriptions(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nepochs = 7\nlr = 0.01\n[model]\ndim = 16\n")
    train_cfg, model_cfg = resolve_settings("dual_stage", tmp_path / "c.toml", ["model.fusion=concat", "patience=2"])
    assert (train_cfg.epochs, train_cfg.lr, train_cfg.patience) == (7, 0.01, 2)
    assert model_cfg == {"dim": 16, "fusion": "concat"}
    text = describe_labels(np.array([[0.0, 0.8, 0.0, 0.0, 0.4, 0.15], [0, 0, 0, 0, 0, 0]]))
    assert text[0] == "A person showing strong amusement, moderate excitement and mild joy."
    assert text[1] == "A person showing no particular emotion."


def test_features_only_release_trains(emi_data, tmp_path):
    """A user with only the organizers' vit/ and wav2vec2/ pickles: no media, no transcripts,
    no subject ids. Folds fall back to one group per video; stage 1 uses label descriptions."""
    from solution import features

    data = features_only_release(emi_data, tmp_path / "features-only")
    work = tmp_path / "work"
    assert features.main(["--data", str(data), "--work", str(work)]) == 0
    assert folds.main(["--data", str(data), "--work", str(work), "--k", "2"]) == 0
    assert json.loads((work / "folds.json").read_text())["grouping"] == "video"
    assert train_main(["--model", "dual_stage", "--fold", "0", "--data", str(data), "--work", str(work), *FAST]) == 0
    metrics = json.loads((work / "runs" / "dual_stage" / "fold0" / "metrics.json").read_text())
    assert metrics["settings"]["streams"] == {"visual": ["organizer:vit"], "audio": ["organizer:wav2vec2"]}
    assert metrics["settings"]["text_model"] == "minilm"
    assert metrics["held_pearson"] > 0.1


def test_report_and_ensemble_name_what_is_missing(emi_data, trained, tmp_path, capsys):
    from solution import ensemble, report

    assert report.main(["--data", str(emi_data), "--work", str(tmp_path)]) == 2
    assert "no trained runs" in capsys.readouterr().err
    assert report.main(["--data", str(emi_data), "--work", str(trained), "--runs", "absent"]) == 2
    assert "fold(s) [0, 1, 2] not finished" in capsys.readouterr().err
    assert ensemble.main(["--work", str(trained), "--runs", "dual_stage", "--out", str(tmp_path / "p")]) == 0
    assert len(read_emi_predictions(tmp_path / "p" / "test.csv")) == len(EmiRelease(emi_data).test_ids())


def test_report_shows_fusion_weights_by_condition(emi_data, trained, capsys):
    from solution import report

    assert report.main(["--data", str(emi_data), "--work", str(trained), "--runs", "dual_stage,linear"]) == 0
    out = capsys.readouterr().out
    assert "mean fusion weights of dual_stage by condition" in out and "face=ok" in out
    table = report.fusion_by_condition(emi_data, trained, "dual_stage")
    missing_text = table[table.condition == "transcript=missing"]
    if len(missing_text):
        assert missing_text.w_text.iloc[0] == 0.0
    assert report.fusion_by_condition(emi_data, trained, "linear") is None
