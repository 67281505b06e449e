"""Foal-Net: fusion after alignment (Li et al., code ASolitaryMan/Foal-Net), for regression.

Forward: each of face and voice is projected to the model width and given local context by one
TCN level; then

1. Alignment (AVEL). Each modality is mean-pooled over its real frames and projected
   (Linear without bias -> GELU -> Linear -> dropout, residual, LayerNorm), then L2-normalised.
   A symmetric contrastive loss over the batch (CLIP's form: similarities times exp of a
   learnable, clamped temperature) pulls together the face and voice of samples whose labels
   agree. The labels are continuous, so "the same label" is soft: the targets of row i are
   softmax_j(-||y_i - y_j||^2 / label_temperature) over the batch; identical labels share the
   positive mass equally, distant ones get none, and with all labels far apart it is CLIP's
   identity.
2. Fusion, after alignment, by cross-attention both ways: `layers` layers in which the voice
   queries the face and `layers` in which the face queries the voice (4 heads, residual,
   post-LayerNorm, padding masked; a sample without the other modality gets no attention term).
   Video-level tracks pool both streams over their real frames and concatenate them: by
   attention + max (`pool = "attention"`, default: intensity shows in short bursts that a mean
   dilutes; on tune release emi-features-201, 0.449 held-back test against 0.384 for the mean)
   or by the paper's mean (`pool = "mean"`).
   Frame-level tracks concatenate the two streams frame by frame.
   The head also reads each stream as it was before fusion (`head_unfused`, default; the paper
   feeds it the fused streams only): the cross-attention's output replaces its input, and on
   wide, noisy features it mixes noise into both streams. On the six tune releases of the
   quality panel this scored 0.548 mean held-back test against 0.525 (media-only +0.041,
   features-only +0.034, VA -0.007; out of fold +0.035), ahead of no fusion at all (0.536).
3. Label matching (MEM). A binary head on each fused stream tells whether the face and voice
   come from the same sample. Negatives are hard: for each sample i, a partner j whose label
   differs (RMS label distance above `match_margin` of the target range) is drawn with
   probability proportional to exp(scale x similarity of i's voice and j's face), so the
   negatives are the pairs the alignment finds hardest; voice i is fused with face j.

Loss: task + align_weight x AVEL + match_weight x MEM (0.1 in the paper), trained jointly.
align_weight is 0.1: at 1.0 the alignment term outweighs the task on wide, noisy features, and
on the four tune releases of the quality panel (bench/reference/quality-tune.jsonl) 0.1 scored
0.511 mean held-back test against 0.461 (features-only +0.047, VA +0.114, media-only -0.007).
For a frame-level track (VA) a window's label is the mean valence/arousal over its annotated
frames. Text: the fusion is audio-visual (as the paper); a transcript's vector, where there is
one, joins at the head. `align = false` and `match = false` are the ablations.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from solution.distributed import global_count
from solution.layers import (TCN, AttentionPool, Dropout, InputProjection, LearnableTemperature, label_clip_loss,
                             masked_mean, mlp, over_frames, strided_mean)
from solution.models import HarnessModel, InputSpec, register_model

log = logging.getLogger(__name__)
PAIR = ("audio", "visual")


class AlignmentHead(nn.Module):
    """Foal-Net's AVEL projection: Linear (no bias) -> GELU -> Linear -> dropout, residual,
    LayerNorm, L2-normalised."""

    def __init__(self, dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.down = nn.Linear(dim, out_dim, bias=False)
        self.net = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim), Dropout(dropout))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x):
        h = self.down(x)
        return F.normalize(self.norm(h + self.net(h)), dim=-1)


class CrossAttention(nn.Module):
    """Queries one stream, keys and values the other. A sample whose other stream has no real
    frame gets no attention term (attention over nothing is NaN).

    Ungated (the paper's form): residual and post-LayerNorm. Gated (`fusion_gate`, Flamingo's
    form): pre-LayerNorm, and the attention term is scaled by tanh of a learnt scalar that starts
    at 0, so the layer starts as the identity and takes from the other stream only as far as
    training finds it useful: on wide, noisy features the ungated layers mix noise into both
    streams (see the Foal-Net note in bench/README.md)."""

    def __init__(self, dim: int, heads: int, dropout: float, gate: bool = False):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)  # dropout: self.drop, on the output
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.zeros(())) if gate else None
        self.key_norm = nn.LayerNorm(dim) if gate else None

    def forward(self, query, query_mask, keys, key_mask):
        has_keys = key_mask.any(1)
        safe = key_mask.clone()
        safe[~has_keys, 0] = True
        gated = self.gate is not None
        q, k = (self.norm(query), self.key_norm(keys)) if gated else (query, keys)
        out, _ = self.attn(q, k, k, key_padding_mask=~safe, need_weights=False)
        out = self.drop(out * has_keys.view(-1, 1, 1).to(out.dtype))
        fused = query + torch.tanh(self.gate) * out if gated else self.norm(query + out)
        return fused * query_mask.unsqueeze(-1).to(out.dtype)


def hard_negatives(similarity: torch.Tensor, labels: torch.Tensor, margin: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row i, a column j whose label differs from i's (RMS distance > margin), drawn in
    proportion to exp(similarity[i, j]). Returns (rows that have such a partner, their partners)."""
    distance = torch.cdist(labels, labels) / labels.shape[1] ** 0.5
    allowed = distance > margin
    rows = allowed.any(1)
    if not rows.any():
        return rows, torch.zeros(0, dtype=torch.long, device=labels.device)
    logits = similarity.detach().clone().masked_fill(~allowed, float("-inf"))[rows]
    partners = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
    return rows, partners


