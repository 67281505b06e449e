"""Dual-stage cross-modal alignment (arXiv 2503.10603), our implementation.

Stage 1 (pretrain_loss): modality-decoupled CLIP-style alignment. The visual encoder and
the text encoder are aligned with one symmetric InfoNCE loss, the audio encoder and the text
encoder with another; each pair has its own projection heads and learnable temperature.
The text side is the video's transcript embedding, or, where a video has no transcript, the
embedding of a description of its training label ("strong amusement, mild joy"): the
training script supplies it as batch["stage1_text"]. Many videos mimic the same seed clip
and get near-identical labels, so targets are soft: a softmax of label similarity, which
keeps near-duplicates from being pushed apart as negatives.

Stage 2 (forward): a TCN over the (aligned) visual sequence for the slow evolution of the
face, a gated bidirectional LSTM over the audio for its local dynamics, the text branch,
and quality-guided fusion: per modality a score from its pooled features and the cached
quality cues, softmax over the modalities present (a missing one gets weight 0). With
`fusion = "quality"` (default) each modality's summary is scaled by its weight and the
summaries are concatenated; `"quality_sum"` is the literal weighted sum, which on the demo
let the strongest modality crowd out the others (out-of-fold 0.571 against 0.617);
`"concat"` is plain concatenation (the ablation). `stage1 = false` skips the pretraining.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from solution.layers import (AttentionPool, GatedBiLSTM, InputProjection, LearnableTemperature, ProjectionHead, TCN,
                             mlp, soft_clip_loss)
from solution.models import InputSpec, register_model

FUSIONS = ("quality", "quality_sum", "concat")


@register_model("dual_stage")
class DualStage(nn.Module):
    @dataclass
    class Config:
        dim: int = 128
        dropout: float = 0.2
        input_dropout: float = 0.1
        tcn_levels: int = 3
        tcn_kernel: int = 3
        causal: bool = False
        lstm_layers: int = 1
        proj_dim: int = 64
        fusion: str = "quality"        # "quality" (gated concatenation), "quality_sum" or "concat"
        modality_dropout: float = 0.15
        stage1: bool = True
        label_temperature: float = 0.05  # softness of stage-1 targets, in squared label distance

    def __init__(self, spec: InputSpec, config: Config):
        super().__init__()
        if config.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {config.fusion!r}")
        self.spec, self.config = spec, config
        d = config.dim
        self.modalities = spec.modalities
        self.inputs = nn.ModuleDict({m: InputProjection(spec.dims[m], d, config.input_dropout) for m in self.modalities})
        self.sequence = nn.ModuleDict()
        if "visual" in self.modalities:
            self.sequence["visual"] = TCN(d, config.tcn_levels, config.tcn_kernel, config.dropout, config.causal)
        if "audio" in self.modalities:
            self.sequence["audio"] = GatedBiLSTM(d, config.lstm_layers, config.dropout)
        self.pools = nn.ModuleDict({m: AttentionPool(d) for m in self.sequence})
        self.summaries = nn.ModuleDict({m: nn.Linear(2 * d, d) for m in self.sequence})
        if "text" in self.modalities:
            self.summaries["text"] = mlp(d, d, d, config.dropout)

        # Stage 1: the text encoder reads transcripts or label descriptions (stage1_text_dim wide).
        text_dim = spec.stage1_text_dim or spec.dims.get("text", 0)
        self.pairs = [m for m in ("visual", "audio") if m in self.modalities] if text_dim else []
        if self.pairs:
            self.text_encoder = nn.Sequential(InputProjection(text_dim, d, config.input_dropout), mlp(d, d, d, config.dropout))
            self.heads = nn.ModuleDict({m: ProjectionHead(d, config.proj_dim) for m in self.pairs})
            self.text_heads = nn.ModuleDict({m: ProjectionHead(d, config.proj_dim) for m in self.pairs})
            self.temperatures = nn.ModuleDict({m: LearnableTemperature() for m in self.pairs})

        cue_width = {m: spec.cue_slices[m].stop - spec.cue_slices[m].start for m in self.modalities}
        self.quality = nn.ModuleDict({m: mlp(d + cue_width[m], d // 2, 1, config.dropout) for m in self.modalities})
        fused = d if config.fusion == "quality_sum" else d * len(self.modalities)
        self.head = mlp(fused, d, spec.n_targets, config.dropout)

    # ---------------------------------------------------------------- encoders

    def encode(self, batch: dict, modality: str) -> torch.Tensor:
        """One modality -> a (batch, dim) summary."""
        x = self.inputs[modality](batch[modality])
        if modality == "text":
            return self.summaries["text"](x[:, 0])
        mask = batch[f"{modality}_mask"]
        h = self.sequence[modality](x, mask)
        return self.summaries[modality](self.pools[modality](h, mask))

    # ---------------------------------------------------------------- stage 1

    def pretrain_loss(self, batch: dict) -> torch.Tensor:
        if not self.pairs:
            raise RuntimeError("dual_stage stage 1 needs text targets (transcripts or label descriptions)")
        target = batch["target"]
        distance = torch.cdist(target, target) ** 2
        text = self.text_encoder(batch["stage1_text"])
        losses = []
        for index, modality in enumerate(self.modalities):
            if modality not in self.pairs:
                continue
            rows = batch["present"][:, index]
            if rows.sum() < 2:
                continue
            z = self.heads[modality](self.encode(batch, modality)[rows])
            t = self.text_heads[modality](text[rows])
            soft = torch.softmax(-distance[rows][:, rows] / self.config.label_temperature, dim=1)
            losses.append(soft_clip_loss(z, t, self.temperatures[modality](), soft))
        return torch.stack(losses).mean() if losses else target.sum() * 0

    # ---------------------------------------------------------------- stage 2

    def forward(self, batch: dict) -> dict:
        present = batch["present"].clone()
        if self.training and self.config.modality_dropout > 0:
            drop = torch.rand(present.shape, device=present.device) < self.config.modality_dropout
            kept = present & ~drop
            # Never drop every modality a sample has.
            present = torch.where(kept.any(1, keepdim=True), kept, present)
        summaries = [self.encode(batch, m) * present[:, i:i + 1] for i, m in enumerate(self.modalities)]
        if self.config.fusion == "concat":
            fused = torch.cat(summaries, dim=-1)
            weights = present.float() / present.float().sum(1, keepdim=True).clamp_min(1)
        else:
            cues = batch["cues"]
            scores = torch.cat([self.quality[m](torch.cat([z, cues[:, self.spec.cue_slices[m]]], -1))
                                for m, z in zip(self.modalities, summaries)], dim=-1)
            weights = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=-1)
            weights = torch.nan_to_num(weights, nan=0.0)
            if self.config.fusion == "quality_sum":
                fused = sum(weights[:, i:i + 1] * z for i, z in enumerate(summaries))
            else:
                # Gate each summary by its weight (scaled so equal weights leave it unchanged),
                # then concatenate: a weighted sum would let the strongest modality crowd out
                # what the others add.
                scale = weights * present.sum(1, keepdim=True).clamp_min(1)
                fused = torch.cat([scale[:, i:i + 1] * z for i, z in enumerate(summaries)], dim=-1)
        pred = self.spec.low + (self.spec.high - self.spec.low) * torch.sigmoid(self.head(fused))
        return {"pred": pred, "weights": weights}
