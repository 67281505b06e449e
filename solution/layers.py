"""Reusable network pieces, kept apart from the models that assemble them.

Every sequence layer takes (batch, time, channels) and a boolean mask (batch, time) that is
True on real frames, so padding never leaks into a result.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(mask.any(1, keepdim=True), filled, torch.zeros_like(filled))


class AttentionPool(nn.Module):
    """A learned score per frame, softmax over the real frames, weighted sum; concatenated
    with the masked max so short bursts are not averaged away."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.out_dim = 2 * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a sample with no frames at all
        return torch.cat([(weights.unsqueeze(-1) * x).sum(1), masked_max(x, mask)], dim=-1)


class InputProjection(nn.Module):
    """LayerNorm -> dropout -> Linear: brings a feature stream to the model width."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, dim), nn.GELU())

    def forward(self, x):
        return self.net(x)


class TemporalBlock(nn.Module):
    """Two weight-normed dilated convolutions with a residual. `causal` pads on the left only;
    otherwise the kernel is centred and sees both sides (better for offline scoring)."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float, causal: bool):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        self.conv1 = weight_norm(nn.Conv1d(channels, channels, kernel, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(channels, channels, kernel, dilation=dilation))
        self.drop = nn.Dropout(dropout)

    def _conv(self, conv, x):
        left = self.pad if self.causal else self.pad // 2
        return conv(F.pad(x, (left, self.pad - left)))

    def forward(self, x, keep):
        out = self.drop(F.leaky_relu(self._conv(self.conv1, x * keep)))
        out = self.drop(F.leaky_relu(self._conv(self.conv2, out * keep)))
        return F.leaky_relu(out + x) * keep


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the channels of (batch, time, channels) whose statistics come from the
    real frames only: nn.BatchNorm1d would count padding, so a video's outputs would depend on
    how long the other videos of its batch are."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        count = m.sum()
        if self.training and count > 1:
            mean = (x * m).sum((0, 1)) / count
            var = (((x - mean) * m) ** 2).sum((0, 1)) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias) * m


class TCN(nn.Module):
    """A stack of temporal blocks with dilation 2^i, then BatchNorm over channels (real frames only)."""

    def __init__(self, dim: int, levels: int = 3, kernel: int = 3, dropout: float = 0.1, causal: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(TemporalBlock(dim, kernel, 2 ** i, dropout, causal) for i in range(levels))
        self.norm = MaskedBatchNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(x.dtype)
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h, keep)
        return self.norm(h.transpose(1, 2), mask)


class GatedBiLSTM(nn.Module):
    """A bidirectional LSTM whose output is gated, per frame and channel, against a linear
    path from the input (highway style): g = sigmoid(W[x; h]), out = g*h + (1-g)*Ux.
    Sequences are packed, so padding never reaches the recurrent state."""

    def __init__(self, dim: int, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim // 2, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.gate = nn.Linear(2 * dim, dim)
        self.skip = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        g = torch.sigmoid(self.gate(torch.cat([x, h], dim=-1)))
        return self.drop(g * h + (1 - g) * self.skip(x)) * mask.unsqueeze(-1)


class ProjectionHead(nn.Module):
    """CLIP-style head: Linear -> GELU -> Linear, L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x):
        return F.normalize(self.net(x), dim=-1)


class LearnableTemperature(nn.Module):
    """CLIP's logit scale: exp(t), t initialised to log(1/0.07), the scale clamped at 100."""

    def __init__(self, init: float = 1 / 0.07):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self):
        return self.log_scale.exp().clamp(max=100.0)


def soft_clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised a and b (batch, dim) with soft targets
    (batch, batch), rows summing to 1: the identity gives CLIP's loss; a softmax of label
    similarity keeps near-duplicate samples from being pushed apart as negatives."""
    logits = scale * a @ b.t()
    loss_ab = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_ba = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_ab + loss_ba) / 2


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
