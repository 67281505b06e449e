"""bench/gpu_check.sh: without a GPU it says so, and what it would check, in one JSON line and exits 0."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: bash bench/gpu_check.sh runs the whole check")
def test_without_a_gpu_it_says_so_and_exits_0():
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    record = json.loads(lines[0])
    assert record["bench"] == "gpu_check" and record["status"] == "no_gpu"
    assert record["message"].startswith("no GPU found") and "machine" in record
    would = record["would_check"]
    assert set(would) == {"tests", "folds", "train", "features"}
    assert "tests/test_distributed.py::test_one_fold_trains_on_cuda" in would["tests"]
    assert would["folds"]["models"] == ["dual_stage", "foalnet", "rcma", "linear"]
    assert "--batch 32 --visual 160x768 --audio 400x768" in would["train"]["shape"]


def test_the_tests_that_need_cuda_are_found_by_their_skipif(tmp_path, monkeypatch):
    (tmp_path / "test_a.py").write_text(
        "import pytest, torch\n"
        "@pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')\ndef test_gpu(): pass\n"
        "@pytest.mark.skipif(True, reason='other')\ndef test_other(): pass\n"
        "def test_cuda_in_name_only(): pass\n"
        "class TestBoth:\n"
        "    @pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')\n    def test_m(self): pass\n")
    (tmp_path / "test_b.py").write_text("import pytest, torch\npytestmark = pytest.mark.skipif("
                                        "not torch.cuda.is_available(), reason='GPU')\ndef test_x(): pass\n")
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path.parent)
    found = gpu_check.cuda_tests(tmp_path)
    assert found == [f"{tmp_path.name}/test_a.py::test_gpu", f"{tmp_path.name}/test_a.py::TestBoth::test_m",
                     f"{tmp_path.name}/test_b.py"]


def test_a_step_that_fails_is_a_failure(capsys):
    """A bench script that fails (here: asked for a model that does not exist) is reported,
    with its output, and counted as a failure (the check then exits 1)."""
    check = gpu_check.Check("cpu")
    gpu_check.check_train(check, True, ["no_such_model"])
    assert len(check.failures) == 1 and "no result for ['no_such_model']" in check.failures[0]
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["check"] == "train" and "error" in record
