"""python -m solution.train_fold: train one (model, fold) on the cached features.

    python -m solution.train_fold --model MODEL --fold 0 --data DIR --work WORK
    python -m solution.train_fold --model MODEL --fold 2 --data DIR --work WORK --set lr=3e-3 --set model.dropout=0.1
    python -m solution.train_fold --model MODEL --fold 0 --data DIR --work WORK --SWITCH --name ablation_name

MODEL is any registered model (see --model); a model's own switches are listed below.

Writes WORK/<track>-<fingerprint>/runs/<name>/fold<k>/ (solution/runs.py names every file):
oof.csv and test.csv (the seeds' predictions averaged), metrics.json, fusion_weights.csv, and
per seed best.pt, last.pt, log.csv and predictions.pkl (solution/checkpoints.py).

The held-out fold is never looked at before the end: each seed holds out its own share of
the training groups (`inner_fraction`) and chooses its epoch count there; with `refit` (the
default of dual_stage and rcma) it then trains again on every training video for that many
epochs and predicts with that model; the seeds' predictions are averaged.
The model decides its phases (e.g. a contrastive stage 1, then the task). A finished fold is
skipped when trained with these settings, fold file and feature entries, refused otherwise;
an interrupted one resumes from last.pt; a damaged file is made again. The same seed and
--threads give the same predictions on the CPU.

Several GPUs for one fold: `torchrun --standalone --nproc-per-node N -m solution.train_fold ...`
(DistributedDataParallel; batch_size stays the global batch, see solution/distributed.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solution import checkpoints, distributed, fileio, provenance
from solution.config import TrainConfig, resolve_settings, settings_help
from solution.data import Normalizer, VideoStore, cue_slices, loader, to_device, training_pieces
from solution.errors import DataError
from solution.inference import average_predictions, frame_counts_to_predict, predict
from solution.metrics import ConstantInputWarning, make_task_loss, score_predictions, task_loss_spec
from solution.models import InputSpec, TrainContext, all_model_fields, create_model, model_class, model_names
from solution.predictions import write_predictions
from solution.runs import FoldFiles, ReleaseWork, SeedFiles, folds_digest, read_folds, release_work
from solution.tracks import Track, detect_track, get_track, open_release

log = logging.getLogger("train_fold")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


@dataclass
class Fold:
    """One (model, fold): the release opened once, its videos, feature store and settings; then
    (prepare_training) what every seed trains with."""
    model_name: str
    name: str
    fold: int
    track: Track
    rw: ReleaseWork
    release: object
    files: FoldFiles
    train_keys: list
    held_keys: list
    test_keys: list
    groups: dict
    store: VideoStore
    settings: dict
    train_cfg: TrainConfig
    model_cfg: dict
    device: str
    precision: str
    log_every: int = 1
    spec: InputSpec | None = None
    side: object = None
    normalizer: Normalizer | None = None
    targets: dict = field(default_factory=dict)
    task_loss: object = None
    autocast: object = None
    scale_gradients: bool = False
    cpu_here: float = 0.0  # CPU seconds of the seeds trained by this process (the rest were read from disk)


def open_fold(model_name: str, fold: int, data: Path, work: Path, train_cfg: TrainConfig, model_cfg: dict,
              name: str, device: str, precision: str, log_every: int) -> Fold:
    """Everything that can be wrong with the inputs fails here, before any training."""
    track = get_track(detect_track(data))
    rw = release_work(work, data, track)
    folds, fold_info = read_folds(rw, data)
    if not (fold in set(folds.fold) and fold >= 0):
        raise DataError(f"fold {fold} is not in {rw.folds_csv} (folds: {sorted(set(folds.fold) - {-1})})")
    release = open_release(track, data)
    test_keys = release.test_keys()
    train_keys = folds.id[folds.fold != fold].tolist()
    held_keys = folds.id[folds.fold == fold].tolist()
    sources = {s.vid: s for s in track.release_videos(data)}
    absent = [k for k in train_keys + held_keys + test_keys if k not in sources]
    if absent:
        raise DataError(f"{data}: no media or features listed for {len(absent)} video(s), e.g. {absent[:5]}")
    store = VideoStore.from_cache(work, release, {k: sources[k] for k in train_keys + held_keys + test_keys}, train_cfg,
                       frame_counts=frame_counts_to_predict(release, test_keys), timed_keys=train_keys)
    precision = resolve_precision(device, precision)
    # A class track left at the regression loss trains with its own (recorded as such).
    train_cfg = dataclasses.replace(train_cfg, loss=task_loss_spec(track, train_cfg.loss))
    settings = checkpoints.fold_settings(
        model_name, fold, train_cfg, model_class(model_name).Config(**model_cfg), store.stream_keys(),
        store.entry_digest(train_keys + held_keys), {**fold_info, "assignment": folds_digest(folds)},
        store.text_timed, precision)
    return Fold(model_name, name, fold, track, rw, release, rw.fold_files(name, fold), train_keys, held_keys,
                test_keys, dict(zip(folds.id, folds.group)), store, settings, train_cfg, model_cfg, device, precision,
                log_every)


def prepare_training(job: Fold) -> None:
    """The normalizer fit on the training videos, the model's input spec and side data."""
    store = job.store
    job.normalizer = Normalizer.fit(store, job.train_keys)
    store.check(job.held_keys + job.test_keys)
    store.set_normalizer(job.normalizer)
    cls = model_class(job.model_name)
    job.spec = InputSpec(store.modalities, store.dims, cue_slices(store.modalities), job.track.dim, job.track.low,
                         job.track.high, job.track.level, extra={"text_timed": store.text_timed}, kind=job.track.kind)
    job.targets = {k: job.release.video_targets(k) for k in job.train_keys + job.held_keys}
    extra, job.side = cls.prepare(cls.Config(**job.model_cfg),
                                  model_context(store, job.track, job.train_keys, job.train_cfg, job.targets, job.device))
    job.spec.extra.update(extra)
    job.task_loss = make_task_loss(job.track, job.train_cfg.loss, {k: job.targets[k] for k in job.train_keys})
    job.autocast, job.scale_gradients = autocast_for(job.device, job.precision)


