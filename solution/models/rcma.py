"""RCMA: recursive cross-modal attention (Praveen et al.; public code praveena2j/RJCMA), our version.

Per modality a TCN (face, voice, and text when it has word times) brings each stream to its
width. Then, R times with separate weights, each modality m attends to the joint
representation of the others (`joint = "others"`, the paper) or of all three (`"all"`, the
public code):

    J = W_j [X_n ; X_o]                         (T, d)  the joint, frame by frame
    C = tanh(W_k X_m J^T / sqrt(d))             (T, T)  correlation between m's frames and the joint's
    H = ReLU(tanh(C^T (W_v X_m) / n))           (T, d)  m's frames gathered by that correlation
    X_m <- X_m + Dropout(ReLU(W_o H))

Length-agnostic: no layer is sized by the number of frames (the public code projects the keys
along time with a 300 x 300 Linear, which fixes windows at 300 frames); the gathered sum over
frames is divided by n, the number of real frames of the sample, and padding is masked out of
C, so tanh sees the same scale for a 3-second clip and a 10-minute window.

Head: the modalities concatenated; video-level tracks pool over time (attention + max),
frame-level tracks keep every frame. Text without word times (a plain transcript) is one
vector per video: it cannot take part in attention along time, so the attention is
audio-visual and the transcript's vector joins at the head (logged once). `attention = false`
skips the recursions (TCNs and head only); `recursions = 1` is the other ablation.

All time-sequence modalities must share one grid; rcma trains with `grid = "shared"` unless
told otherwise. On per-modality grids the model resamples to the visual grid by interpolation
(an approximation, logged).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from solution.layers import TCN, AttentionPool, Dropout, InputProjection, masked_mean, mlp
from solution.models import HarnessModel, InputSpec, register_model

log = logging.getLogger(__name__)
JOINTS = ("others", "all")
_said = set()


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.info(message)


def parse_channels(text: str, modalities) -> dict:
    values = [int(v) for v in str(text).split(",") if v.strip()]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"rcma: channels must be one width or three (visual,audio,text), got {text!r}")
    return dict(zip(("visual", "audio", "text"), values))


class CrossModalAttention(nn.Module):
    """One recursion's attention for one modality (see the module docstring)."""

    def __init__(self, dim: int, joint_dim: int, att_dim: int, dropout: float):
        super().__init__()
        self.joint = nn.Linear(joint_dim, att_dim)
        self.key = nn.Linear(dim, att_dim, bias=False)
        self.value = nn.Linear(dim, att_dim, bias=False)
        self.out = nn.Linear(att_dim, dim)
        self.drop = Dropout(dropout)
        self.scale = 1 / math.sqrt(att_dim)

    def forward(self, x: torch.Tensor, others: torch.Tensor, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) of this modality, real where `rows`; others (B, T, J), real where `steps`.
        Every real step is updated, also steps where this modality has no frame (a frame without
        a face): it gathers the modality's real frames that correlate with the joint there."""
        rows_f, steps_f = rows.to(x.dtype), steps.to(x.dtype)
        joint = self.joint(others)
        corr = torch.tanh(self.key(x) @ joint.transpose(1, 2) * self.scale)          # (B, T_rows, T_steps)
        corr = corr * rows_f.unsqueeze(2) * steps_f.unsqueeze(1)
        real = rows_f.sum(1).clamp_min(1).view(-1, 1, 1)
        gathered = torch.tanh(corr.transpose(1, 2) @ self.value(x) / real)            # (B, T_steps, att)
        has_rows = rows.any(1).view(-1, 1, 1).to(x.dtype)                              # a missing modality stays 0
        return x + self.drop(F.relu(self.out(F.relu(gathered)))) * steps_f.unsqueeze(-1) * has_rows


