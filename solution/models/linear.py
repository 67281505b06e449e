"""The organizers' style of baseline: each modality's features mean-pooled over time (or,
for frame-level tracks, taken frame by frame), concatenated with the presence flags, one
linear layer to the targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from solution.layers import masked_mean
from solution.models import HarnessModel, InputSpec, register_model


@register_model("linear")
class LinearModel(HarnessModel):
    levels = ("video", "frame")

    @dataclass
    class Config:
        dropout: float = 0.2

    def __init__(self, spec: InputSpec, config: Config):
        super().__init__()
        self.spec, self.config = spec, config
        width = sum(spec.dims[m] for m in spec.modalities) + len(spec.modalities)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, spec.n_targets)

    def forward(self, batch: dict) -> dict:
        present = batch["present"].float()
        if self.spec.level == "video":
            parts = [masked_mean(batch[m], batch[f"{m}_mask"]) for m in self.spec.modalities] + [present]
        else:
            frames = batch["frame_mask"].shape[1]
            parts = [(batch[m] * batch[f"{m}_mask"].unsqueeze(-1)).expand(-1, frames, -1) if m == "text" else
                     batch[m] * batch[f"{m}_mask"].unsqueeze(-1) for m in self.spec.modalities]
            parts.append(present.unsqueeze(1).expand(-1, frames, -1))
        return {"pred": self.to_range(self.head(self.drop(torch.cat(parts, dim=-1))))}
