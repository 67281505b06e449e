"""The quality panel's bookkeeping (bench/quality.py): results of several invocations of one tag
add up, the means are over what the file holds, and --table prints a file back."""
import importlib.util
import json
from pathlib import Path

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
    assert "| **mean all** |" in out
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
