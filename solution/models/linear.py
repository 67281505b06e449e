"""The organizers' style of baseline: each modality's features mean-pooled over time,
concatenated with the presence flags, one linear layer to the targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from solution.layers import masked_mean
from solution.models import InputSpec, register_model


@register_model("linear")
class LinearModel(nn.Module):
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
        pooled = [masked_mean(batch[m], batch[f"{m}_mask"]) for m in self.spec.modalities]
        x = torch.cat(pooled + [batch["present"].float()], dim=-1)
        pred = self.spec.low + (self.spec.high - self.spec.low) * torch.sigmoid(self.head(self.drop(x)))
        return {"pred": pred}
