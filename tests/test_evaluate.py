import numpy as np
import pytest

from solution import evaluate
from solution.layouts import DataError
from solution.predictions import write_emi_predictions, write_va_folder, write_va_single
from solution.layouts import VaRelease, read_emi_labels


def test_emi_cli_prints_table_and_scores_truth_as_one(emi_data, tmp_path, capsys):
    labels = emi_data / "valid_split.csv"
    assert evaluate.main(["--track", "emi", "--pred", str(labels), "--labels", str(labels),
                          "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "Empathic Pain" in out and "mean" in out and "1.0000" in out
    noisy = read_emi_labels(labels) + np.random.default_rng(0).normal(0, 0.3, (len(read_emi_labels(labels)), 6))
    write_emi_predictions(tmp_path / "p.csv", noisy, clip=False)
    result = evaluate.evaluate_emi(tmp_path / "p.csv", labels)
    assert 0.1 < result["mean"] < 0.99


def test_emi_missing_prediction_is_an_error(emi_data, tmp_path, capsys):
    labels = read_emi_labels(emi_data / "valid_split.csv")
    write_emi_predictions(tmp_path / "p.csv", labels.iloc[1:])
    with pytest.raises(DataError, match="no prediction for 1 labelled video"):
        evaluate.evaluate_emi(tmp_path / "p.csv", emi_data / "valid_split.csv")
    assert evaluate.main(["--track", "emi", "--pred", str(tmp_path / "p.csv"),
                          "--labels", str(emi_data / "valid_split.csv")]) == 2


def test_va_skips_unannotated_frames(va_data, tmp_path):
    release = VaRelease(va_data)
    folder = release.split_dir("valid")
    truth = {v: release.labels("valid", v) for v in release.videos("valid")}
    assert any((t == -5).any() for t in truth.values())
    # Perfect on annotated frames, wild on the -5 ones: a correct scorer ignores the latter.
    pred = {v: np.where(t == -5, 1.0, t) for v, t in truth.items()}
    write_va_single(tmp_path / "single.txt", pred)
    write_va_folder(tmp_path / "folder", pred)
    for path in (tmp_path / "single.txt", tmp_path / "folder"):
        result = evaluate.evaluate_va(path, folder)
        assert result["mean"] == pytest.approx(1.0, abs=1e-4)
        assert result["frames"] == sum(int((t[:, 0] != -5).sum()) for t in truth.values())
    assert evaluate.main(["--track", "va", "--pred", str(tmp_path / "single.txt"), "--labels", str(folder)]) == 0
