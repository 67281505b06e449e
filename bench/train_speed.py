"""Training throughput of every registered model at a fixed shape (forward, backward, AdamW step).

    python bench/train_speed.py                              # every model, EMI shape, 2 threads
    python bench/train_speed.py --model dual_stage,rcma --threads 1
    python bench/train_speed.py --rjcma                      # RCMA at the public RJCMA shape, frames/s
    python bench/train_speed.py --model rcma --level frame --batch 12 --visual 300x512 --audio 300x128 --text 300x768

The default shape is the organizers' EMI features: batch 32, visual 160 x 768 (ViT at 5 Hz over
32 s), audio 400 x 768 (wav2vec2 resampled to 12.5 Hz), text 1 x 384 (one MiniLM vector).
Every video of the batch is full length (no padding), inputs are random: the speed of the
arithmetic, not of the data loading (bench/fold_memory.py measures a whole fold). A model that
trains on one shared time grid (rcma) gets every timed stream on that grid: by default at the
visual length (160 steps: the 10 Hz shared grid over a 16 s clip, the audio resampled to it as
the data layer does); --shared-steps 400 puts it at the audio's length instead.

--rjcma reproduces the public RCMA implementation's shape (praveena2j/RJCMA, first commit):
frame-level, batch 12, windows of 300 frames, inputs 512/128/768 (face/voice/text), TCN
channels 512/128/512, 4 levels, kernel 5, two recursions, one output. That code's fusion
network trains at 1,057 frames/s at this shape with Adam on 2 CPU threads with torch 2.14.1.

Output: one JSON line per model: videos/s (frames/s for frame-level), ms per step, the shape,
threads, torch version and CPU. Other processes on the same cores lower the numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from solution.data import cue_slices  # noqa: E402
from solution.metrics import make_loss  # noqa: E402
from solution.models import InputSpec, create_model, model_class, model_names  # noqa: E402
from solution.tracks import EMI, VA  # noqa: E402

RJCMA_CONFIG = {"rcma": {"channels": "512,128,512", "tcn_levels": 4, "tcn_kernel": 5, "recursions": 2}}


def parse_shape(text: str) -> tuple[int, int]:
    steps, dim = text.lower().split("x")
    return int(steps), int(dim)


def make_batch(spec: InputSpec, batch: int, shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"keys": [f"{i:05d}" for i in range(batch)]}
    for m in spec.modalities:
        steps, dim = shapes[m]
        out[m] = torch.from_numpy(rng.normal(size=(batch, steps, dim)).astype(np.float32))
        out[f"{m}_mask"] = torch.ones(batch, steps, dtype=torch.bool)
        out[f"{m}_quality"] = torch.ones(batch, steps)
    out["present"] = torch.ones(batch, len(spec.modalities), dtype=torch.bool)
    width = max(s.stop for s in spec.cue_slices.values())
    out["cues"] = torch.from_numpy(rng.uniform(size=(batch, width)).astype(np.float32))
    if spec.level == "frame":
        frames = shapes["visual"][0]
        out["frame_mask"] = torch.ones(batch, frames, dtype=torch.bool)
        out["target_mask"] = torch.ones(batch, frames, dtype=torch.bool)
        out["target"] = torch.from_numpy(rng.uniform(spec.low, spec.high, (batch, frames, spec.n_targets)).astype(np.float32))
    else:
        out["target"] = torch.from_numpy(rng.uniform(spec.low, spec.high, (batch, spec.n_targets)).astype(np.float32))
    return out


def measure(name: str, spec: InputSpec, config: dict, batch: dict, steps: int, warmup: int, phase: str | None) -> dict:
    torch.manual_seed(0)
    model = create_model(name, spec, config)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-3)
    loss_fn = make_loss("ccc")
    phase = phase or [p.name for p in model.phases(type("T", (), {"epochs": 1, "lr": 1e-3})())][-1]
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        loss = model.phase_loss(phase, batch, loss_fn)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    per_step = float(np.median(times))
    n = len(batch["keys"])
    out = {"model": name, "level": spec.level, "ms_per_step": round(1000 * per_step, 1), "batch": n,
           "parameters": sum(p.numel() for p in model.parameters())}
    if spec.level == "frame":
        out["frames_per_s"] = round(n * batch["frame_mask"].shape[1] / per_step, 1)
    else:
        out["videos_per_s"] = round(n / per_step, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/train_speed.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", default="", help="comma list of registered models (default: every one)")
    parser.add_argument("--level", choices=("video", "frame"), default="video", help="video-level (EMI) or frame-level (VA) shape")
    parser.add_argument("--batch", type=int, default=32, help="videos (or windows) per step")
    parser.add_argument("--visual", type=parse_shape, default=(160, 768), help="STEPSxDIM of the face stream")
    parser.add_argument("--audio", type=parse_shape, default=(400, 768), help="STEPSxDIM of the voice stream")
    parser.add_argument("--text", type=parse_shape, default=(1, 384), help="STEPSxDIM of the text stream")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="a model setting, e.g. rcma.recursions=1 (repeatable; values as Python literals)")
    parser.add_argument("--shared-steps", type=int, default=0,
                        help="steps of the shared time grid for models that train on one (default: the visual steps)")
    parser.add_argument("--rjcma", action="store_true", help="RCMA at the public RJCMA shape (overrides the shape flags)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs: dict[str, dict] = {}
    if args.rjcma:
        names, level, batch_size = ["rcma"], "frame", 12
        shapes = {"visual": (300, 512), "audio": (300, 128), "text": (300, 768)}
        configs = {k: dict(v) for k, v in RJCMA_CONFIG.items()}
        n_targets = 1
    else:
        names = [m for m in args.model.split(",") if m] or model_names()
        level, batch_size = args.level, args.batch
        shapes = {"visual": args.visual, "audio": args.audio, "text": args.text}
        n_targets = None
    for item in args.set:
        key, value = item.split("=", 1)
        model, field = key.split(".", 1)
        try:
            import ast
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        configs.setdefault(model, {})[field] = value
    track = EMI if level == "video" else VA
    modalities = ("visual", "audio", "text")
    for name in names:
        if level not in model_class(name).levels:
            continue
        model_shapes = dict(shapes)
        if model_class(name).train_defaults.get("grid") == "shared" and level == "video":
            # A model that trains on one time grid gets every timed stream on it: by default at
            # the face stream's length (the 10 Hz shared grid over the same clip), or --shared-steps.
            steps_on_grid = args.shared_steps or shapes["visual"][0]
            model_shapes = {m: (steps_on_grid if m != "text" or steps > 1 else steps, dim)
                            for m, (steps, dim) in shapes.items()}
        spec = InputSpec(modalities, {m: model_shapes[m][1] for m in modalities}, cue_slices(modalities),
                         n_targets or track.dim, track.low, track.high, level,
                         extra={"text_timed": model_shapes["text"][0] > 1})
        batch = make_batch(spec, batch_size, model_shapes)
        result = measure(name, spec, configs.get(name, {}), batch, args.steps, args.warmup, None)
        result.update(shape={m: list(s) for m, s in model_shapes.items()}, threads=args.threads, torch=torch.__version__,
                      cpu=platform.processor() or platform.machine(), config=configs.get(name, {}))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
