"""Folds: grouped by subject, balanced, written and read back per release."""
import json
import shutil

import pandas as pd
import pytest

from solution import folds, runs, synth
from solution.errors import DataError
from solution.layouts import EmiRelease
from solution.runs import release_work


def test_folds_are_grouped_balanced_and_shared(emi_data, tmp_path):
    table, info = folds.make_folds(emi_data, k=3, seed=0)
    meta = EmiRelease(emi_data).metadata()
    assert table.groupby("group").fold.nunique().max() == 1  # no subject in two folds
    sizes = table.fold.value_counts()
    assert sizes.max() - sizes.min() <= meta.subject.value_counts().max()
    assert info["grouping"] == "subject" and info["k"] == 3
    rw = release_work(tmp_path, emi_data)
    runs.write_folds(rw, table, info)
    again, _ = runs.read_folds(rw, emi_data)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    official, official_info = folds.make_folds(emi_data, scheme="official")
    assert official_info["k"] == 1
    assert set(official.fold[official.split == "valid"]) == {0} and set(official.fold[official.split == "train"]) == {-1}


def test_groups_file(emi_data, tmp_path, capsys):
    keys = sorted(EmiRelease(emi_data).labelled_keys())
    # Unpadded ids, two videos per group: each pair must land in one fold.
    rows = [f"{int(k)},speaker{i // 2}" for i, k in enumerate(keys)]
    (tmp_path / "groups.csv").write_text("Filename,group\n" + "\n".join(rows) + "\n")
    table, info = folds.make_folds(emi_data, k=3, groups_file=tmp_path / "groups.csv")
    assert info["grouping"] == "file groups.csv"
    assert table.groupby("group").fold.nunique().max() == 1 and table.group.nunique() == (len(keys) + 1) // 2
    (tmp_path / "short.csv").write_text("Filename,group\n" + "\n".join(rows[1:]) + "\n")
    assert folds.main(["--data", str(emi_data), "--work", str(tmp_path / "w"), "--groups", str(tmp_path / "short.csv")]) == 2
    assert f"no group for 1 labelled video(s), e.g. ['{keys[0]}']" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("Filename,speaker\n1,a\n")
    with pytest.raises(DataError, match="needs columns Filename,group"):
        folds.make_folds(emi_data, k=3, groups_file=tmp_path / "bad.csv")


def test_a_second_release_gets_its_own_folds(emi_data, tmp_path):
    other = tmp_path / "other"
    synth.generate("emi", other, seed=99, workers=1, videos=12, subjects=6, seconds=1.0, fps=8.0, size=48)
    work = tmp_path / "w"
    assert folds.main(["--data", str(other), "--work", str(work), "--k", "2"]) == 0
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", "3"]) == 0
    first, second = release_work(work, other), release_work(work, emi_data)
    assert first.root != second.root and first.folds_csv.is_file() and second.folds_csv.is_file()
    assert json.loads(first.folds_json.read_text())["k"] == 2
    # A fold file from another release is refused if it is brought in by hand.
    shutil.copy(first.folds_csv, second.folds_csv)
    shutil.copy(first.folds_json, second.folds_json)
    with pytest.raises(DataError, match="made for another release"):
        runs.read_folds(second, emi_data)
