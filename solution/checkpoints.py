"""Checkpoints: what a fold saves, resumes from and refuses, and a model rebuilt from best.pt.

Per seed (solution/runs.py names the paths): last.pt is the state to resume from (model,
optimizer, the epoch bookkeeping, every process's random state), best.pt the chosen epoch with
everything load_checkpoint needs, predictions.pkl the seed's predictions; a fold's
metrics.json says it is done. Each records the settings it was made with (fold_settings): a file
made with other settings is refused, never mixed in. A damaged file (truncated by a full disk or
a killed copy) is never trusted: readable() removes it with a warning and it is made again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path

import pandas as pd
import torch

from solution import distributed, fileio
from solution.errors import DataError
from solution.runs import FoldFiles

log = logging.getLogger("checkpoints")


def fold_settings(model_name: str, fold: int, train_cfg, model_config, streams: dict, features: str, folds: dict,
                  text_timed: bool, precision: str) -> dict:
    """What a fold is trained with; a finished fold, seed or checkpoint is reused only when it
    was made with exactly these. Folds trained by earlier versions keep matching: a setting
    added since (word-timed text, refit, precision) is recorded only when it is not its old
    behaviour. This is the one place that compatibility is decided."""
    settings = {"model": model_name, "fold": fold, "train": dataclasses.asdict(train_cfg),
                "model_config": dataclasses.asdict(model_config), "streams": streams, "features": features,
                "folds": folds}
    if text_timed:
        settings["text_timed"] = True
    if not train_cfg.refit:
        del settings["train"]["refit"]
    if precision != "fp32":
        settings["precision"] = precision
    return settings


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted names of the settings that differ between two settings dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def refuse_other_settings(path: Path, recorded: dict, expected: dict, fold_dir: Path) -> None:
    if recorded != expected:
        raise DataError(f"{path}: made with other settings ({', '.join(differences(recorded, expected)[:6])}); "
                        f"delete {fold_dir} to start over, or pass --name to keep both")


def readable(path: Path, read, what: str):
    """`read(path)`, or None when the file is absent or unreadable: it is then removed, with
    a warning, and made again."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except Exception as exc:  # a damaged file can raise almost anything
        log.warning("%s: unreadable %s (%s: %s); removed, it is made again", path, what, type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        if distributed.is_main():
            path.unlink(missing_ok=True)
        return None


def load_torch(device: str):
    return lambda path: torch.load(path, map_location=device, weights_only=False)


def read_pickle(path: Path):
    return pickle.loads(path.read_bytes())


def finished_fold(files: FoldFiles, settings: dict) -> dict | None:
    """A finished fold's metrics when it was trained with `settings`, None when it is not
    finished (or its metrics.json is damaged); refused when trained with other settings."""
    done = readable(files.metrics, lambda p: json.loads(p.read_text()), "fold metrics")
    if done is None:
        return None
    changed = differences(done.get("settings", {}), settings)
    if changed:
        raise DataError(f"{files.dir} was trained with other {', '.join(changed[:6])}; delete it to train again, "
                        "or pass --name to keep both")
    return done


def finished_seed(path: Path, settings: dict, fold_dir: Path) -> dict | None:
    """A seed's saved predictions when made with `settings` (predictions written before the
    settings were recorded are taken as they are), None when there are none."""
    outcome = readable(path, read_pickle, "seed predictions")
    if outcome is not None and "settings" in outcome:
        refuse_other_settings(path, outcome["settings"], settings, fold_dir)
    return outcome


class Redo(Exception):
    """A seed's best.pt could not be read where it was needed: that seed trains again."""


def save_training_state(path: Path, log_path: Path, model, optimizer, state: dict, settings: dict) -> None:
    """last.pt and log.csv. Called by every process: each one's random state is saved, so a
    resumed run draws what it would have drawn."""
    rng_states = [torch.get_rng_state()] * distributed.world_size()
    if distributed.world_size() > 1:
        torch.distributed.all_gather_object(rng_states, torch.get_rng_state())
    if distributed.is_main():
        with fileio.atomic_path(path) as tmp:
            torch.save({"settings": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "state": state, "torch_rng": rng_states[0], "torch_rngs": rng_states}, tmp)
        fileio.write_csv(log_path, pd.DataFrame(state["log"]), float_format="%.5f")


def read_training_state(path: Path, best_path: Path, device: str, settings: dict, fold_dir: Path) -> dict | None:
    """last.pt when there is one to resume from (refused when made with other settings); with
    none, a best.pt left behind is removed: the seed starts from the beginning."""
    saved = readable(path, load_torch(device), "training state")
    if saved is None:
        if distributed.is_main():
            best_path.unlink(missing_ok=True)
        return None
    refuse_other_settings(path, saved["settings"], settings, fold_dir)
    return saved


def restore_random_state(saved: dict) -> None:
    """This process's torch random state from last.pt (one state per process of the run that
    saved it; a run with another process count takes the first)."""
    rng_states = saved.get("torch_rngs") or [saved["torch_rng"]]
    state = rng_states[distributed.rank()] if len(rng_states) == distributed.world_size() else rng_states[0]
    torch.set_rng_state(state.cpu())  # map_location moved the saved CPU generator state to the device too


def checkpoint_payload(model, normalizer, settings: dict, **extra) -> dict:
    """Everything needed to rebuild the model with load_checkpoint, and nothing else to read."""
    return {"model_name": model.name, "spec": model.spec.state(), "model_config": dataclasses.asdict(model.config),
            "model": model.state_dict(), "normalizer": normalizer.state(), "settings": settings, **extra}


def save_best(path: Path, model, normalizer, settings: dict, epoch: int, score: float) -> None:
    if distributed.is_main():
        with fileio.atomic_path(path) as tmp:
            torch.save(checkpoint_payload(model, normalizer, settings, epoch=epoch, score=score), tmp)


def reload_best(path: Path, last: Path, model, device: str) -> dict:
    """The chosen epoch's weights back into `model`; its payload. A damaged best.pt raises
    Redo (with last.pt removed, so the seed trains again from the start)."""
    existed = path.is_file()
    best = readable(path, load_torch(device), "best checkpoint")
    if best is None:
        if not existed:
            raise DataError(f"{path}: no epoch was chosen (epochs or patience below 1?)")
        if distributed.is_main():
            last.unlink(missing_ok=True)
        raise Redo(str(path))
    model.load_state_dict(best["model"])
    return best


def read_checkpoint(path, device: str = "cpu") -> dict:
    """best.pt's payload (see checkpoint_payload); a clear error for a damaged or foreign file."""
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a truncated file can raise almost anything
        raise DataError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "spec" not in payload or "settings" not in payload:
        raise DataError(f"{path}: not a checkpoint written by solution.train_fold")
    return payload


def load_checkpoint(path, device: str = "cpu"):
    """best.pt -> (model in eval mode, its feature Normalizer, the payload)."""
    from solution.data import Normalizer
    from solution.config import config_fields
    from solution.models import InputSpec, create_model, model_class

    path = Path(path)
    payload = read_checkpoint(path, device)
    # A setting the checkpoint does not record would take today's default, which may not be
    # what it was trained with (e.g. a layer added since): refuse rather than guess.
    unrecorded = sorted(set(config_fields(model_class(payload["model_name"]).Config)) - set(payload["model_config"]))
    if unrecorded:
        raise DataError(f"{path}: written by an older version of model {payload['model_name']!r} "
                        f"(no setting(s) {unrecorded}); train it again")
    try:
        model = create_model(payload["model_name"], InputSpec.from_state(payload["spec"]), payload["model_config"])
        model.load_state_dict(payload["model"])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: does not fit model {payload['model_name']!r} as it is now "
                        f"({str(exc).splitlines()[0]}); train it again") from exc
    return model.to(device).eval(), Normalizer.from_state(payload["normalizer"]), payload
