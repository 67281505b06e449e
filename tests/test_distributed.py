"""One fold on two processes (torchrun, gloo on the CPU) trains what one process trains.

The correlation and contrastive losses see the global batch (rows gathered with their
gradients) and MaskedBatchNorm sums its statistics over the processes, so with the
per-process randomness off (dropout, modality dropout, the dual-stage quality swap, Foal-Net's
hard negatives: they draw from each process's own generator) the predictions agree within
float rounding. Stated tolerance: 1e-4 absolute on every prediction (measured: about 3e-6).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from solution import folds
from solution.runs import release_work
from solution.train_fold import main as train_main

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
TOLERANCE = 1e-4
NO_RANDOMNESS = ["--set", "seeds=1", "--set", "model.dropout=0", "--set", "model.input_dropout=0",
                 "--set", "model.modality_dropout=0", "--threads", "1"]
CASES = {
    "rcma": ["--set", "epochs=3"],
    "dual_stage": ["--set", "epochs=2", "--set", "model.stage1_epochs=2", "--set", "model.quality_augment=0",
                   "--set", "model.dim=32"],
    "foalnet": ["--set", "epochs=2", "--set", "model.match=false", "--set", "model.dim=32"],
}


@pytest.fixture(scope="module")
def emi_work(emi_data, emi_features, tmp_path_factory):
    work = tmp_path_factory.mktemp("distributed")
    shutil.copytree(emi_features / "features", work / "features")
    assert folds.main(["--data", str(emi_data), "--work", str(work), "--k", "3"]) == 0
    return work


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "solution.train_fold", *args],
                          env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def predictions(fold_dir: Path, name: str) -> np.ndarray:
    return pd.read_csv(fold_dir / name).iloc[:, 1:].to_numpy()


def assert_same_training(data, work, model: str, extra: list[str]) -> None:
    args = ["--model", model, "--fold", "0", "--data", str(data), "--work", str(work), *NO_RANDOMNESS, *extra]
    assert train_main(args + ["--name", f"one_{model}"]) == 0
    done = torchrun(args + ["--name", f"two_{model}"])
    assert done.returncode == 0, done.stderr[-3000:]
    rw = release_work(work, data)
    one, two = rw.fold(f"one_{model}", 0), rw.fold(f"two_{model}", 0)
    for name in ("oof.csv", "test.csv"):
        a, b = predictions(one, name), predictions(two, name)
        assert a.shape == b.shape
        assert np.abs(a - b).max() < TOLERANCE, f"{model} {name}: {np.abs(a - b).max()}"
    # The same epochs were chosen, from the same inner scores: the two trainings took the same path.
    log_one = pd.read_csv(one / "seed0" / "log.csv")
    log_two = pd.read_csv(two / "seed0" / "log.csv")
    np.testing.assert_allclose(log_one.inner_score.to_numpy(), log_two.inner_score.to_numpy(), atol=1e-3)
    np.testing.assert_allclose(log_one.train_loss.to_numpy(), log_two.train_loss.to_numpy(), atol=1e-3)
    # The first process speaks for both: one summary line, no second process's epoch lines.
    assert done.stdout.count("held-out mean") == 1
    assert "[train 1]" not in done.stderr


@pytest.mark.parametrize("model", sorted(CASES))
def test_two_processes_train_what_one_does_emi(emi_data, emi_work, model):
    assert_same_training(emi_data, emi_work, model, CASES[model])


def test_two_processes_train_what_one_does_va(va_data, va_features):
    """Frame-level: the CCC over every annotated frame of the global batch (masked rows gathered)."""
    assert_same_training(va_data, va_features, "rcma", ["--set", "epochs=2", "--set", "window=60", "--set", "hop=40"])


def test_the_loss_gathers_rows_with_their_gradients():
    """Without a process group the gathering is the identity: the loss and its gradient are
    the single-process ones (what the two-process tests compare against)."""
    from solution.distributed import gather_rows, global_count
    from solution.metrics import make_loss

    pred = torch.rand(6, 2, requires_grad=True)
    target = torch.rand(6, 2)
    assert gather_rows(pred) is pred
    assert global_count(torch.tensor([True, False, True])) == 2
    make_loss("ccc")(pred, target).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_one_fold_trains_on_cuda(emi_data, emi_work):
    """A fold on the GPU (bf16 autocast where the GPU has it) learns: its held-out score beats
    the linear baseline trained on the CPU for one epoch."""
    import json

    rw = release_work(emi_work, emi_data)
    common = ["--fold", "1", "--data", str(emi_data), "--work", str(emi_work), "--set", "seeds=1"]
    assert train_main(["--model", "rcma", *common, "--device", "cuda", "--set", "epochs=8", "--name", "cuda_rcma"]) == 0
    assert train_main(["--model", "linear", *common, "--set", "epochs=1", "--name", "cpu_linear_1epoch"]) == 0
    score = json.loads((rw.fold("cuda_rcma", 1) / "metrics.json").read_text())["held_score"]
    baseline = json.loads((rw.fold("cpu_linear_1epoch", 1) / "metrics.json").read_text())["held_score"]
    assert score > baseline
