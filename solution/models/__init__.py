"""Models, created by name: scripts say `--model dual_stage` and never branch on model types.

Every module in this folder is imported on first use, and each registers its classes with
`@register_model(name)`: a new model is a new file, nothing else to edit.

A model subclasses `HarnessModel`: it takes an InputSpec (what the data offers) and its own
`Config` dataclass; forward(batch) returns a dict with `pred` inside the track's range,
(batch, targets) for video-level tracks or (batch, frames, targets) for frame-level ones,
and optionally `aux_loss` (added to the task loss) and `weights` (per-modality fusion
weights, logged for reports). What a model does beyond that lives in its own file behind
the hooks below, so the training loop names no model:

  prepare(config, context) -> (spec extras, side data)   before the model is built
  attach(side)                                           side data (e.g. stage-1 text targets)
  phases(train_cfg) -> [Phase]                           e.g. a contrastive stage, then the task
  phase_loss(phase, batch, task_loss) -> loss or None    one batch's loss in a phase
  param_groups(lr) -> [dict]                             e.g. a faster learning rate for a small head
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from solution.config import config_fields

MODELS: dict[str, type] = {}


def register_model(name: str):
    def wrap(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return wrap


def _load_all():
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def model_names() -> list[str]:
    _load_all()
    return sorted(MODELS)


def model_class(name: str) -> type:
    _load_all()
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def all_model_fields() -> dict[str, dict]:
    _load_all()
    return {name: config_fields(cls.Config) for name, cls in MODELS.items()}


@dataclass
class InputSpec:
    modalities: tuple
    dims: dict                  # modality -> feature width
    cue_slices: dict            # modality -> slice of the cue vector
    n_targets: int
    low: float
    high: float
    level: str = "video"        # "video": one output per video; "frame": one per frame of the shared grid
    extra: dict = field(default_factory=dict)  # what a model's prepare() adds (JSON-serialisable)
    kind: str = "regression"    # the track's kind: a class track's head gives logits (HarnessModel.output)

    def state(self) -> dict:
        out = dataclasses.asdict(self)
        out["cue_slices"] = {m: [s.start, s.stop] for m, s in self.cue_slices.items()}
        out["modalities"] = list(self.modalities)
        if out["kind"] == "regression":  # what checkpoints written before class tracks hold
            del out["kind"]
        return out

    @classmethod
    def from_state(cls, state: dict) -> "InputSpec":
        state = dict(state)
        state["cue_slices"] = {m: slice(a, b) for m, (a, b) in state["cue_slices"].items()}
        state["modalities"] = tuple(state["modalities"])
        return cls(**state)


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    select: bool = True  # choose the epoch on the inner validation split; otherwise train every epoch


@dataclass
class TrainContext:
    """What prepare() may read: the training videos, their targets, the fitted normalizer and
    their text, never the feature store itself."""
    track: object
    train_keys: list
    train_cfg: object
    targets: dict                # training video -> its targets (per frame for frame-level tracks; track.annotated)
    normalizer: object = None    # data.Normalizer fitted on the training videos
    text_stream: str | None = None  # spec of the first text stream ("minilm"), None without text
    text_dim: int = 0            # width of the text modality (0 without text)
    text_vector: Callable[[str], np.ndarray | None] = lambda key: None  # a training video's text, normalised
    device: str = "cpu"


class HarnessModel(nn.Module):
    """Defaults of the hooks: one phase trained on the task loss."""

    levels: tuple = ("video",)
    train_defaults: dict = {}  # TrainConfig values this model trains with unless told otherwise (e.g. one time grid, refit)
    augment: bool = True  # random training-time augmentations on; tests of exact outputs turn them off

    @dataclass
    class Config:
        pass

    @classmethod
    def prepare(cls, config, context: TrainContext) -> tuple[dict, object]:
        return {}, None

    def attach(self, side) -> None:
        pass

    def phases(self, train_cfg) -> list[Phase]:
        return [Phase("main", train_cfg.epochs, train_cfg.lr)]

    def param_groups(self, lr: float) -> list[dict]:
        """The optimizer's parameter groups in a phase whose learning rate is `lr`."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def phase_loss(self, phase: str, batch: dict, task_loss) -> torch.Tensor | None:
        out = self(batch)
        loss = task_loss(out["pred"].float(), batch["target"], batch.get("target_mask"))
        return loss + out["aux_loss"] if "aux_loss" in out else loss

    def drop_modalities(self, present: torch.Tensor, rate: float) -> torch.Tensor:
        """Modality dropout while training: each modality a sample has is dropped with
        probability `rate` (teaching the fusion to cope without it), never all of them."""
        if not (self.training and rate > 0):
            return present
        kept = present & ~(torch.rand(present.shape, device=present.device) < rate)
        return torch.where(kept.any(1, keepdim=True), kept, present)

    def to_range(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's outputs as the loss takes them: squashed into the track's range
        (regression), or the logits as they are (a class track's loss takes logits)."""
        if self.spec.kind != "regression":
            return logits
        return self.spec.low + (self.spec.high - self.spec.low) * torch.sigmoid(logits)

    def output(self, pred: torch.Tensor) -> torch.Tensor:
        """What a prediction file holds, from the forward's `pred`: the values (regression), the
        class probabilities (softmax, multi-class) or each unit's (sigmoid, multi-label)."""
        if self.spec.kind == "multiclass":
            return torch.softmax(pred.float(), -1)
        if self.spec.kind == "multilabel":
            return torch.sigmoid(pred.float())
        return pred


def create_model(name: str, spec: InputSpec, config: dict | None = None) -> HarnessModel:
    cls = model_class(name)
    known = config_fields(cls.Config)
    unknown = sorted(set(config or {}) - set(known))
    if unknown:
        raise ValueError(f"model {name!r} has no setting(s) {unknown}; its settings: {sorted(known)}")
    if spec.level not in cls.levels:
        raise ValueError(f"model {name!r} supports {cls.levels} tracks, not {spec.level}-level ones")
    return cls(spec, cls.Config(**(config or {})))
