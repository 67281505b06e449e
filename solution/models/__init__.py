"""Models, created by name: scripts say `--model dual_stage` and never branch on model types.

Each model module registers a class with a config dataclass (`Config`). A model takes an
InputSpec (what the data offers) and its config, and its forward(batch) returns a dict with
`pred` (batch, targets) inside the track's range, and optionally `aux_loss` (added to the
task loss) and `weights` (per-modality fusion weights, for reports). A model that has a
pretraining stage implements pretrain_loss(batch).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

MODELS: dict[str, type] = {}
_MODULES = ("linear", "dual_stage")


def register_model(name: str):
    def wrap(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return wrap


def _load_all():
    for module in _MODULES:
        importlib.import_module(f"solution.models.{module}")


def model_names() -> list[str]:
    _load_all()
    return sorted(MODELS)


def model_class(name: str) -> type:
    _load_all()
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


@dataclass
class InputSpec:
    modalities: tuple
    dims: dict                  # modality -> feature width
    cue_slices: dict            # modality -> slice of the cue vector
    n_targets: int
    low: float
    high: float
    stage1_text_dim: int = 0    # width of the stage-1 text targets (0: none)
    extra: dict = field(default_factory=dict)


def config_fields(config_class) -> dict:
    return {f.name: f for f in dataclasses.fields(config_class)}


def create_model(name: str, spec: InputSpec, config: dict | None = None):
    cls = model_class(name)
    known = config_fields(cls.Config)
    unknown = sorted(set(config or {}) - set(known))
    if unknown:
        raise ValueError(f"model {name!r} has no setting(s) {unknown}; its settings: {sorted(known)}")
    return cls(spec, cls.Config(**(config or {})))
