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

All time-sequence modalities must share one grid: rcma trains with `grid = "shared"` unless
told otherwise, and refuses batches whose modalities have different lengths.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from solution.layers import TCN, AttentionPool, Dropout, InputProjection, masked_mean, mlp, over_frames, strided_mean
from solution.models import HarnessModel, InputSpec, register_model

log = logging.getLogger(__name__)
JOINTS = ("others", "all")
_said = set()


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.info(message)


def parse_channels(text: str) -> dict:
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

    def forward(self, x: torch.Tensor, others: torch.Tensor, rows: torch.Tensor, steps: torch.Tensor,
                stride: int = 1) -> torch.Tensor:
        """x (B, T, C) of this modality, real where `rows`; others (B, T, J), real where `steps`.
        Every real step is updated, also steps where this modality has no frame (a frame without
        a face): it gathers the modality's real frames that correlate with the joint there.
        `stride` > 1 attends between means of `stride` consecutive steps (the (T, T) correlation
        is most of the cost) and adds each mean's update to its steps."""
        steps_full = steps.to(x.dtype)
        if stride > 1:
            (x_att, rows), (others, steps) = strided_mean(x, rows, stride), strided_mean(others, steps, stride)
        else:
            x_att = x
        rows_f, steps_f = rows.to(x.dtype), steps.to(x.dtype)
        joint = self.joint(others)
        corr = torch.tanh(self.key(x_att) @ joint.transpose(1, 2) * self.scale)      # (B, T_rows, T_steps)
        corr = corr * rows_f.unsqueeze(2) * steps_f.unsqueeze(1)
        real = rows_f.sum(1).clamp_min(1).view(-1, 1, 1)
        gathered = torch.tanh(corr.transpose(1, 2) @ self.value(x_att) / real)        # (B, T_steps, att)
        update = self.drop(F.relu(self.out(F.relu(gathered))))
        if stride > 1:
            update = update.repeat_interleave(stride, dim=1)[:, :x.shape[1]]
        has_rows = rows.any(1).view(-1, 1, 1).to(x.dtype)                              # a missing modality stays 0
        return x + update * steps_full.unsqueeze(-1) * has_rows


@register_model("rcma")
class RCMA(HarnessModel):
    levels = ("video", "frame")
    train_defaults = {"grid": "shared", "refit": True}  # refit: on the --quick tune releases +0.011 held-back test
    switches = {"--recursions": ("recursions={}", "rcma: number of recursions (2 in the paper; 1 is the ablation)"),
                "--no-attention": ("attention=false", "rcma: no cross-modal attention (TCNs and head only)"),
                "--joint": ("joint={}", "rcma: others (joint of the other two modalities, the paper) or all (the public code)")}

    @dataclass
    class Config:
        channels: str = "128,64,128"   # TCN width of visual,audio,text (one number: all three)
        tcn_levels: int = 4
        tcn_kernel: int = 5
        tcn_bottleneck: int = 1        # TCN blocks convolve at width/bottleneck between 1x1 convs (1: full width; 4 cost 0.01 on the tune panel)
        att_dim: int = 64              # width of keys, joint and gathered values
        att_stride: int = 1            # attention between means of this many steps (cost: (T / stride)^2)
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
        widths = parse_channels(config.channels)
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
        """Each timed modality's (B, T, C) features and masks, and the steps that are real.
        Attention pairs step t of one modality with step t of the others, so they must share
        one time grid; resampling padded batches would stretch a video by its batch-mates."""
        lengths = {m: batch[m].shape[1] for m in self.timed}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"rcma: the modalities are on different time grids ({lengths} steps); "
                             "train it with grid = \"shared\" (its default)")
        xs = {m: batch[m] for m in self.timed}
        masks = {m: batch[f"{m}_mask"] for m in self.timed}
        if self.spec.level == "frame":
            return xs, masks, batch["frame_mask"]
        return xs, masks, torch.stack(list(masks.values())).any(0)

    def forward(self, batch: dict) -> dict:
        present = self.drop_modalities(batch["present"], self.config.modality_dropout)
        index = {m: i for i, m in enumerate(self.spec.modalities)}
        xs, masks, steps_mask = self._on_one_grid(batch)
        h, rows = {}, {}
        for m in self.timed:
            rows[m] = masks[m] & present[:, index[m], None]
            h[m] = self.tcns[m](self.inputs[m](xs[m]), rows[m])
        for layer in self.attend:
            h = {m: layer[m](h[m], torch.cat([h[n] for n in self.timed if n != m or self.config.joint == "all"], -1),
                             rows[m], steps_mask, self.config.att_stride) for m in self.timed}
        seq = torch.cat([h[m] for m in self.timed], dim=-1) * steps_mask.unsqueeze(-1)
        frame = self.spec.level == "frame"
        parts = [seq if frame else self.pool(seq, steps_mask)]
        for m in self.static:
            vector = self.static_inputs[m](masked_mean(batch[m], batch[f"{m}_mask"])) * present[:, index[m], None]
            parts.append(over_frames(vector, seq.shape[1] if frame else None))
        parts.append(over_frames(present.float(), seq.shape[1] if frame else None))
        return {"pred": self.to_range(self.head(torch.cat(parts, dim=-1)))}
