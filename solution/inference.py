"""Inference: a trained model's predictions of whole videos (or each of their frames), and the
one averaging of several predictions of the same videos (a fold's seeds, a run's folds), and a
trained run's predictions read back. train_fold, predict, ensemble and report take them from here."""
from __future__ import annotations

import numpy as np
import torch

from solution import fileio
from solution.data import VideoStore, gather, loader, prediction_pieces, to_device
from solution.errors import DataError
from solution.predictions import read_predictions
from solution.runs import ReleaseWork


def predict(model, store: VideoStore, keys: list[str], device: str, batch_size: int = 64):
    """{key: prediction} over whole videos, and {key: mean fusion weights} when the model has them."""
    model.eval()
    pieces = prediction_pieces(store, keys)
    outputs, weights = [], []
    with torch.inference_mode():
        for batch in loader(store, pieces, batch_size):
            out = model(to_device(batch, device))
            outputs += list(model.output(out["pred"]).float().cpu().numpy())
            if "weights" in out:
                w = out["weights"].float()
                if w.dim() == 3:  # per frame: the mean over the piece's real frames
                    mask = batch["frame_mask"].to(w.device).unsqueeze(-1).float()
                    w = (w * mask).sum(1) / mask.sum(1).clamp_min(1)
                weights += list(w.cpu().numpy())
    preds = gather(store, pieces, outputs)  # cuts each window's padding off
    if not weights:
        return preds, None
    per_video: dict[str, list] = {}
    for piece, w in zip(pieces, weights):
        per_video.setdefault(piece.key, []).append(w)
    return preds, {k: np.mean(v, axis=0) for k, v in per_video.items()}


def frame_counts_to_predict(release, test_keys: list[str]) -> dict | None:
    """Frame-level tracks: {test video: frames to predict} from the release's test listing
    (what the store predicts for a video without labels); None for video-level tracks."""
    if release.track.level != "frame":
        return None
    counts = release.test_frame_counts()
    return {k: counts[k] for k in test_keys} or None


def average_predictions(predictions: list[dict], keys: list[str] | None = None) -> dict:
    """Per video the mean of several predictions of it: a fold's seeds (what oof.csv and
    test.csv hold) or a run's folds (what a run submits). `keys`: the videos (default: the
    first prediction's)."""
    return {k: np.mean([p[k] for p in predictions], axis=0) for k in (keys if keys is not None else predictions[0])}


def run_predictions(rw: ReleaseWork, run: str) -> tuple[dict, dict, list[dict]]:
    """A run's out-of-fold predictions, its fold-averaged test predictions, its fold metrics."""
    k = rw.fold_count()
    files = [rw.fold_files(run, f) for f in range(k)]
    missing = [f for f in range(k) if not files[f].metrics.is_file()]
    if missing:
        raise DataError(f"{rw.run(run)}: fold(s) {missing} not finished; run python -m solution.train_fold for them")
    metrics = [fileio.read_json(files[f].metrics, "fold metrics",
                                f"run python -m solution.train_fold for fold {f} again, which redoes the fold")
               for f in range(k)]
    oof: dict = {}
    for f in range(k):
        part = read_predictions(files[f].oof, rw.track)
        if set(part) & set(oof):
            raise DataError(f"{rw.run(run)}: a video is held out in more than one fold; were the folds remade mid-run?")
        oof.update(part)
    tests = [read_predictions(files[f].test, rw.track) for f in range(k)]
    for f, t in enumerate(tests[1:], start=1):
        if set(t) != set(tests[0]):
            raise DataError(f"{rw.run(run)}: folds 0 and {f} predict different test videos")
    return oof, average_predictions(tests), metrics
