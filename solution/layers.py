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

from solution.distributed import all_sum, gather_rows


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
        # No bias on the last layer: softmax ignores a shift, so it would never learn.
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.out_dim = 2 * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a sample with no frames at all
        return torch.cat([(weights.unsqueeze(-1) * x).sum(1), masked_max(x, mask)], dim=-1)


class Dropout(nn.Dropout):
    """nn.Dropout drawing its mask with torch.rand: the same distribution, and on the CPU about
    a third faster forward and backward than torch's bernoulli kernel, which took an eighth of a
    training step of the dual-stage model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))


class InputProjection(nn.Module):
    """Channel dropout -> Linear -> LayerNorm -> GELU: brings a feature stream to the model width.

    The streams arrive standardised per channel (data.Normalizer), so the LayerNorm acts on the
    narrow side: over a 768-d stream of 400 frames, normalising the input took a third of a
    training step on the CPU. The dropout drops whole input channels of a sample for all its
    frames (one draw per sample and channel) rather than single values, for the same reason
    (300k random draws per video) and because a channel gone for the whole clip is the
    stronger regulariser for features that change slowly."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.dropout = dropout
        self.linear = nn.Linear(in_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        if not (self.training and self.dropout > 0):
            return F.gelu(self.norm(self.linear(x)))
        keep = torch.empty(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1], device=x.device, dtype=x.dtype)
        keep = keep.bernoulli_(1 - self.dropout).div_(1 - self.dropout)
        if x.dim() == 3:
            # Dropping input channel c of sample b is zeroing column c of sample b's weights: one
            # batched matmul with per-sample weights, instead of a masked copy of the whole
            # (B, T, in) input, which is slow to allocate and fill at 768-d inputs.
            out = torch.baddbmm(self.linear.bias.view(1, 1, -1), x, (self.linear.weight * keep).transpose(1, 2))
        else:
            out = self.linear(x * keep)
        return F.gelu(self.norm(out))


