"""The contract every registered model and every sequence layer keeps, at every level it supports:
shapes and range, the same outputs whatever the padding, a missing modality, gradients that
reach every trainable parameter, and a save/load round trip."""
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from solution import layers
from solution.data import Normalizer, cue_slices
from solution.errors import DataError
from solution.checkpoints import checkpoint_payload, load_checkpoint
from solution.models import InputSpec, create_model, model_class, model_names
from solution.tracks import EMI, VA

DIMS = {"visual": 12, "audio": 7, "text": 5}
LENGTHS = [9, 5, 12]  # real steps of each video in the batch


def make_spec(level: str) -> InputSpec:
    track = EMI if level == "video" else VA
    modalities = ("visual", "audio", "text")
    return InputSpec(modalities, DIMS, cue_slices(modalities), track.dim, track.low, track.high, level)


def make_batch(spec: InputSpec, pad_to: int, seed: int = 0, present=None) -> dict:
    """Three videos of LENGTHS steps (all modalities on one grid), padded to `pad_to` steps."""
    rng = np.random.default_rng(seed)
    n = len(LENGTHS)
    present = np.ones((n, 3), bool) if present is None else present
    batch = {"keys": [f"{i:05d}" for i in range(n)]}
    for j, m in enumerate(spec.modalities):
        steps = 1 if m == "text" else pad_to
        x = np.zeros((n, steps, DIMS[m]), np.float32)
        mask = np.zeros((n, steps), bool)
        for i, length in enumerate(LENGTHS):
            if present[i, j]:
                real = 1 if m == "text" else length
                x[i, :real] = rng.normal(size=(real, DIMS[m]))
                mask[i, :real] = True
            else:
                rng.normal(size=(1 if m == "text" else length, DIMS[m]))  # same draws either way
        batch[m], batch[f"{m}_mask"] = torch.from_numpy(x), torch.from_numpy(mask)
        batch[f"{m}_quality"] = torch.from_numpy(mask.astype(np.float32))
    batch["present"] = torch.from_numpy(present)
    batch["cues"] = torch.from_numpy(rng.uniform(size=(n, 11)).astype(np.float32))
    frame_mask = np.zeros((n, pad_to), bool)
    for i, length in enumerate(LENGTHS):
        frame_mask[i, :length] = True
    if spec.level == "frame":
        batch["frame_mask"] = torch.from_numpy(frame_mask)
        batch["target"] = torch.from_numpy(rng.uniform(-1, 1, (n, pad_to, spec.n_targets)).astype(np.float32))
        batch["target_mask"] = torch.from_numpy(frame_mask)
    else:
        batch["target"] = torch.from_numpy(rng.uniform(0, 1, (n, spec.n_targets)).astype(np.float32))
    return batch


def _cases():
    for name in model_names():
        for level in model_class(name).levels:
            yield pytest.param(name, level, id=f"{name}-{level}")


CASES = list(_cases())


def training_without_dropout(model: nn.Module) -> nn.Module:
    """Train mode (batch statistics), but dropout and augmentations off: their random draws
    depend on the tensor shape."""
    model.train()
    model.augment = False
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    return model


def real_part(pred: torch.Tensor, level: str) -> list[torch.Tensor]:
    return [pred[i, :length] if level == "frame" else pred[i] for i, length in enumerate(LENGTHS)]


def test_every_model_is_tested():
    assert {"linear", "dual_stage"} <= set(model_names())