@register_model("rcma")
class RCMA(HarnessModel):
    levels = ("video", "frame")
    train_defaults = {"grid": "shared"}
    switches = {"--recursions": ("recursions={}", "rcma: number of recursions (2 in the paper; 1 is the ablation)"),
                "--no-attention": ("attention=false", "rcma: no cross-modal attention (TCNs and head only)"),
                "--joint": ("joint={}", "rcma: others (joint of the other two modalities, the paper) or all (the public code)")}

    @dataclass
    class Config:
        channels: str = "128,64,128"   # TCN width of visual,audio,text (one number: all three)
        tcn_levels: int = 4
        tcn_kernel: int = 5
        tcn_bottleneck: int = 4        # TCN blocks convolve at width/bottleneck between 1x1 convs (1: full width)
        att_dim: int = 64              # width of keys, joint and gathered values
        recursions: int = 2
        attention: bool = True
        joint: str = "others"          # "others" (paper) or "all" (public code)
        dropout: float = 0.1
        input_dropout: float = 0.1
        modality_dropout: float = 0.1
        head_dim: int = 128

    def __init__(self, spec: InputSpec, config: Config):
        super().__init__()
        if config.joint not in JOINTS:
            raise ValueError(f"rcma: joint must be one of {JOINTS}, got {config.joint!r}")
        if config.recursions < 1 and config.attention:
            raise ValueError("rcma: recursions must be at least 1 (or attention = false)")
        self.spec, self.config = spec, config
        widths = parse_channels(config.channels, spec.modalities)
        timed_text = bool(spec.extra.get("text_timed"))
        self.timed = [m for m in spec.modalities if m != "text" or timed_text]
        self.static = [m for m in spec.modalities if m not in self.timed]
        if "text" in self.static:
            say_once("rcma: the transcripts have no word times, so the cross-modal attention is audio-visual "
                     "and each video's transcript vector joins at the head")
        self.widths = {m: widths[m] for m in self.timed}
        self.inputs = nn.ModuleDict({m: InputProjection(spec.dims[m], self.widths[m], config.input_dropout)
                                     for m in self.timed})
        self.tcns = nn.ModuleDict({m: TCN(self.widths[m], config.tcn_levels, config.tcn_kernel, config.dropout,
                                          bottleneck=config.tcn_bottleneck) for m in self.timed})
        self.attend = nn.ModuleList()
        if config.attention and len(self.timed) > 1:
            for _ in range(config.recursions):
                layer = nn.ModuleDict()
                for m in self.timed:
                    joint_dim = sum(self.widths[n] for n in self.timed if n != m or config.joint == "all")
                    layer[m] = CrossModalAttention(self.widths[m], joint_dim, config.att_dim, config.dropout)
                self.attend.append(layer)
        width = sum(self.widths.values())
        frame = spec.level == "frame"
        self.pool = None if frame else AttentionPool(width)
        pooled = width if frame else self.pool.out_dim
        self.static_inputs = nn.ModuleDict({m: InputProjection(spec.dims[m], config.head_dim, config.input_dropout)
                                            for m in self.static})
        head_in = pooled + config.head_dim * len(self.static) + len(spec.modalities)
        self.head = mlp(head_in, config.head_dim, spec.n_targets, config.dropout)

    def _on_one_grid(self, batch: dict) -> tuple[dict, dict, torch.Tensor]:
        """Each timed modality's (B, T, C) features and masks on one grid of T steps."""
        lengths = {batch[m].shape[1] for m in self.timed}
        steps = batch["frame_mask"].shape[1] if self.spec.level == "frame" else (
            batch["visual"].shape[1] if "visual" in self.timed else max(lengths))
        xs, masks = {}, {}
        for m in self.timed:
            x, mask = batch[m], batch[f"{m}_mask"]
            if x.shape[1] != steps:
                say_once(f"rcma: modalities are on different time grids ({m}: {x.shape[1]} steps, grid: {steps}); "
                         "resampling by interpolation; set grid = \"shared\" to align them by time")
                x = F.interpolate(x.transpose(1, 2), size=steps, mode="linear", align_corners=False).transpose(1, 2)
                mask = F.interpolate(mask[:, None].float(), size=steps, mode="nearest")[:, 0] > 0.5
            xs[m], masks[m] = x, mask
        if self.spec.level == "frame":
            steps_mask = batch["frame_mask"]
        else:
            steps_mask = torch.stack(list(masks.values())).any(0)
        return xs, masks, steps_mask

    def forward(self, batch: dict) -> dict:
        present = batch["present"].clone()
        if self.training and self.config.modality_dropout > 0:
            drop = torch.rand(present.shape, device=present.device) < self.config.modality_dropout
            kept = present & ~drop
            present = torch.where(kept.any(1, keepdim=True), kept, present)
        index = {m: i for i, m in enumerate(self.spec.modalities)}
        xs, masks, steps_mask = self._on_one_grid(batch)
        h, rows = {}, {}
        for m in self.timed:
            rows[m] = masks[m] & present[:, index[m], None]
            h[m] = self.tcns[m](self.inputs[m](xs[m]), rows[m])
        for layer in self.attend:
            h = {m: layer[m](h[m], torch.cat([h[n] for n in self.timed if n != m or self.config.joint == "all"], -1),
                             rows[m], steps_mask) for m in self.timed}
        seq = torch.cat([h[m] for m in self.timed], dim=-1) * steps_mask.unsqueeze(-1)
        frame = self.spec.level == "frame"
        parts = [seq if frame else self.pool(seq, steps_mask)]
        for m in self.static:
            vector = self.static_inputs[m](masked_mean(batch[m], batch[f"{m}_mask"])) * present[:, index[m], None]
            parts.append(vector.unsqueeze(1).expand(-1, seq.shape[1], -1) if frame else vector)
        flags = present.float()
        parts.append(flags.unsqueeze(1).expand(-1, seq.shape[1], -1) if frame else flags)
        return {"pred": self.to_range(self.head(torch.cat(parts, dim=-1)))}