class TemporalBlock(nn.Module):
    """Two weight-normed dilated convolutions with a residual. `causal` pads on the left only;
    otherwise the kernel is centred and sees both sides (better for offline scoring).

    `bottleneck` b > 1 makes it a bottleneck block: a 1x1 convolution down to channels / b, the
    dilated convolution at that width, a 1x1 convolution back up. At 512 channels and kernel 5
    that is 12 times fewer multiply-adds than two full-width convolutions, which were nearly all
    of RCMA's training time on the CPU; the receptive field is the same."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float, causal: bool, bottleneck: int = 1):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        self.bottleneck = max(1, bottleneck)
        if self.bottleneck > 1:
            inner = max(1, channels // self.bottleneck)
            # No bias: zero padding stays zero through the 1x1 and the activation, so no mask is needed.
            self.reduce = weight_norm(nn.Conv1d(channels, inner, 1, bias=False))
            self.conv1 = weight_norm(nn.Conv1d(inner, inner, kernel, dilation=dilation))
            self.conv2 = weight_norm(nn.Conv1d(inner, channels, 1))
        else:
            self.conv1 = weight_norm(nn.Conv1d(channels, channels, kernel, dilation=dilation))
            self.conv2 = weight_norm(nn.Conv1d(channels, channels, kernel, dilation=dilation))
        self.drop = Dropout(dropout)

    def _conv(self, conv, x):
        left = self.pad if self.causal else self.pad // 2
        return conv(F.pad(x, (left, self.pad - left)))

    def forward(self, x, keep):
        if self.bottleneck > 1:  # x arrives masked (TCN masks its input; every block masks its output)
            out = self.drop(F.leaky_relu(self._conv(self.conv1, F.leaky_relu(self.reduce(x)))))
            out = self.conv2(out)
        else:
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
        # all_sum: when a batch is split over processes, the statistics are the global batch's
        # (solution/distributed.py); otherwise the sums are this batch's.
        count = all_sum(m.sum()) if self.training else m.sum()
        if self.training and count > 1:
            mean = all_sum((x * m).sum((0, 1))) / count
            var = all_sum((((x - mean) * m) ** 2).sum((0, 1))) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias) * m


class TCN(nn.Module):
    """A stack of temporal blocks with dilation 2^i, then BatchNorm over channels (real frames only)."""

    def __init__(self, dim: int, levels: int = 3, kernel: int = 3, dropout: float = 0.1, causal: bool = False,
                 bottleneck: int = 1):
        super().__init__()
        self.blocks = nn.ModuleList(TemporalBlock(dim, kernel, 2 ** i, dropout, causal, bottleneck) for i in range(levels))
        self.norm = MaskedBatchNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(x.dtype)
        h = x.transpose(1, 2) * keep
        for block in self.blocks:
            h = block(h, keep)
        return self.norm(h.transpose(1, 2), mask)


class GatedBiLSTM(nn.Module):
    """A bidirectional LSTM whose output is gated, per frame and channel, against a linear
    path from the input (highway style): g = sigmoid(W[x; h]), out = g*h + (1-g)*Ux.
    Sequences are packed, so padding never reaches the recurrent state.

    `stride` > 1 runs the recurrence on the mean of every `stride` consecutive real frames and
    repeats its states back: an LSTM steps through time one frame after another, so on the CPU
    it costs in proportion to the length; the gate and the skip path keep full resolution."""

    def __init__(self, dim: int, layers: int = 1, dropout: float = 0.1, stride: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim // 2, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.gate = nn.Linear(2 * dim, dim)
        self.skip = nn.Linear(dim, dim)
        self.drop = Dropout(dropout)
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        seq, seq_mask = x, mask
        if self.stride > 1:
            seq, seq_mask = strided_mean(x, mask, self.stride)
        lengths = seq_mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(seq, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        if self.stride > 1:
            h = h.repeat_interleave(self.stride, dim=1)[:, :steps]
        g = torch.sigmoid(self.gate(torch.cat([x, h], dim=-1)))
        return self.drop(g * h + (1 - g) * self.skip(x)) * mask.unsqueeze(-1)


def strided_mean(x: torch.Tensor, mask: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C) -> (B, ceil(T/stride), C): the mean of each group of `stride` frames over its
    real frames; a group is real when any of its frames is. Real frames come first in every row,
    so the groups of a row's real frames come first too (as packing needs)."""
    batch, steps, channels = x.shape
    pad = (-steps) % stride
    weights = F.pad(mask, (0, pad)).to(x.dtype).reshape(batch, -1, stride, 1)
    sums = (F.pad(x, (0, 0, 0, pad)).reshape(batch, -1, stride, channels) * weights).sum(2)
    counts = weights.sum(2)
    return sums / counts.clamp_min(1), counts.squeeze(-1) > 0


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


def label_clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """soft_clip_loss with label-similarity targets, over the whole global batch: when a batch
    is split over processes, every process's rows are the negatives (solution/distributed.py)."""
    a, b, labels = gather_rows(a), gather_rows(b), gather_rows(labels)
    return soft_clip_loss(a, b, scale, soft_label_targets(labels, temperature))


def soft_label_targets(labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """(n, k) labels -> (n, n) contrastive targets, rows summing to one: softmax_j of
    -||y_i - y_j||^2 / temperature. Equal labels share the positive mass, far ones get none,
    all-distinct labels give the identity (CLIP's targets)."""
    return torch.softmax(-torch.cdist(labels, labels) ** 2 / temperature, dim=1)


def over_frames(x: torch.Tensor, frames: int | None) -> torch.Tensor:
    """A per-sample vector (B, d) as it is (frames None) or repeated over frames (B, frames, d)."""
    return x if frames is None else x.unsqueeze(1).expand(-1, frames, -1)


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, out_dim))
