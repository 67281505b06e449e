"""python -m solution.train_fold: train one (model, fold) on the cached features.

    python -m solution.train_fold --model dual_stage --fold 0 --data DIR --work WORK
    python -m solution.train_fold --model dual_stage --fold 0 --data DIR --work WORK --no-stage1 --name ds_nostage1
    python -m solution.train_fold --model linear --fold 2 --data DIR --work WORK --set lr=3e-3 --set model.dropout=0.1

Writes WORK/runs/<name>/fold<k>/: best.pt (the best epoch's weights with everything needed
to rebuild the model), last.pt (the state to resume from), oof.csv (predictions for the
fold's held-out videos), test.csv (predictions for the test ids), metrics.json and
log.csv (one row per epoch). Early stopping on the held-out mean Pearson. A finished fold
(metrics.json present) is skipped; an interrupted one resumes from last.pt. The same seed
and --threads give the same predictions on the CPU. Settings: the `train` and `model` tables of a TOML
file (--config) and --set key=value overrides (`lr`, `train.epochs`, `model.dim`...).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solution import fileio
from solution.data import FeatureTable, Normalizer, cue_slices, load_table, make_batch
from solution.folds import read_folds
from solution.layouts import DataError, EmiRelease, emi_key
from solution.metrics import make_loss, pearson_per_dim
from solution.models import InputSpec, config_fields, create_model, model_class, model_names
from solution.predictions import write_emi_predictions
from solution.tracks import EMI, EMI_TARGETS

log = logging.getLogger("train_fold")


@dataclass
class TrainConfig:
    epochs: int = 60
    patience: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    loss: str = "ccc"
    stage1_epochs: int = 15
    stage1_lr: float = 1e-3
    seed: int = 0
    seeds: int = 3          # models per fold, from different seeds; their predictions are averaged
    visual_rate: float = 5.0
    audio_rate: float = 10.0
    streams: dict = field(default_factory=dict)  # modality -> [extractor spec]; empty: every cached stream
    text_model: str = ""  # extractor for stage-1 label descriptions; default: the text stream's, else minilm


# ------------------------------------------------------------------ settings

def _coerce(value: str, kind):
    kind = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}.get(kind, kind) if isinstance(kind, str) else kind
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"expected true/false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    if kind is dict:
        return tomllib.loads(f"x = {value}")["x"]
    return kind(value)


def resolve_settings(model: str, config_file: Path | None, overrides: list[str]) -> tuple[TrainConfig, dict]:
    """Defaults, then the TOML file, then --set overrides; unknown keys are errors."""
    train_fields = config_fields(TrainConfig)
    model_fields = config_fields(model_class(model).Config)
    train, model_cfg = {}, {}
    if config_file is not None:
        if not config_file.is_file():
            raise DataError(f"{config_file}: config file not found")
        try:
            loaded = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"{config_file}: not valid TOML ({exc})") from exc
        extra = sorted(set(loaded) - {"train", "model"})
        if extra:
            raise DataError(f"{config_file}: unknown table(s) {extra}; use [train] and [model]")
        for table, known, out in (("train", train_fields, train), ("model", model_fields, model_cfg)):
            unknown = sorted(set(loaded.get(table, {})) - set(known))
            if unknown:
                raise DataError(f"{config_file}: [{table}] has no setting(s) {unknown}; known: {sorted(known)}")
            out.update(loaded.get(table, {}))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--set {item!r}: use key=value")
        scope, _, name = key.rpartition(".")
        if scope not in ("", "train", "model"):
            raise DataError(f"--set {key}: prefix must be train. or model.")
        if scope != "model" and name in train_fields:
            target, kind = train, train_fields[name].type
        elif scope != "train" and name in model_fields:
            target, kind = model_cfg, model_fields[name].type
        else:
            raise DataError(f"--set {key}: no such setting; train: {sorted(train_fields)}; "
                            f"model {model}: {sorted(model_fields)}")
        try:
            target[name] = _coerce(value, kind)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"--set {key}={value}: {exc}") from exc
    return TrainConfig(**train), model_cfg


# ------------------------------------------------------------------ label descriptions (stage 1)

def describe_labels(values: np.ndarray) -> list[str]:
    """'A person showing strong amusement, moderate joy and mild excitement.'"""
    out = []
    for row in values:
        parts = [f"{word} {name.lower()}" for value, name in sorted(zip(row, EMI_TARGETS), reverse=True)
                 for word in [("strong" if value >= 0.66 else "moderate" if value >= 0.33 else "mild" if value >= 0.1 else "")]
                 if word]
        body = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "no particular emotion"
        out.append(f"A person showing {body}.")
    return out


def stage1_text(table: FeatureTable, rows, labels: np.ndarray, text_spec: str, normalizer: Normalizer) -> np.ndarray:
    """Per training row: its transcript embedding, or the embedding of its label's description."""
    from solution.extractors import create_extractor

    extractor = create_extractor(text_spec)
    described = np.concatenate([extractor(text) for text in describe_labels(labels)])
    if "text" not in table.modalities:
        return described
    out = []
    for row, description in zip(rows, described):
        seq = table.sequences["text"][row]
        out.append(normalizer.apply("text", seq)[0] if seq is not None and seq.shape[1] == len(description)
                   else normalizer.apply("text", description[None])[0])
    return np.asarray(out, np.float32)


