"""Settings: the one place they are defined and resolved.

Training reads `TrainConfig` (below) and the model's own `Config` dataclass; precedence is
defaults < the model's `train_defaults` (what it needs, e.g. one time grid) < a TOML file (`--config FILE`, or `CONFIG=FILE bash run_all.sh`) < `--set KEY=VALUE`.
One TOML file serves every stage:

    [features]              # options of python -m solution.features (long names, - or _)
    visual = "hog"
    [folds]                 # options of python -m solution.folds
    k = 5
    [train]                 # TrainConfig, for every model
    epochs = 40
    [model]                 # applies to every model that has the setting
    dropout = 0.3
    [model.dual_stage]      # one model only; an unknown key is an error
    fusion = "concat"

`--set` takes `lr=3e-4`, `train.lr=3e-4`, `model.dim=64` (this model; unknown is an error) or
`model.dual_stage.dim=64` (only when training dual_stage; ignored by other models, so one
TRAIN_ARGS can serve several models). Dict settings take TOML inline tables:
`--set 'streams={visual=["hog"], audio=["egemaps"]}'`.
"""
from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from solution.errors import DataError


@dataclass
class TrainConfig:
    epochs: int = 60                # most epochs of the main phase
    patience: int = 12              # stop after this many epochs without a better inner-validation score
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    loss: str = "ccc"               # pearson | ccc | mse, or mixes such as 0.7*ccc+0.3*mse
    seed: int = 0
    seeds: int = 2                  # models per fold, each with its own seed and inner split; predictions averaged
    inner_fraction: float = 0.2     # share of the training groups held out to choose the epoch (never the fold)
    refit: bool = False             # after choosing the epoch count, train each seed again on every training
    #                                 video for that many epochs and predict with that model (a model's
    #                                 train_defaults may turn it on; --help lists which do)
    grid: str = "own"               # "own": each modality at its own rate; "shared": one grid for all
    visual_rate: float = 5.0        # Hz, grid of the visual modality (grid = own)
    audio_rate: float = 10.0        # Hz, grid of the audio modality (grid = own)
    shared_rate: float = 10.0       # Hz, the shared grid (frame-level: label frames thinned to this rate; 0 = all)
    crop_seconds: float = 12.0      # video-level training crops (longer videos are cropped at random;
    #                                 prediction covers the whole video in overlapping chunks)
    window: int = 300               # frame-level training and inference windows, in label frames (10 s at 30 fps)
    hop: int = 200                  # frame-level window hop; overlapping predictions are averaged
    label_delay: float = 0.0        # seconds the labels lag the media (frame-level tracks)
    streams: dict = field(default_factory=dict)  # modality -> [extractor spec]; empty: every cached stream
    cache_mb: int = 256             # in-memory cache of aligned videos per process (memory grows with the batch)
    loader_workers: int = 0         # DataLoader worker processes reading the cache


SECTIONS = ("features", "folds", "train", "model")


def load_toml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    try:
        loaded = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from exc
    extra = sorted(set(loaded) - set(SECTIONS))
    if extra:
        raise DataError(f"{path}: unknown table(s) {extra}; use {list(SECTIONS)}")
    return loaded


def config_fields(config_class) -> dict:
    return {f.name: f for f in dataclasses.fields(config_class)}


def coerce(value: str, kind):
    """A --set string -> the setting's type (kinds are strings under `from __future__ import annotations`)."""
    kind = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}.get(kind, kind) if isinstance(kind, str) else kind
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"expected true/false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    if kind is dict:
        return tomllib.loads(f"x = {value}")["x"]
    return kind(value)