def model_context(store: VideoStore, track: Track, train_keys: list[str], train_cfg: TrainConfig, targets: dict,
                  device: str) -> TrainContext:
    """What a model's prepare() reads (the training videos' targets and text, the normalizer),
    from a normalised store."""
    return TrainContext(track, train_keys, train_cfg, {k: targets[k] for k in train_keys if k in targets}, store.normalizer,
                        store.streams["text"][0].spec if "text" in store.modalities else None,
                        store.dims.get("text", 0), store.text_vector, device)


def train_fold(model_name: str, fold: int, data: Path, work: Path, train_cfg: TrainConfig, model_cfg: dict,
               name: str | None = None, device: str = "cpu", threads: int = 0, log_every: int = 1,
               precision: str = "auto") -> dict | None:
    """Train one (model, fold). Under torchrun every process runs this; the first one writes
    the files and returns the metrics (the others return None)."""
    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    job = open_fold(model_name, fold, data, work, train_cfg, model_cfg, name or model_name, device, precision,
                    log_every)
    done = checkpoints.finished_fold(job.files, job.settings)
    if done is not None:
        log.info("%s: already done (delete it to train again)", job.files.dir)
        return done if distributed.is_main() else None
    prepare_training(job)
    job.files.dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for seed_index in range(train_cfg.seeds):
        outcomes.append(run_seed(job, seed_index))
        distributed.barrier()  # the seed's predictions are on disk before the next seed looks for them
    if not distributed.is_main():
        return None
    return finish_fold(job, outcomes, time.time() - started)


