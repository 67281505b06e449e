"""python -m solution.train_fold: train one (model, fold) on the cached features.

    python -m solution.train_fold --model MODEL --fold 0 --data DIR --work WORK
    python -m solution.train_fold --model MODEL --fold 2 --data DIR --work WORK --set lr=3e-3 --set model.dropout=0.1
    python -m solution.train_fold --model MODEL --fold 0 --data DIR --work WORK --SWITCH --name ablation_name

MODEL is any registered model (see --model); a model's own switches are listed below.

Writes WORK/<track>-<fingerprint>/runs/<name>/fold<k>/ (see solution/runs.py): oof.csv
(predictions for the fold's held-out videos), test.csv (for the test videos), metrics.json,
fusion_weights.csv (models that fuse with weights), and per seed best.pt (the chosen epoch,
with everything solution.models.load_checkpoint needs), last.pt (the state to resume from),
log.csv and predictions.pkl.

The held-out fold is never looked at before the end: each seed holds out its own share of
the training groups (`inner_fraction`) and chooses its epoch there; the seeds' predictions
are averaged. The model decides its phases (e.g. a contrastive stage 1, then the task).
A finished fold is skipped when its settings, fold file and feature-cache entries are the
ones it was trained with, and refused otherwise; an interrupted one resumes from last.pt.
The same seed and --threads give the same predictions on the CPU. A damaged file (truncated
by a full disk or a killed copy) is never trusted: an unreadable last.pt starts its seed
again, an unreadable best.pt trains its seed again, unreadable seed predictions are made
again from the checkpoints, an unreadable metrics.json redoes the fold; each with a warning.

Several GPUs for one fold: `torchrun --standalone --nproc-per-node N -m solution.train_fold ...`
(DistributedDataParallel; batch_size stays the global batch, see solution/distributed.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import pickle
import random
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solution import distributed, fileio
from solution.config import TrainConfig, resolve_settings, settings_help
from solution.data import (Normalizer, VideoStore, cue_slices, gather, loader, prediction_pieces, to_device,
                           training_pieces)
from solution.errors import DataError
from solution.evaluate import score_predictions
from solution.folds import folds_digest, read_folds
from solution.layouts import detect_track, open_release, release_videos
from solution.metrics import ConstantInputWarning, make_loss
from solution.models import (InputSpec, TrainContext, all_model_fields, checkpoint_payload, create_model, model_class,
                             model_names)
from solution.predictions import write_predictions
from solution.runs import release_work
from solution.tracks import get_track

log = logging.getLogger("train_fold")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def predict(model, store: VideoStore, keys: list[str], device: str, batch_size: int = 64):
    """{key: prediction} over whole videos, and {key: mean fusion weights} when the model has them."""
    model.eval()
    pieces = prediction_pieces(store, keys)
    outputs, weights = [], []
    with torch.inference_mode():
        for batch in loader(store, pieces, batch_size):
            out = model(to_device(batch, device))
            outputs += list(out["pred"].float().cpu().numpy())
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


def average_seeds(per_seed: list[dict], keys: list[str]) -> dict:
    """The seeds' predictions of one fold averaged per video (what oof.csv and test.csv hold;
    solution.predict averages a new release's seeds with this too)."""
    return {k: np.mean([p[k] for p in per_seed], axis=0) for k in keys}