def window_labels(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample its label and whether it has one: the video's targets, or for frame-level
    tracks the mean over the window's annotated frames."""
    target = batch["target"]
    if target.dim() == 2:
        return target, torch.ones(target.shape[0], dtype=torch.bool, device=target.device)
    mask = batch["target_mask"]
    return masked_mean(target, mask), mask.any(1)


@register_model("foalnet")
class FoalNet(HarnessModel):
    levels = ("video", "frame")
    switches = {"--no-align": ("align=false", "foalnet: no contrastive alignment (the ablation)"),
                "--no-match": ("match=false", "foalnet: no label-matching task (the ablation)")}

    @dataclass
    class Config:
        dim: int = 128
        heads: int = 4
        layers: int = 2                # cross-attention layers per direction
        fusion_gate: bool = False      # gated, pre-LayerNorm cross-attention that starts as the identity
        encoder_levels: int = 1        # TCN levels of local context before alignment
        proj_dim: int = 128
        dropout: float = 0.1
        input_dropout: float = 0.1
        modality_dropout: float = 0.1
        align: bool = True
        align_weight: float = 0.1
        label_temperature: float = 0.05  # softness of the contrastive targets, in squared label distance
        match: bool = True
        match_weight: float = 0.1
        match_margin: float = 0.1      # labels "differ" above this RMS distance, as a share of the target range
        visual_stride: int = 4         # cross-attention steps are means of this many face frames (speed)
        audio_stride: int = 8          # ... and voice frames (at the default 5 and 10 Hz grids: one step per 0.8 s)
        pool: str = "attention"        # video-level pooling of the fused streams: "attention" (+ max) or "mean" (the paper)
        head_unfused: bool = True      # the head also reads each stream before fusion (False: the paper's)

    def __init__(self, spec: InputSpec, config: Config):
        super().__init__()
        self.spec, self.config = spec, config
        d = config.dim
        self.modalities = spec.modalities
        self.streams = [m for m in PAIR if m in spec.modalities]
        self.static = [m for m in spec.modalities if m not in self.streams]
        self.inputs = nn.ModuleDict({m: InputProjection(spec.dims[m], d, config.input_dropout) for m in spec.modalities})
        self.encoders = nn.ModuleDict({m: TCN(d, config.encoder_levels, 3, config.dropout, bottleneck=4) for m in self.streams})
        if config.pool not in ("mean", "attention"):
            raise ValueError(f"foalnet: pool must be mean or attention, got {config.pool!r}")
        self.paired = len(self.streams) == 2
        self.head_unfused = config.head_unfused and self.paired
        pooled = self.streams + [f"{m}_unfused" for m in self.streams if self.head_unfused]
        if config.pool != "attention" or spec.level != "video":
            pooled = []  # frame-level tracks keep every frame; "mean" has nothing to learn
        self.pools = nn.ModuleDict({key: AttentionPool(d) for key in pooled})
        self.pool_out = nn.ModuleDict({key: nn.Linear(2 * d, d) for key in pooled})
        if self.paired:
            self.align_heads = nn.ModuleDict({m: AlignmentHead(d, config.proj_dim, config.dropout) for m in self.streams})
            self.temperature = LearnableTemperature()
            # fuse["audio"]: the voice queries the face; fuse["visual"]: the face queries the voice.
            self.fuse = nn.ModuleDict({m: nn.ModuleList(CrossAttention(d, config.heads, config.dropout, config.fusion_gate)
                                                        for _ in range(config.layers)) for m in self.streams})
            self.match_heads = nn.ModuleDict({m: nn.Linear(d, 1) for m in self.streams})
        if "text" in self.static:
            log.debug("foalnet: audio-visual fusion; the transcript vector joins at the head")
        self.static_summary = nn.ModuleDict({m: mlp(d, d, d, config.dropout) for m in self.static})
        head_in = d * (len(self.streams) * (2 if self.head_unfused else 1) + len(self.static)) + len(spec.modalities)
        self.head = mlp(head_in, d, spec.n_targets, config.dropout)

    def encode(self, batch: dict, present: torch.Tensor) -> tuple[dict, dict]:
        h, masks = {}, {}
        for m in self.streams:
            mask = batch[f"{m}_mask"] & present[:, self.modalities.index(m), None]
            h[m], masks[m] = self.encoders[m](self.inputs[m](batch[m]), mask), mask
        return h, masks

    def fused(self, h: dict, masks: dict) -> tuple[dict, dict]:
        """Each stream after cross-attention to the other (streams as given: a negative pair
        passes the voice of one sample and the face of another), and the masks of its steps.
        Attention runs on the means of `<modality>_stride` consecutive frames: its cost grows with the
        product of the two lengths. Video-level tracks keep those steps; frame-level tracks add
        what attention changed back onto every frame."""
        if not self.paired:
            return h, masks
        strides = {"visual": self.config.visual_stride, "audio": self.config.audio_stride}
        tokens = {m: strided_mean(h[m], masks[m], strides[m]) if strides[m] > 1 else (h[m], masks[m])
                  for m in self.streams}
        out, out_masks = {}, {}
        for m in self.streams:
            other = self.streams[1 - self.streams.index(m)]
            x, mask = tokens[m]
            for layer in self.fuse[m]:
                x = layer(x, mask, *tokens[other])
            if self.spec.level == "frame" and strides[m] > 1:
                change = (x - tokens[m][0]).repeat_interleave(strides[m], dim=1)[:, :h[m].shape[1]]
                out[m], out_masks[m] = (h[m] + change) * masks[m].unsqueeze(-1).to(x.dtype), masks[m]
            else:
                out[m], out_masks[m] = x, mask
        return out, out_masks

    def summary(self, fused: dict, masks: dict, frames: int | None, suffix: str = "") -> dict:
        """Per stream: (B, d) for video-level tracks, (B, frames, d) for frame-level ones."""
        if frames:
            return fused
        if len(self.pools):
            return {m: self.pool_out[m + suffix](self.pools[m + suffix](x, masks[m])) for m, x in fused.items()}
        return {m: masked_mean(x, masks[m]) for m, x in fused.items()}

    def forward(self, batch: dict) -> dict:
        present = self.drop_modalities(batch["present"], self.config.modality_dropout)
        frames = batch["frame_mask"].shape[1] if self.spec.level == "frame" else None
        h, masks = self.encode(batch, present)
        fused, fused_masks = self.fused(h, masks)
        summaries = self.summary(fused, fused_masks, frames)
        parts = [summaries[m] for m in self.streams]
        if self.head_unfused:
            # The cross-attention's output replaces its input: on wide, noisy features it mixes noise
            # into both streams (bench/README.md, Foal-Net's fusion), so the head also reads them unmixed.
            unfused = self.summary(h, masks, frames, "_unfused")
            parts += [unfused[m] for m in self.streams]
        for m in self.static:
            alive = present[:, self.modalities.index(m), None].to(batch[m].dtype)
            vector = self.static_summary[m](masked_mean(self.inputs[m](batch[m]), batch[f"{m}_mask"])) * alive
            parts.append(over_frames(vector, frames))
        parts.append(over_frames(present.float(), frames))
        out = {"pred": self.to_range(self.head(torch.cat(parts, dim=-1)))}
        if self.training and self.paired and "target" in batch and (self.config.align or self.config.match):
            aux = self.auxiliary_loss(batch, h, masks, summaries, fused_masks, present)
            if aux is not None:
                out["aux_loss"] = aux
        return out

    def auxiliary_loss(self, batch, h, masks, summaries, fused_masks, present) -> torch.Tensor | None:
        labels, labelled = window_labels(batch)
        both = present[:, self.modalities.index("audio")] & present[:, self.modalities.index("visual")]
        rows = labelled & both & masks["audio"].any(1) & masks["visual"].any(1)
        if global_count(rows) < 2:  # the global batch's rows: every process takes the same branch
            return None
        labels = (labels[rows] - self.spec.low) / (self.spec.high - self.spec.low)
        z = {m: self.align_heads[m](masked_mean(h[m][rows], masks[m][rows])) for m in self.streams}
        scale = self.temperature()
        terms = []
        if self.config.align:
            terms.append(self.config.align_weight * label_clip_loss(z["audio"], z["visual"], scale, labels,
                                                                    self.config.label_temperature))
        if self.config.match:
            has, partner = hard_negatives(scale * z["audio"] @ z["visual"].t(), labels, self.config.match_margin)
            if has.any():
                idx = rows.nonzero().squeeze(1)
                anchor, other = idx[has], idx[partner]
                neg_h = {"audio": h["audio"][anchor], "visual": h["visual"][other]}
                neg_masks = {"audio": masks["audio"][anchor], "visual": masks["visual"][other]}
                negative = self.summary(*self.fused(neg_h, neg_masks), None)
                positive = {m: summaries[m][rows] if summaries[m].dim() == 2 else
                            masked_mean(summaries[m][rows], fused_masks[m][rows]) for m in self.streams}
                logits = torch.cat([torch.cat([self.match_heads[m](positive[m]), self.match_heads[m](negative[m])])
                                    for m in self.streams]).squeeze(-1)
                truth = torch.cat([torch.cat([torch.ones(len(positive[m])), torch.zeros(len(negative[m]))])
                                   for m in self.streams]).to(logits.device)
                terms.append(self.config.match_weight * F.binary_cross_entropy_with_logits(logits, truth))
        return torch.stack(terms).sum() if terms else None