@pytest.mark.parametrize("name,level", CASES)
def test_shape_range_and_padding(name, level):
    spec = make_spec(level)
    torch.manual_seed(0)
    model = create_model(name, spec)
    for mode in ("eval", "train"):
        outputs = []
        for pad_to in (max(LENGTHS), 40):
            torch.manual_seed(1)
            model.eval() if mode == "eval" else training_without_dropout(model)
            out = model(make_batch(spec, pad_to))
            pred = out["pred"]
            expected = (len(LENGTHS), pad_to, spec.n_targets) if level == "frame" else (len(LENGTHS), spec.n_targets)
            assert pred.shape == expected
            assert torch.isfinite(pred).all() and pred.min() >= spec.low and pred.max() <= spec.high
            outputs.append(real_part(pred, level))
        for a, b in zip(*outputs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{name} ({mode}): padding changed real outputs")


@pytest.mark.parametrize("name,level", CASES)
def test_missing_modality(name, level):
    spec = make_spec(level)
    torch.manual_seed(0)
    model = create_model(name, spec).eval()
    present = np.ones((3, 3), bool)
    present[0, 0] = present[1, 1] = present[2, 2] = False
    out = model(make_batch(spec, 12, present=present))
    assert torch.isfinite(out["pred"]).all()
    if "weights" in out:
        weights = out["weights"] if level == "video" else out["weights"][:, 0]
        assert torch.all(weights[~torch.from_numpy(present)] == 0), "a missing modality got fusion weight"
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    # A missing modality's (zeroed) input must not matter: fill it with noise, same output.
    noisy = make_batch(spec, 12, present=present)
    noisy["visual"][0] = torch.randn_like(noisy["visual"][0])
    torch.testing.assert_close(model(noisy)["pred"][0], out["pred"][0])


@pytest.mark.parametrize("name,level", CASES)
def test_gradients_reach_every_parameter(name, level):
    spec = make_spec(level)
    torch.manual_seed(0)
    model = create_model(name, spec)
    training_without_dropout(model)
    batch = make_batch(spec, 12)
    loss = model.phase_loss(model.phases(type("C", (), {"epochs": 1, "lr": 1e-3})())[-1].name, batch,
                            lambda p, t, m=None: ((p - t) ** 2)[m].mean() if m is not None else ((p - t) ** 2).mean())
    loss.backward()
    # Stage-1 parts (text encoder, projection heads, temperatures) train in their own phase.
    stage1 = ("text_encoder", "heads", "text_heads", "temperatures")
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith(stage1) and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"{name}: no gradient reaches {missing}"


@pytest.mark.parametrize("name,level", CASES)
def test_checkpoint_round_trip(name, level, tmp_path):
    spec = make_spec(level)
    torch.manual_seed(0)
    model = create_model(name, spec)
    training_without_dropout(model)
    model(make_batch(spec, 12))  # move running statistics away from their initial values
    model.eval()
    normalizer = Normalizer({m: (np.full(d, 0.5, np.float32), np.full(d, 2.0, np.float32)) for m, d in DIMS.items()})
    torch.save(checkpoint_payload(model, normalizer, {"note": "test"}), tmp_path / "best.pt")
    rebuilt, norm, payload = load_checkpoint(tmp_path / "best.pt")
    batch = make_batch(spec, 12)
    torch.testing.assert_close(rebuilt(batch)["pred"], model(batch)["pred"])
    assert payload["settings"] == {"note": "test"}
    np.testing.assert_array_equal(norm.stats["audio"][1], normalizer.stats["audio"][1])
    # A checkpoint of an older version of the model is refused by name, never half-loaded.
    old = checkpoint_payload(model, normalizer, {})
    old["model_config"] = dict(list(old["model_config"].items())[1:])
    torch.save(old, tmp_path / "old.pt")
    if old["model_config"] != checkpoint_payload(model, normalizer, {})["model_config"]:
        with pytest.raises(DataError, match="older version"):
            load_checkpoint(tmp_path / "old.pt")
    renamed = checkpoint_payload(model, normalizer, {})
    renamed["model"] = {f"old.{k}": v for k, v in renamed["model"].items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(DataError, match="does not fit"):
        load_checkpoint(tmp_path / "renamed.pt")


@pytest.mark.parametrize("layer", ["tcn", "lstm", "pool", "norm"])
def test_layers_ignore_padding(layer):
    torch.manual_seed(0)
    module = {"tcn": layers.TCN(8, 3, 3, 0.0), "lstm": layers.GatedBiLSTM(8, 1, 0.0),
              "pool": layers.AttentionPool(8), "norm": layers.MaskedBatchNorm(8)}[layer]
    module.train()  # batch statistics: where nn.BatchNorm1d counted the padding
    rng = np.random.default_rng(0)
    real = [torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)) for n in LENGTHS]
    outputs = []
    for pad_to in (max(LENGTHS), 50):
        x = torch.zeros(len(real), pad_to, 8)
        mask = torch.zeros(len(real), pad_to, dtype=torch.bool)
        for i, r in enumerate(real):
            x[i, :len(r)], mask[i, :len(r)] = r, True
        x[~mask] = 3.0  # whatever sits in the padding must not matter
        out = module(x, mask)
        outputs.append([out[i] if layer == "pool" else out[i, :len(r)] for i, r in enumerate(real)])
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_registry_finds_a_new_model_file(tmp_path, monkeypatch):
    """A model module dropped into solution/models/ is found without editing any list."""
    import solution.models as registry

    source = '''
from dataclasses import dataclass
import torch.nn as nn
from solution.models import HarnessModel, register_model

@register_model("zz_probe")
class Probe(HarnessModel):
    @dataclass
    class Config:
        width: int = 2
    def __init__(self, spec, config):
        super().__init__()
        self.spec, self.config = spec, config
        self.head = nn.Linear(1, spec.n_targets)
'''
    folder = tmp_path / "extra_models"
    folder.mkdir()
    (folder / "zz_probe.py").write_text(source)
    monkeypatch.setattr(registry, "__path__", list(registry.__path__) + [str(folder)])
    try:
        assert "zz_probe" in model_names()
        assert model_class("zz_probe").Config().width == 2
    finally:
        registry.MODELS.pop("zz_probe", None)
        sys.modules.pop("solution.models.zz_probe", None)