def inner_split(keys: list[str], groups: dict, fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """(fit, choose): whole groups of the training videos held out to choose the epoch."""
    if fraction <= 0:
        return keys, []
    by_group: dict[str, list] = {}
    for key in keys:
        by_group.setdefault(groups[key], []).append(key)
    names = sorted(by_group)
    chosen, count = set(), 0
    for g in rng.permutation(len(names)):
        if count >= fraction * len(keys) or len(chosen) >= len(names) - 1:
            break
        chosen.add(names[g])
        count += len(by_group[names[g]])
    choose = sorted(k for k in keys if groups[k] in chosen)
    return sorted(set(keys) - set(choose)), choose


def readable(path: Path, read, what: str):
    """`read(path)`, or None when the file is absent or unreadable (truncated by a full disk,
    a killed copy, ...): it is then removed, with a warning, and made again."""
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


def resolve_precision(device: str, precision: str) -> str:
    if precision == "auto":
        return "fp32" if not device.startswith("cuda") else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def autocast_for(device: str, precision: str):
    """The autocast context of a training step, and whether its gradients need scaling (fp16)."""
    if precision == "fp32":
        return contextlib.nullcontext(), False
    if not device.startswith("cuda") and precision == "fp16":
        raise DataError("--precision fp16 needs a GPU (--device cuda); on the CPU use bf16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype), precision == "fp16"


class _Redo(Exception):
    """A seed's checkpoint could not be read where it was needed: that seed trains again."""


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def train_fold(model_name: str, fold: int, data: Path, work: Path, train_cfg: TrainConfig, model_cfg: dict,
               name: str | None = None, device: str = "cpu", threads: int = 0, log_every: int = 1,
               precision: str = "auto") -> dict:
    """Train one (model, fold). Under torchrun every process runs this; the first one writes
    the files and returns the metrics (the others return None)."""
    if threads:
        torch.set_num_threads(threads)
    main_process = distributed.is_main()
    started = time.time()
    name = name or model_name
    track = get_track(detect_track(data))
    rw = release_work(work, data, track)
    out_dir = rw.fold(name, fold)

    # Everything that can be wrong with the inputs fails here, before any training.
    folds, fold_info = read_folds(rw, data)
    if not (fold in set(folds.fold) and fold >= 0):
        raise DataError(f"fold {fold} is not in {rw.folds_csv} (folds: {sorted(set(folds.fold) - {-1})})")
    release = open_release(track, data)
    test_keys = release.test_keys()
    train_keys = folds.id[folds.fold != fold].tolist()
    held_keys = folds.id[folds.fold == fold].tolist()
    groups = dict(zip(folds.id, folds.group))
    sources = {s.vid: s for s in release_videos(track.name, data)}
    absent = [k for k in train_keys + held_keys + test_keys if k not in sources]
    if absent:
        raise DataError(f"{data}: no media or features listed for {len(absent)} video(s), e.g. {absent[:5]}")
    store = VideoStore(work, release, {k: sources[k] for k in train_keys + held_keys + test_keys}, train_cfg,
                       frame_counts=frame_counts_to_predict(release, test_keys), timed_keys=train_keys)
    cls = model_class(model_name)
    settings = {"model": model_name, "fold": fold, "train": asdict(train_cfg),
                "model_config": asdict(cls.Config(**model_cfg)), "streams": store.stream_keys(),
                "features": store.entry_digest(train_keys + held_keys), "folds": {**fold_info, "assignment": folds_digest(folds)}}
    if store.text_timed:  # recorded only when on, so folds trained before word-timed text still match
        settings["text_timed"] = True
    if not train_cfg.refit:  # likewise: folds trained before the setting existed still match
        del settings["train"]["refit"]
    precision = resolve_precision(device, precision)
    if precision != "fp32":  # recorded only when not fp32, so folds trained before the flag still match
        settings["precision"] = precision
    done = readable(out_dir / "metrics.json", lambda p: json.loads(p.read_text()), "fold metrics")
    if done is not None:
        changed = _differences(done.get("settings", {}), settings)
        if changed:
            raise DataError(f"{out_dir} was trained with other {', '.join(changed[:6])}; delete it to train again, "
                            "or pass --name to keep both")
        log.info("%s: already done (delete it to train again)", out_dir)
        return done if main_process else None

    normalizer = Normalizer.fit(store, train_keys)
    store.check(held_keys + test_keys)
    store.set_normalizer(normalizer)
    spec = InputSpec(store.modalities, store.dims, cue_slices(store.modalities), track.dim, track.low, track.high,
                     track.level, extra={"text_timed": store.text_timed})
    config = cls.Config(**model_cfg)
    extra, side = cls.prepare(config, TrainContext(track, store, train_keys, train_cfg, device))
    spec.extra.update(extra)
    task_loss = make_loss(train_cfg.loss)
    targets = {k: release.video_targets(k) for k in train_keys + held_keys}
    autocast, scale_gradients = autocast_for(device, precision)

    def run_seed(seed_index: int) -> dict:
        """Train (or resume, or reload) one seed; its predictions are saved for the average."""
        seed_dir = rw.seed(name, fold, seed_index)
        done = seed_dir / "predictions.pkl"
        seed_settings = {**settings, "seed_index": seed_index}
        outcome = readable(done, lambda p: pickle.loads(p.read_bytes()), "seed predictions")
        if outcome is not None:
            if "settings" in outcome:  # absent in predictions written before it was recorded
                refuse_other_settings(done, outcome["settings"], seed_settings)
            return outcome
        chosen = train_seed_once(seed_index, seed_settings, seed_dir, seed_dir / "chosen.pkl" if train_cfg.refit else done)
        if not train_cfg.refit:
            return chosen
        # The inner split chose the epoch count; now the same seed learns from every training
        # video for that many epochs (rw.refit_dir: its checkpoints, which predict uses). Under
        # torchrun only the first process holds the choice: every process takes it from there.
        epochs = distributed.from_main(None if chosen is None else chosen["best_epoch"])
        refit_dir = rw.refit_dir(name, fold, seed_index)
        refit = train_seed_once(seed_index, {**seed_settings, "refit_epochs": epochs}, refit_dir,
                                refit_dir / "predictions.pkl", refit_epochs=epochs)
        if refit is None or chosen is None:
            return None
        outcome = {**refit, "best_epoch": chosen["best_epoch"], "inner_score": chosen["inner_score"],
                   "settings": seed_settings}
        fileio.write_pickle(done, outcome)
        return outcome

    def train_seed_once(seed_index: int, seed_settings: dict, seed_dir: Path, done: Path,
                        refit_epochs: int | None = None) -> dict | None:
        outcome = readable(done, lambda p: pickle.loads(p.read_bytes()), "seed predictions")
        if outcome is not None:
            refuse_other_settings(done, outcome["settings"], seed_settings)
            return outcome
        try:
            return train_seed(seed_index, seed_settings, seed_dir, done, refit_epochs)
        except _Redo:  # its best.pt was damaged: train the seed again, once
            try:
                return train_seed(seed_index, seed_settings, seed_dir, done, refit_epochs)
            except _Redo as again:
                raise DataError(f"{again}: unreadable again after training the seed again; check the disk") from None

    def refuse_other_settings(path: Path, recorded: dict, expected: dict) -> None:
        if recorded != expected:
            raise DataError(f"{path}: made with other settings ({', '.join(_differences(recorded, expected)[:6])}); "
                            f"delete {out_dir} to start over, or pass --name to keep both")

    def train_seed(seed_index: int, seed_settings: dict, seed_dir: Path, done: Path,
                   refit_epochs: int | None = None) -> dict | None:
        """One seed: its epoch chosen on its inner split, or (refit_epochs) every training
        video for that many epochs of the chosen phase."""
        base_seed = train_cfg.seed * 1000 + fold + 100_003 * seed_index
        seed_everything(base_seed)
        fit_keys, choose_keys = inner_split(train_keys, groups, train_cfg.inner_fraction,
                                            np.random.default_rng([train_cfg.seed, fold, seed_index, 7]))
        if refit_epochs is not None:
            fit_keys, choose_keys = train_keys, []
        model = create_model(model_name, spec, model_cfg).to(device)
        model.attach(side)
        phases = model.phases(train_cfg)
        if refit_epochs is not None:
            phases = [dataclasses.replace(p, epochs=refit_epochs) if p.select else p for p in phases]
        scaler = torch.amp.GradScaler("cuda", enabled=scale_gradients)
        parallel = distributed.DataParallel(model, device) if distributed.world_size() > 1 else None

        def optimizer(phase):
            return torch.optim.AdamW(model.param_groups(phase.lr), lr=phase.lr, weight_decay=train_cfg.weight_decay)

        state = {"phase": 0, "epoch": 0, "best": -np.inf, "best_epoch": -1, "bad_epochs": 0, "log": []}
        opt = optimizer(phases[0])
        last, best_path = seed_dir / "last.pt", seed_dir / "best.pt"
        saved = readable(last, load_torch(device), "training state")
        if saved is None and main_process:
            best_path.unlink(missing_ok=True)  # a best.pt without its training state: from the start
        if saved is not None:
            refuse_other_settings(last, saved["settings"], seed_settings)
            model.load_state_dict(saved["model"])
            state = saved["state"]
            opt = optimizer(phases[state["phase"]]) if state["phase"] < len(phases) else opt
            if state["phase"] < len(phases):
                opt.load_state_dict(saved["optimizer"])
            rng_states = saved.get("torch_rngs") or [saved["torch_rng"]]
            # .cpu(): map_location moved the saved CPU generator state to the training device too
            torch.set_rng_state((rng_states[distributed.rank()] if len(rng_states) == distributed.world_size()
                                 else rng_states[0]).cpu())
            log.info("%s: resuming %s at epoch %d", seed_dir, phases[min(state["phase"], len(phases) - 1)].name, state["epoch"])

        def checkpoint():
            # Every process's random state, so a resumed run draws what it would have drawn.
            rng_states = [torch.get_rng_state()] * distributed.world_size()
            if distributed.world_size() > 1:
                torch.distributed.all_gather_object(rng_states, torch.get_rng_state())
            if main_process:
                with fileio.atomic_path(last) as tmp:
                    torch.save({"settings": seed_settings, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "state": state, "torch_rng": rng_states[0], "torch_rngs": rng_states}, tmp)
                fileio.write_csv(seed_dir / "log.csv", pd.DataFrame(state["log"]), float_format="%.5f")

        def reload_best():
            existed = best_path.is_file()
            best = readable(best_path, load_torch(device), "best checkpoint")
            if best is None:
                if not existed:
                    raise DataError(f"{best_path}: no epoch was chosen (epochs or patience below 1?)")
                if main_process:
                    last.unlink(missing_ok=True)
                raise _Redo(str(best_path))
            model.load_state_dict(best["model"])
            return best

        def step(batch) -> float | None:
            """One optimizer step on a batch; its loss, or None when it had nothing to learn from."""
            if parallel is None:
                with autocast:
                    loss = backward = model.phase_loss(phase.name, batch, task_loss)
                if loss is None or not loss.requires_grad:
                    return None  # e.g. fewer than two rows of a pair
            else:
                backward, loss = parallel.loss(phase.name, batch, task_loss, autocast)
            opt.zero_grad()
            scaler.scale(backward).backward()
            if loss is None:
                return None
            scaler.step(opt)
            scaler.update()
            return loss.item()

        seed_dir.mkdir(parents=True, exist_ok=True)
        while state["phase"] < len(phases):
            phase = phases[state["phase"]]
            while state["epoch"] < phase.epochs and not (phase.select and state["bad_epochs"] >= train_cfg.patience):
                model.train()
                rng = np.random.default_rng([train_cfg.seed, fold, seed_index, state["phase"], state["epoch"]])
                losses = []
                for batch in loader(store, training_pieces(store, fit_keys, rng), train_cfg.batch_size, rng):
                    loss = step(to_device(batch, device))
                    if loss is not None:
                        losses.append(loss)
                state["epoch"] += 1
                row = {"phase": phase.name, "epoch": state["epoch"], "train_loss": float(np.mean(losses)) if losses else np.nan,
                       "inner_score": np.nan}
                if phase.select and choose_keys:
                    if main_process:
                        pred, _ = predict(model, store, choose_keys, device)
                        with warnings.catch_warnings():  # a constant column early in training is expected, not news
                            warnings.simplefilter("ignore", ConstantInputWarning)
                            row["inner_score"] = score_predictions(
                                track, pred, {k: targets[k] for k in choose_keys},
                                f"{name} fold {fold} seed {seed_index}, inner split")["mean"]
                    # One process scores, every process follows its score: a last-bit difference between
                    # the processes' own scores could split their choice of epoch or of stopping.
                    row["inner_score"] = distributed.from_main(row["inner_score"])
                if phase.select:
                    score = row["inner_score"] if choose_keys else float(state["epoch"])  # no inner split: the last epoch
                    if score > state["best"]:
                        state.update(best=score, best_epoch=state["epoch"], bad_epochs=0)
                        if main_process:
                            with fileio.atomic_path(best_path) as tmp:
                                torch.save(checkpoint_payload(model, normalizer, seed_settings, epoch=state["epoch"],
                                                              score=score), tmp)
                    else:
                        state["bad_epochs"] += 1
                state["log"].append(row)
                checkpoint()
                distributed.barrier()  # best.pt and last.pt are on disk before any process reads them
                if state["epoch"] % log_every == 0:
                    scored = (f", inner {track.metric} {row['inner_score']:.4f} (best {state['best']:.4f} "
                              f"@ {state['best_epoch']})") if phase.select and choose_keys else ""
                    log.info("%s fold %d seed %d %s epoch %d: loss %.4f%s", name, fold, seed_index, phase.name,
                             state["epoch"], row["train_loss"], scored)
            if phase.select:
                reload_best()
            state.update(phase=state["phase"] + 1, epoch=0, best=-np.inf, bad_epochs=0)
            if state["phase"] < len(phases):
                opt = optimizer(phases[state["phase"]])
            checkpoint()

        best = reload_best()
        if not main_process:
            return None
        held_pred, held_weights = predict(model, store, held_keys, device)
        test_pred, _ = predict(model, store, test_keys, device)
        outcome = {"held": held_pred, "test": test_pred, "weights": held_weights, "best_epoch": int(best["epoch"]),
                   "settings": seed_settings,
                   "inner_score": float(best["score"]) if choose_keys else None}
        fileio.write_pickle(done, outcome)
        return outcome

    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for seed_index in range(train_cfg.seeds):
        outcomes.append(run_seed(seed_index))
        distributed.barrier()  # the seed's predictions are on disk before the next seed looks for them
    if not main_process:
        return None
    held_pred = average_seeds([o["held"] for o in outcomes], held_keys)
    test_pred = average_seeds([o["test"] for o in outcomes], test_keys)
    write_predictions(out_dir / "oof.csv", track, held_pred)
    write_predictions(out_dir / "test.csv", track, test_pred)
    if outcomes[0]["weights"] is not None:
        weights = pd.DataFrame([np.mean([o["weights"][k] for o in outcomes], axis=0) for k in held_keys],
                               columns=[f"w_{m}" for m in store.modalities])
        weights.insert(0, "id", held_keys)
        fileio.write_csv(out_dir / "fusion_weights.csv", weights)
    result = score_predictions(track, held_pred, {k: targets[k] for k in held_keys}, f"{name} fold {fold}, held-out videos")
    metrics = {"model": model_name, "name": name, "fold": fold, "track": track.name, "metric": track.metric,
               "best_epoch": [o["best_epoch"] for o in outcomes],
               "inner_scores": [None if o["inner_score"] is None else round(o["inner_score"], 4) for o in outcomes],
               "held_score": result["mean"], "per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()},
               "train_videos": len(train_keys), "held_videos": len(held_keys), "test_videos": len(test_keys),
               "seconds": round(time.time() - started, 1), "settings": settings}
    fileio.write_json(out_dir / "metrics.json", metrics)
    return metrics


def main(argv=None) -> int:
    switches = {}
    for model in model_names():
        for flag, (assignment, text) in getattr(model_class(model), "switches", {}).items():
            switches.setdefault(flag, (assignment, text, set()))[2].add(model)
    parser = argparse.ArgumentParser(prog="python -m solution.train_fold", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1] + "\n\n" + settings_help(
                                         {m: model_class(m) for m in model_names()}))
    parser.add_argument("--model", required=True, choices=model_names(), help="which registered model to train")
    parser.add_argument("--fold", type=int, required=True, help="the held-out fold (0-based; see folds.csv)")
    parser.add_argument("--data", type=Path, required=True, help="the release (labels, test ids)")
    parser.add_argument("--work", type=Path, required=True, help="holds features/ and the release's folds; runs are written there")
    parser.add_argument("--config", type=Path, help="TOML file with [train] and [model] tables (see below)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable; keys below)")
    parser.add_argument("--name", help="run name (default: the model name); ablations want their own")
    for flag, (assignment, text, owners) in sorted(switches.items()):
        if "{}" in assignment:
            parser.add_argument(flag, help=text)
        else:
            parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu); under torchrun each "
                        "process takes cuda:LOCAL_RANK")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="autocast of training steps (auto: bf16 on a GPU that has it, else fp16 on GPUs, "
                        "fp32 on the CPU); prediction is fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--log-every", type=int, default=1, help="log every n-th epoch")
    args = parser.parse_args(argv)
    try:
        device = distributed.setup(args.device)
    except (RuntimeError, ValueError) as exc:
        print(f"error: cannot join the torchrun process group: {exc}", file=sys.stderr)
        return 2
    # Under torchrun the first process speaks for all; the others only warn.
    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING,
                        format=f"[train{'' if distributed.world_size() == 1 else f' {distributed.rank()}'}] %(message)s")
    try:
        overrides = list(args.set)
        for flag, (assignment, _, owners) in switches.items():
            value = getattr(args, flag.lstrip("-").replace("-", "_"))
            if value in (None, False):
                continue
            if args.model not in owners:
                raise DataError(f"{flag} is a setting of {sorted(owners)}, not of {args.model}")
            overrides.append("model." + assignment.format(value))
        cls = model_class(args.model)
        train_cfg, model_cfg = resolve_settings(args.model, args.config, overrides, cls.Config, all_model_fields(),
                                                cls.train_defaults)
        metrics = train_fold(args.model, args.fold, args.data, args.work, train_cfg, model_cfg, args.name,
                             device, args.threads, max(1, args.log_every), args.precision)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    if metrics is None:  # not the first of several processes: it wrote nothing to report
        return 0
    print(f"[train] {metrics['name']} fold {metrics['fold']}: held-out mean {metrics['metric']} {metrics['held_score']:.4f} "
          f"(epochs chosen on inner splits: {metrics['best_epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