# ------------------------------------------------------------------ the loop

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batches(rows: np.ndarray, size: int, rng: np.random.Generator, shuffle: bool):
    order = rng.permutation(rows) if shuffle else rows
    cuts = list(range(0, len(order), size))
    # A tiny last batch gives a meaningless batch correlation: fold it into the previous one.
    if shuffle and len(cuts) > 1 and len(order) - cuts[-1] < max(8, size // 4):
        cuts.pop()
    return [order[start:(cuts[i + 1] if i + 1 < len(cuts) else len(order))] for i, start in enumerate(cuts)]


def predict(model, table, rows, device, batch_size=128):
    model.eval()
    preds, weights = [], []
    with torch.inference_mode():
        for chunk in batches(rows, batch_size, np.random.default_rng(0), shuffle=False):
            out = model(make_batch(table, chunk, device=device))
            preds.append(out["pred"].float().cpu().numpy())
            if "weights" in out:
                weights.append(out["weights"].float().cpu().numpy())
    return np.concatenate(preds), (np.concatenate(weights) if weights else None)


def save_checkpoint(path: Path, payload: dict) -> None:
    with fileio.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train_fold(model_name: str, fold: int, data: Path, work: Path, train_cfg: TrainConfig, model_cfg: dict,
               name: str | None = None, device: str = "cpu", threads: int = 0, log_every: int = 1) -> dict:
    out_dir = Path(work) / "runs" / (name or model_name) / f"fold{fold}"
    if (out_dir / "metrics.json").is_file():
        log.info("%s: already done (delete metrics.json to train again)", out_dir)
        return json.loads((out_dir / "metrics.json").read_text())
    if threads:
        torch.set_num_threads(threads)
    started = time.time()

    # Everything that can be wrong with the inputs fails here, before any training.
    folds, fold_info = read_folds(work, data)
    if not (fold in set(folds.fold) and fold >= 0):
        raise DataError(f"fold {fold} is not in {Path(work) / 'folds.csv'} (folds: {sorted(set(folds.fold) - {-1})})")
    release = EmiRelease(data)
    labelled = release.labelled()
    label_of = {emi_key(v): row for v, row in zip(labelled.index, labelled[list(EMI_TARGETS)].to_numpy())}
    test_ids = [emi_key(v) for v in release.test_ids()]
    train_ids = folds.id[(folds.fold != fold)].tolist()
    held_ids = folds.id[folds.fold == fold].tolist()
    table = load_table(work, train_ids + held_ids + test_ids, train_cfg.streams or None,
                       {"visual": train_cfg.visual_rate, "audio": train_cfg.audio_rate})
    train_rows, held_rows = table.index(train_ids), table.index(held_ids)
    test_rows = table.index(test_ids)
    labels = np.stack([label_of[v] for v in table.ids[: len(train_ids) + len(held_ids)]])
    normalizer = Normalizer.fit(table, train_rows)
    raw_table, table = table, normalizer.table(table)

    text_spec = train_cfg.text_model or (table.streams["text"][0] if "text" in table.modalities else "minilm")
    model_class_ = model_class(model_name)
    wants_stage1 = hasattr(model_class_, "pretrain_loss") and model_cfg.get("stage1", True) and train_cfg.stage1_epochs > 0
    stage1_targets = stage1_text(raw_table, train_rows, labels[train_rows], text_spec, normalizer) if wants_stage1 else None
    spec = InputSpec(table.modalities, table.dims, cue_slices(table.modalities), EMI.dim, EMI.low, EMI.high,
                     stage1_text_dim=0 if stage1_targets is None else stage1_targets.shape[1])
    settings = {"model": model_name, "fold": fold, "train": asdict(train_cfg), "model_config": asdict(model_class_.Config(**model_cfg)),
                "spec": {**asdict(spec), "cue_slices": {m: [s.start, s.stop] for m, s in spec.cue_slices.items()}},
                "streams": table.streams, "folds": fold_info, "text_model": text_spec}

    def run_seed(seed_index: int) -> dict:
        """Train (or resume, or reload) one seed; its predictions are saved for the average."""
        seed_dir = out_dir / f"seed{seed_index}"
        done = seed_dir / "predictions.npz"
        if done.is_file():
            with np.load(done) as saved:
                return {k: saved[k] for k in saved.files}
        seed_settings = {**settings, "seed_index": seed_index}
        seed_everything(train_cfg.seed * 1000 + fold + 100_003 * seed_index)
        model = create_model(model_name, spec, model_cfg).to(device)
        loss_fn = make_loss(train_cfg.loss)
        use_amp = device.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

        def optimizer(lr):
            return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=train_cfg.weight_decay)

        state = {"phase": "stage1" if stage1_targets is not None else "stage2", "epoch": 0, "best": -np.inf,
                 "best_epoch": -1, "bad_epochs": 0, "log": []}
        opt = optimizer(train_cfg.stage1_lr if state["phase"] == "stage1" else train_cfg.lr)
        last = seed_dir / "last.pt"
        if last.is_file():
            saved = torch.load(last, map_location=device, weights_only=False)
            if saved["settings"] != seed_settings:
                raise DataError(f"{last}: was trained with other settings; delete {out_dir} to start over")
            model.load_state_dict(saved["model"])
            state = saved["state"]
            opt = optimizer(train_cfg.stage1_lr if state["phase"] == "stage1" else train_cfg.lr)
            opt.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
            log.info("%s: resuming %s at epoch %d", out_dir, state["phase"], state["epoch"])

        def checkpoint():
            save_checkpoint(last, {"settings": seed_settings, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "state": state, "torch_rng": torch.get_rng_state()})
            fileio.write_csv(seed_dir / "log.csv", pd.DataFrame(state["log"]), float_format="%.5f")

        seed_dir.mkdir(parents=True, exist_ok=True)
        while state["phase"] == "stage1" and state["epoch"] < train_cfg.stage1_epochs:
            model.train()
            rng = np.random.default_rng([train_cfg.seed, fold, seed_index, 1, state["epoch"]])
            total = []
            for chunk in batches(np.arange(len(train_rows)), train_cfg.batch_size, rng, shuffle=True):
                rows = train_rows[chunk]
                batch = make_batch(table, rows, labels[rows], device)
                batch["stage1_text"] = torch.from_numpy(stage1_targets[chunk]).to(device)
                with torch.autocast("cuda", enabled=use_amp):
                    loss = model.pretrain_loss(batch)
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total.append(loss.item())
            state["epoch"] += 1
            state["log"].append({"phase": "stage1", "epoch": state["epoch"], "train_loss": float(np.mean(total)),
                                 "held_pearson": np.nan})
            if state["epoch"] >= train_cfg.stage1_epochs:
                state.update(phase="stage2", epoch=0)
                opt = optimizer(train_cfg.lr)
            checkpoint()
        if state["phase"] == "stage1":
            state.update(phase="stage2", epoch=0)

        best_path = seed_dir / "best.pt"
        while state["epoch"] < train_cfg.epochs and state["bad_epochs"] < train_cfg.patience:
            model.train()
            rng = np.random.default_rng([train_cfg.seed, fold, seed_index, 2, state["epoch"]])
            total = []
            for chunk in batches(train_rows, train_cfg.batch_size, rng, shuffle=True):
                batch = make_batch(table, chunk, labels[chunk], device)
                with torch.autocast("cuda", enabled=use_amp):
                    out = model(batch)
                    loss = loss_fn(out["pred"].float(), batch["target"]) + out.get("aux_loss", 0.0)
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total.append(loss.item())
            pred, _ = predict(model, table, held_rows, device)
            score = float(pearson_per_dim(np.clip(pred, EMI.low, EMI.high), labels[held_rows], names=EMI_TARGETS).mean())
            state["epoch"] += 1
            state["log"].append({"phase": "stage2", "epoch": state["epoch"], "train_loss": float(np.mean(total)),
                                 "held_pearson": score})
            if score > state["best"]:
                state.update(best=score, best_epoch=state["epoch"], bad_epochs=0)
                save_checkpoint(best_path, {"settings": seed_settings, "model": model.state_dict(),
                                            "normalizer": normalizer.state(), "epoch": state["epoch"], "score": score})
            else:
                state["bad_epochs"] += 1
            checkpoint()
            if state["epoch"] % log_every == 0:
                log.info("%s %s fold %d seed %d epoch %d: loss %.4f held-out mean Pearson %.4f (best %.4f @ %d)", name or model_name,
                         "stage2", fold, seed_index, state["epoch"], np.mean(total), score, state["best"], state["best_epoch"])

        best = torch.load(best_path, map_location=device, weights_only=False)
        model.load_state_dict(best["model"])
        held_pred, held_weights = predict(model, table, held_rows, device)
        test_pred, _ = predict(model, table, test_rows, device)
        outcome = {"held": held_pred, "test": test_pred, "best_epoch": np.array(best["epoch"]),
                   "score": np.array(best["score"])}
        if held_weights is not None:
            outcome["weights"] = held_weights
        with fileio.atomic_path(done) as tmp:
            np.savez(tmp, **outcome)
        return outcome

    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [run_seed(i) for i in range(train_cfg.seeds)]
    held_pred = np.mean([o["held"] for o in outcomes], axis=0)
    test_pred = np.mean([o["test"] for o in outcomes], axis=0)
    held_weights = np.mean([o["weights"] for o in outcomes], axis=0) if "weights" in outcomes[0] else None
    as_frame = lambda ids, values: pd.DataFrame(values, index=pd.Index([int(v) for v in ids]), columns=list(EMI_TARGETS))  # noqa: E731
    write_emi_predictions(out_dir / "oof.csv", as_frame(held_ids, held_pred))
    write_emi_predictions(out_dir / "test.csv", as_frame(test_ids, test_pred))
    if held_weights is not None:
        weights = pd.DataFrame(held_weights, columns=[f"w_{m}" for m in table.modalities])
        weights.insert(0, "Filename", held_ids)
        fileio.write_csv(out_dir / "fusion_weights.csv", weights)
    per_dim = pearson_per_dim(np.clip(held_pred, EMI.low, EMI.high), labels[held_rows], names=EMI_TARGETS)
    metrics = {"model": model_name, "name": name or model_name, "fold": fold,
               "best_epoch": [int(o["best_epoch"]) for o in outcomes],
               "seed_scores": [round(float(o["score"]), 4) for o in outcomes],
               "held_pearson": float(per_dim.mean()), "per_dim": dict(zip(EMI_TARGETS, per_dim.round(4).tolist())),
               "train_videos": len(train_rows), "held_videos": len(held_rows), "test_videos": len(test_rows),
               "seconds": round(time.time() - started, 1), "settings": settings}
    fileio.write_json(out_dir / "metrics.json", metrics)
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.train_fold", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", required=True, choices=model_names())
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the release (labels, test ids)")
    parser.add_argument("--work", type=Path, required=True, help="holds features/, folds.csv; runs/ is written here")
    parser.add_argument("--config", type=Path, help="TOML file with [train] and [model] tables")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)")
    parser.add_argument("--name", help="run name (default: the model name); ablations want their own")
    parser.add_argument("--no-stage1", action="store_true", help="dual_stage: skip the contrastive pretraining")
    parser.add_argument("--fusion", choices=["quality", "quality_sum", "concat"],
                        help="dual_stage: quality-gated concatenation (default), quality-weighted sum, or plain concatenation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--log-every", type=int, default=1, help="log every n-th epoch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[train] %(message)s")
    try:
        overrides = list(args.set)
        if args.no_stage1:
            overrides.append("model.stage1=false")
        if args.fusion:
            overrides.append(f"model.fusion={args.fusion}")
        train_cfg, model_cfg = resolve_settings(args.model, args.config, overrides)
        metrics = train_fold(args.model, args.fold, args.data, args.work, train_cfg, model_cfg, args.name,
                             args.device, args.threads, max(1, args.log_every))
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[train] {metrics['name']} fold {metrics['fold']}: held-out mean Pearson {metrics['held_pearson']:.4f} "
          f"(best epochs {metrics['best_epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