def run_seed(job: Fold, seed_index: int) -> dict | None:
    """Train (or resume, or reload) one seed; its predictions are saved for the average."""
    files = job.rw.seed_files(job.name, job.fold, seed_index)
    seed_settings = {**job.settings, "seed_index": seed_index}
    outcome = checkpoints.finished_seed(files.predictions, seed_settings, job.files.dir)
    if outcome is not None:
        return outcome
    refit = job.train_cfg.refit
    chosen = train_seed_once(job, seed_index, seed_settings, files, files.chosen if refit else files.predictions)
    if not refit:
        return chosen
    # The inner split chose the epoch count; now the same seed learns from every training
    # video for that many epochs (its own SeedFiles, which predict uses). Under torchrun only
    # the first process holds the choice: every process takes it from there.
    epochs = distributed.from_main(None if chosen is None else chosen["best_epoch"])
    refit_files = job.rw.seed_files(job.name, job.fold, seed_index, refit=True)
    refitted = train_seed_once(job, seed_index, {**seed_settings, "refit_epochs": epochs}, refit_files,
                               refit_files.predictions, refit_epochs=epochs)
    if refitted is None or chosen is None:
        return None
    outcome = {**refitted, "best_epoch": chosen["best_epoch"], "inner_score": chosen["inner_score"],
               "settings": seed_settings,
               "cpu_seconds": round(chosen.get("cpu_seconds", 0.0) + refitted.get("cpu_seconds", 0.0), 1)}
    fileio.write_pickle(files.predictions, outcome)
    return outcome


def train_seed_once(job: Fold, seed_index: int, seed_settings: dict, files: SeedFiles, done: Path,
                    refit_epochs: int | None = None) -> dict | None:
    """The seed's predictions from `done`, else trained; a damaged best.pt trains it again, once."""
    outcome = checkpoints.finished_seed(done, seed_settings, job.files.dir)
    if outcome is not None:
        return outcome
    try:
        return train_seed(job, seed_index, seed_settings, files, done, refit_epochs)
    except checkpoints.Redo:
        try:
            return train_seed(job, seed_index, seed_settings, files, done, refit_epochs)
        except checkpoints.Redo as again:
            raise DataError(f"{again}: unreadable again after training the seed again; check the disk") from None


@dataclass
class SeedRun:
    """One seed being trained: its model, optimizer and where it is (state, saved in last.pt)."""
    index: int
    settings: dict
    files: SeedFiles
    model: torch.nn.Module
    phases: list
    fit_keys: list
    choose_keys: list
    optimizer: torch.optim.Optimizer | None = None
    scaler: object = None
    parallel: object = None
    state: dict = field(default_factory=lambda: {"phase": 0, "epoch": 0, "best": -np.inf, "best_epoch": -1,
                                                 "bad_epochs": 0, "log": []})


def train_seed(job: Fold, seed_index: int, seed_settings: dict, files: SeedFiles, done: Path,
               refit_epochs: int | None = None) -> dict | None:
    """One seed: its epoch chosen on its inner split, or (refit_epochs) every training video
    for that many epochs of the chosen phase."""
    cpu_start = provenance.cpu_seconds()
    seed = start_seed(job, seed_index, seed_settings, files, refit_epochs)
    files.dir.mkdir(parents=True, exist_ok=True)
    while seed.state["phase"] < len(seed.phases):
        run_phase(job, seed)
    best = checkpoints.reload_best(files.best, files.last, seed.model, job.device)
    if not distributed.is_main():
        return None
    held_pred, held_weights = predict(seed.model, job.store, job.held_keys, job.device)
    test_pred, _ = predict(seed.model, job.store, job.test_keys, job.device)
    cpu = provenance.cpu_seconds() - cpu_start
    job.cpu_here += cpu
    outcome = {"held": held_pred, "test": test_pred, "weights": held_weights, "best_epoch": int(best["epoch"]),
               "settings": seed_settings, "inner_score": float(best["score"]) if seed.choose_keys else None,
               "cpu_seconds": round(cpu, 1)}
    fileio.write_pickle(done, outcome)
    return outcome


def optimizer_for(model, phase, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.param_groups(phase.lr), lr=phase.lr, weight_decay=train_cfg.weight_decay)