def resolve_settings(model: str, config_file: Path | None, overrides: list[str],
                     model_config_class, all_model_fields: dict[str, dict] | None = None,
                     train_defaults: dict | None = None) -> tuple[TrainConfig, dict]:
    """Defaults (TrainConfig's, then the model's own `train_defaults`, e.g. rcma's shared time
    grid), then the TOML file, then --set overrides -> (TrainConfig, model settings)."""
    train_fields = config_fields(TrainConfig)
    model_fields = config_fields(model_config_class)
    train, model_cfg = dict(train_defaults or {}), {}
    if config_file is not None:
        loaded = load_toml(config_file)
        unknown = sorted(set(loaded.get("train", {})) - set(train_fields))
        if unknown:
            raise DataError(f"{config_file}: [train] has no setting(s) {unknown}; known: {sorted(train_fields)}")
        train.update(loaded.get("train", {}))
        shared = {k: v for k, v in loaded.get("model", {}).items() if not isinstance(v, dict)}
        known_anywhere = set().union(*(all_model_fields or {model: model_fields}).values())
        stray = sorted(set(shared) - known_anywhere)
        if stray:
            raise DataError(f"{config_file}: [model] has setting(s) {stray} that no model has")
        model_cfg.update({k: v for k, v in shared.items() if k in model_fields})
        own = loaded.get("model", {}).get(model, {})
        unknown = sorted(set(own) - set(model_fields))
        if unknown:
            raise DataError(f"{config_file}: [model.{model}] has no setting(s) {unknown}; known: {sorted(model_fields)}")
        model_cfg.update(own)
        others = {k for k, v in loaded.get("model", {}).items() if isinstance(v, dict)} - set(all_model_fields or {model})
        if others:
            raise DataError(f"{config_file}: [model.{sorted(others)[0]}] names no registered model")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--set {item!r}: use key=value")
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "model":
            if parts[1] != model:
                continue  # scoped to another model
            parts = ["model", parts[2]]
        scope, name = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        if len(parts) > 2 or scope not in ("", "train", "model"):
            raise DataError(f"--set {key}: use NAME, train.NAME, model.NAME or model.<model>.NAME")
        if scope != "model" and name in train_fields:
            target, kind = train, train_fields[name].type
        elif scope != "train" and name in model_fields:
            target, kind = model_cfg, model_fields[name].type
        else:
            raise DataError(f"--set {key}: no such setting; train: {sorted(train_fields)}; "
                            f"model {model}: {sorted(model_fields)}")
        try:
            target[name] = coerce(value, kind)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"--set {key}={value}: {exc}") from exc
    return TrainConfig(**train), model_cfg


def settings_help(models: dict[str, type]) -> str:
    """Every --set key with its default, for --help."""
    lines = ["train settings (--set NAME=VALUE or train.NAME=VALUE):"]
    lines += [f"  {f.name} = {_default(f)!r}" for f in dataclasses.fields(TrainConfig)]
    for name, cls in sorted(models.items()):
        lines.append(f"model {name} (--set model.NAME=VALUE, or model.{name}.NAME=VALUE):")
        if getattr(cls, "train_defaults", None):
            lines.append(f"  (trains with {', '.join(f'{k} = {v!r}' for k, v in cls.train_defaults.items())} unless set)")
        lines += [f"  {f.name} = {_default(f)!r}" for f in dataclasses.fields(cls.Config)]
    return "\n".join(lines)


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def apply_stage_config(parser: argparse.ArgumentParser, argv, section: str):
    """Parse a stage's command line with its `[section]` of --config as defaults (flags still win)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", type=Path)
    known, _ = early.parse_known_args(argv)
    if known.config is not None:
        try:
            table = load_toml(known.config).get(section, {})
        except DataError as exc:
            parser.error(str(exc))
        dests = {a.dest for a in parser._actions}
        values = {k.replace("-", "_"): v for k, v in table.items()}
        unknown = sorted(set(values) - dests)
        if unknown:
            parser.error(f"{known.config}: [{section}] has no option(s) {unknown}")
        parser.set_defaults(**{k: _typed(parser, k, v) for k, v in values.items()})
    return parser.parse_args(argv)


def _typed(parser, dest, value):
    """TOML lists -> the comma lists the stage flags take; Path options -> Path."""
    action = next(a for a in parser._actions if a.dest == dest)
    if isinstance(value, list):
        value = ",".join(map(str, value))
    if action.type is Path and value is not None:
        return Path(value)
    if callable(action.type) and isinstance(value, str) and action.type not in (str,):
        return action.type(value)
    return value