def start_seed(job: Fold, seed_index: int, seed_settings: dict, files: SeedFiles,
               refit_epochs: int | None) -> SeedRun:
    """The seed's model and optimizer, from the start or resumed from last.pt."""
    cfg = job.train_cfg
    seed_everything(cfg.seed * 1000 + job.fold + 100_003 * seed_index)
    fit_keys, choose_keys = inner_split(job.train_keys, job.groups, cfg.inner_fraction,
                                        np.random.default_rng([cfg.seed, job.fold, seed_index, 7]))
    if refit_epochs is not None:
        fit_keys, choose_keys = job.train_keys, []
    model = create_model(job.model_name, job.spec, job.model_cfg).to(job.device)
    model.attach(job.side)
    phases = model.phases(cfg)
    if refit_epochs is not None:
        phases = [dataclasses.replace(p, epochs=refit_epochs) if p.select else p for p in phases]
    seed = SeedRun(seed_index, seed_settings, files, model, phases, fit_keys, choose_keys,
                   scaler=torch.amp.GradScaler("cuda", enabled=job.scale_gradients),
                   parallel=distributed.DataParallel(model, job.device) if distributed.world_size() > 1 else None)
    seed.optimizer = optimizer_for(model, phases[0], cfg)
    saved = checkpoints.read_training_state(files.last, files.best, job.device, seed_settings, job.files.dir)
    if saved is not None:
        model.load_state_dict(saved["model"])
        seed.state = saved["state"]
        if seed.state["phase"] < len(phases):
            seed.optimizer = optimizer_for(model, phases[seed.state["phase"]], cfg)
            seed.optimizer.load_state_dict(saved["optimizer"])
        checkpoints.restore_random_state(saved)
        log.info("%s: resuming %s at epoch %d", files.dir, phases[min(seed.state["phase"], len(phases) - 1)].name,
                 seed.state["epoch"])
    return seed


def run_phase(job: Fold, seed: SeedRun) -> None:
    """The rest of the seed's current phase, epoch by epoch (each saved in last.pt); a phase
    that selects ends on its best epoch's weights."""
    cfg, state = job.train_cfg, seed.state
    phase = seed.phases[state["phase"]]
    while state["epoch"] < phase.epochs and not (phase.select and state["bad_epochs"] >= cfg.patience):
        rng = np.random.default_rng([cfg.seed, job.fold, seed.index, state["phase"], state["epoch"]])
        losses = train_one_epoch(seed.model, phase, job.store, seed.fit_keys, rng, cfg.batch_size, job.device,
                                 seed.optimizer, seed.scaler, job.task_loss, job.autocast, seed.parallel)
        state["epoch"] += 1
        row = {"phase": phase.name, "epoch": state["epoch"], "train_loss": float(np.mean(losses)) if losses else np.nan,
               "inner_score": np.nan}
        if phase.select:
            choose_epoch(job, seed, row)
        state["log"].append(row)
        checkpoints.save_training_state(seed.files.last, seed.files.log, seed.model, seed.optimizer, state,
                                        seed.settings)
        distributed.barrier()  # best.pt and last.pt are on disk before any process reads them
        if state["epoch"] % job.log_every == 0:
            log_epoch(job, seed, phase, row)
    if phase.select:
        checkpoints.reload_best(seed.files.best, seed.files.last, seed.model, job.device)
    state.update(phase=state["phase"] + 1, epoch=0, best=-np.inf, bad_epochs=0)
    if state["phase"] < len(seed.phases):
        seed.optimizer = optimizer_for(seed.model, seed.phases[state["phase"]], cfg)
    checkpoints.save_training_state(seed.files.last, seed.files.log, seed.model, seed.optimizer, state, seed.settings)


def train_one_epoch(model, phase, store: VideoStore, keys: list[str], rng: np.random.Generator, batch_size: int,
                    device: str, optimizer, scaler, task_loss, autocast=contextlib.nullcontext(),
                    parallel=None) -> list[float]:
    """One pass over the training pieces of `keys` in the order `rng` draws; the batch losses
    (a batch with nothing to learn from, e.g. fewer than two rows of a pair, has none)."""
    model.train()
    losses = []
    for batch in loader(store, training_pieces(store, keys, rng), batch_size, rng):
        batch = to_device(batch, device)
        if parallel is None:
            with autocast:
                loss = backward = model.phase_loss(phase.name, batch, task_loss)
            if loss is None or not loss.requires_grad:
                continue
        else:
            backward, loss = parallel.loss(phase.name, batch, task_loss, autocast)
        optimizer.zero_grad()
        scaler.scale(backward).backward()
        if loss is None:
            continue
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    return losses


def inner_score(model, store: VideoStore, keys: list[str], targets: dict, track: Track, device: str, label: str) -> float:
    """The model's score on the inner split: what chooses the epoch."""
    pred, _ = predict(model, store, keys, device)
    with warnings.catch_warnings():  # a constant column early in training is expected, not news
        warnings.simplefilter("ignore", ConstantInputWarning)
        return score_predictions(track, pred, {k: targets[k] for k in keys}, label)["mean"]


def choose_epoch(job: Fold, seed: SeedRun, row: dict) -> None:
    """Score the epoch on the inner split (no split: the last epoch wins) and keep it in best.pt
    when it is the best so far."""
    state = seed.state
    if seed.choose_keys:
        if distributed.is_main():
            row["inner_score"] = inner_score(seed.model, job.store, seed.choose_keys, job.targets, job.track,
                                             job.device, f"{job.name} fold {job.fold} seed {seed.index}, inner split")
        # One process scores, every process follows its score: a last-bit difference between
        # the processes' own scores could split their choice of epoch or of stopping.
        row["inner_score"] = distributed.from_main(row["inner_score"])
    score = row["inner_score"] if seed.choose_keys else float(state["epoch"])
    if score > state["best"]:
        state.update(best=score, best_epoch=state["epoch"], bad_epochs=0)
        checkpoints.save_best(seed.files.best, seed.model, job.normalizer, seed.settings, state["epoch"], score)
    else:
        state["bad_epochs"] += 1


def log_epoch(job: Fold, seed: SeedRun, phase, row: dict) -> None:
    state = seed.state
    scored = (f", inner {job.track.metric} {row['inner_score']:.4f} (best {state['best']:.4f} @ {state['best_epoch']})"
              if phase.select and seed.choose_keys else "")
    log.info("%s fold %d seed %d %s epoch %d: loss %.4f%s", job.name, job.fold, seed.index, phase.name,
             state["epoch"], row["train_loss"], scored)


def finish_fold(job: Fold, outcomes: list[dict], seconds: float) -> dict:
    """The seeds averaged into oof.csv and test.csv, the fusion weights, metrics.json."""
    held_pred = average_predictions([o["held"] for o in outcomes], job.held_keys)
    test_pred = average_predictions([o["test"] for o in outcomes], job.test_keys)
    write_predictions(job.files.oof, job.track, held_pred)
    write_predictions(job.files.test, job.track, test_pred)
    if outcomes[0]["weights"] is not None:
        weights = pd.DataFrame([np.mean([o["weights"][k] for o in outcomes], axis=0) for k in job.held_keys],
                               columns=[f"w_{m}" for m in job.store.modalities])
        weights.insert(0, "id", job.held_keys)
        fileio.write_csv(job.files.fusion_weights, weights)
    result = score_predictions(job.track, held_pred, {k: job.targets[k] for k in job.held_keys},
                               f"{job.name} fold {job.fold}, held-out videos")
    metrics = {"model": job.model_name, "name": job.name, "fold": job.fold, "track": job.track.name,
               "metric": job.track.metric, "best_epoch": [o["best_epoch"] for o in outcomes],
               "inner_scores": [None if o["inner_score"] is None else round(o["inner_score"], 4) for o in outcomes],
               "held_score": result["mean"], "per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()},
               "train_videos": len(job.train_keys), "held_videos": len(job.held_keys),
               "test_videos": len(job.test_keys), "seconds": round(seconds, 1),
               # This process's CPU, with the recorded CPU of seeds an earlier process trained (a seed
               # resumed from last.pt counts from its resumption only).
               "cpu_seconds": round(provenance.cpu_seconds() - job.cpu_here
                                    + sum(o.get("cpu_seconds", 0.0) for o in outcomes), 1),
               **provenance.stamp(), "settings": job.settings}
    fileio.write_json(job.files.metrics, metrics)
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
