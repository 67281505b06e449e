"""Dual-stage cross-modal alignment (arXiv 2503.10603), our implementation.

Stage 1 (phase "stage1"): modality-decoupled CLIP-style alignment. The visual encoder is
aligned with a text encoder by one symmetric InfoNCE loss, the audio encoder with another text
encoder by a second; each pair has its own text encoder, projection heads and learnable
temperature.
The text side is the video's transcript embedding, or, where a video has no transcript, the
embedding of a description of its training label ("strong amusement, mild joy"; for a
frame-level track, of the video's mean label over its annotated frames), computed by
`prepare` before the model is built. Many videos mimic the same seed clip and get
near-identical labels, so targets are soft: a softmax of label similarity, which keeps
near-duplicates from being pushed apart as negatives.

Stage 2 (phase "stage2", forward): a TCN over the (aligned) visual sequence for the slow
evolution of the face, a gated bidirectional LSTM over the audio for its local dynamics, the
text branch, and quality-guided fusion: per modality a score from its features and the cached
quality cues (per video, plus the per-step face confidence or voice activity), softmax over
the modalities present (a missing one gets weight 0). With `fusion = "quality"` each
modality's summary is scaled by its weight and the summaries are concatenated;
`"quality_sum"` (default) is the literal weighted sum; `"concat"` is plain concatenation (the
ablation). Video-level tracks pool each modality over time (attention + max) and fuse once;
frame-level tracks fuse every frame of the shared grid. `stage1 = false` skips stage 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from solution.data import CUE_NAMES
from solution.distributed import global_count
from solution.layers import (AttentionPool, GatedBiLSTM, InputProjection, LearnableTemperature, ProjectionHead, TCN,
                             label_clip_loss, masked_mean, mlp)
from solution.models import HarnessModel, InputSpec, Phase, TrainContext, register_model

FUSIONS = ("quality", "quality_sum", "concat")
QUALITY_CUES = {"visual": ("face_share", "face_confidence"), "audio": ("snr", "speech_share")}


def describe_labels(values: np.ndarray, targets, low: float = 0.0) -> list[str]:
    """'A person showing strong amusement, moderate excitement and mild joy.' For signed
    targets (valence, arousal in [-1, 1]): 'A person showing strongly positive valence and
    mildly negative arousal.'"""
    out = []
    for row in values:
        if low < 0:
            parts = [f"{'strongly' if abs(v) >= 0.5 else 'mildly'} {'positive' if v > 0 else 'negative'} {name.lower()}"
                     for v, name in zip(row, targets) if abs(v) >= 0.15]
        else:
            parts = [f"{word} {name.lower()}" for value, name in sorted(zip(row, targets), reverse=True)
                     for word in [("strong" if value >= 0.66 else "moderate" if value >= 0.33 else "mild" if value >= 0.1 else "")]
                     if word]
        body = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "no particular emotion"
        out.append(f"A person showing {body}.")
    return out


def video_label(target: np.ndarray, track) -> np.ndarray:
    """A video's label as one vector: itself (video-level) or the mean of its annotated frames."""
    if target.ndim == 1:
        return target
    annotated = target[track.annotated(target)]
    return annotated.mean(0) if len(annotated) else np.zeros(target.shape[1], np.float32)


@register_model("dual_stage")
class DualStage(HarnessModel):
    levels = ("video", "frame")
    train_defaults = {"refit": True}  # on the six tune releases: +0.037 held-back test, better on every one
    switches = {"--no-stage1": ("stage1=false", "dual_stage: skip the contrastive pretraining"),
                "--fusion": ("fusion={}", "dual_stage: quality_sum (weighted sum, default), quality (gated concatenation) or concat")}

    @dataclass
    class Config:
        dim: int = 128
        dropout: float = 0.2
        input_dropout: float = 0.1
        tcn_levels: int = 3
        tcn_kernel: int = 3
        tcn_bottleneck: int = 1        # TCN blocks convolve at dim / this between 1x1 convolutions (4: a speed-up
        #                                that cost 0.016 held-back test with lstm_stride=2 on the tune panel)
        causal: bool = False
        lstm_layers: int = 1
        lstm_stride: int = 1           # the audio LSTM steps through means of this many frames (2: speed, see above)
        proj_dim: int = 64
        fusion: str = "quality_sum"    # "quality_sum" (weighted sum), "quality" (gated concatenation) or "concat"
        modality_dropout: float = 0.15
        stage1: bool = True
        stage1_epochs: int = 15
        stage1_lr: float = 1e-3
        text_model: str = ""           # extractor for label descriptions; default: the text stream's, else minilm
        label_temperature: float = 0.05  # softness of stage-1 targets, in squared label distance
        quality_augment: float = 0.15  # share of training samples whose face or voice is swapped for another
        #                                video's, with cues that say the signal is gone
        quality_loss: float = 0.1      # weight of the auxiliary task: tell those samples' modalities apart

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
            self.sequence["visual"] = TCN(d, config.tcn_levels, config.tcn_kernel, config.dropout, config.causal,
                                           config.tcn_bottleneck)
        if "audio" in self.modalities:
            self.sequence["audio"] = GatedBiLSTM(d, config.lstm_layers, config.dropout, config.lstm_stride)
        frame = spec.level == "frame"
        self.pools = nn.ModuleDict({} if frame else {m: AttentionPool(d) for m in self.sequence})
        # Video-level: a summary from the pooled (attention + max) sequence; frame-level: per frame.
        self.summaries = nn.ModuleDict({m: nn.Linear(d if frame else 2 * d, d) for m in self.sequence})
        if "text" in self.modalities:
            self.summaries["text"] = mlp(d, d, d, config.dropout)

        # Stage 1: the text encoder reads transcripts or label descriptions.
        text_dim = spec.extra.get("stage1_text_dim", 0)
        self.pairs = [m for m in ("visual", "audio") if m in self.modalities] if text_dim else []
        if self.pairs:
            # Modality-decoupled: each pair reads the text through its own encoder, so what the
            # face aligns to need not be what the voice aligns to.
            self.text_encoders = nn.ModuleDict({m: nn.Sequential(InputProjection(text_dim, d, config.input_dropout),
                                                                 mlp(d, d, d, config.dropout)) for m in self.pairs})
            self.heads = nn.ModuleDict({m: ProjectionHead(d, config.proj_dim) for m in self.pairs})
            self.text_heads = nn.ModuleDict({m: ProjectionHead(d, config.proj_dim) for m in self.pairs})
            self.temperatures = nn.ModuleDict({m: LearnableTemperature() for m in self.pairs})

        # Quality: per-video cues, plus the mean (video) or per-step (frame) face confidence / voice activity.
        cue_width = {m: spec.cue_slices[m].stop - spec.cue_slices[m].start + 1 for m in self.modalities}
        self.quality = nn.ModuleDict({m: mlp(d + cue_width[m], d // 2, 1, config.dropout) for m in self.modalities})
        # Reliability from the measured cues alone (face share and confidence, SNR, speech share,
        # per-frame quality): log r is added to the score, so r near 1 leaves the learned weights
        # alone and r near 0 takes a modality out. Trained by the quality augmentation below.
        self.reliability = nn.ModuleDict({m: mlp(cue_width[m], 16, 1, 0.0) for m in self.modalities if m in QUALITY_CUES})
        fused = d if config.fusion == "quality_sum" else d * len(self.modalities)
        self.head = mlp(fused, d, spec.n_targets, config.dropout)
        self._stage1 = {}

    # ---------------------------------------------------------------- hooks

    @classmethod
    def prepare(cls, config, context: TrainContext):
        """Stage-1 text per training video: its transcript's embedding, or its label's description's."""
        if not (config.stage1 and config.stage1_epochs > 0):
            return {}, None
        from solution.extractors import create_extractor

        text_spec = config.text_model or context.text_stream or "minilm"
        extractor = create_extractor(text_spec, context.device)
        track = context.track
        labels = {k: video_label(context.targets[k], track) for k in context.train_keys}
        texts = describe_labels(np.stack([labels[k] for k in context.train_keys]), track.targets, track.low)
        unique = list(dict.fromkeys(texts))
        embedded = dict(zip(unique, extractor.many(unique)))
        side = {"labels": labels, "text": {}}
        for key, description in zip(context.train_keys, texts):
            own = context.text_vector(key)
            vector = embedded[description]
            if own is not None and len(own) == len(vector):
                side["text"][key] = own
            elif context.text_dim == len(vector) and context.normalizer is not None:
                side["text"][key] = context.normalizer.apply("text", vector[None])[0]
            else:
                side["text"][key] = vector.astype(np.float32)
        width = len(next(iter(side["text"].values())))
        return {"stage1_text_dim": width, "text_model": text_spec}, side

    def attach(self, side) -> None:
        self._stage1 = side or {}

    def phases(self, train_cfg) -> list[Phase]:
        main = Phase("stage2", train_cfg.epochs, train_cfg.lr)
        if self.pairs and self.config.stage1 and self.config.stage1_epochs > 0:
            return [Phase("stage1", self.config.stage1_epochs, self.config.stage1_lr, select=False), main]
        return [main]

    def param_groups(self, lr: float) -> list[dict]:
        """The reliability heads are tiny and see one loss term: at the shared rate they would
        barely move in the few hundred steps a fold takes, so they learn 10 times faster."""
        fast = [p for p in self.reliability.parameters()]
        ids = {id(p) for p in fast}
        return [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr},
                {"params": fast, "lr": 10 * lr, "weight_decay": 0.0}]

    def phase_loss(self, phase: str, batch: dict, task_loss):
        if phase == "stage1":
            return self.pretrain_loss(batch)
        return super().phase_loss(phase, batch, task_loss)

    # ---------------------------------------------------------------- encoders

    def sequence_features(self, batch: dict, modality: str) -> torch.Tensor:
        """(B, T, d) for visual/audio; (B, 1, d) for text."""
        x = self.inputs[modality](batch[modality])
        if f"{modality}_source" in batch:  # quality augmentation swapped these samples' frames
            x = x[batch[f"{modality}_source"]]
        if modality == "text":  # word-timed text: steps between words hold nothing
            return x * batch["text_mask"].unsqueeze(-1).to(x.dtype)
        return self.sequence[modality](x, batch[f"{modality}_mask"])

    def encode(self, batch: dict, modality: str) -> torch.Tensor:
        """One modality -> a (batch, dim) summary of the whole piece."""
        h = self.sequence_features(batch, modality)
        if modality == "text":  # one vector, or word-timed steps: the mean of the steps with a word
            return self.summaries["text"](masked_mean(h, batch["text_mask"]))
        mask = batch[f"{modality}_mask"]
        if self.spec.level == "frame":
            return masked_mean(self.summaries[modality](h), mask)
        return self.summaries[modality](self.pools[modality](h, mask))

    # ---------------------------------------------------------------- stage 1

    def pretrain_loss(self, batch: dict) -> torch.Tensor | None:
        """Soft symmetric InfoNCE of each (modality, text) pair; None when no pair has two rows."""
        device = batch["present"].device
        keys = batch["keys"]
        target = torch.from_numpy(np.stack([self._stage1["labels"][k] for k in keys]).astype(np.float32)).to(device)
        text_in = torch.from_numpy(np.stack([self._stage1["text"][k] for k in keys])).to(device)
        losses = []
        for index, modality in enumerate(self.modalities):
            if modality not in self.pairs:
                continue
            rows = batch["present"][:, index]
            if global_count(rows) < 2:  # the global batch's rows: every process takes the same branch
                continue
            z = self.heads[modality](self.encode(batch, modality)[rows])
            t = self.text_heads[modality](self.text_encoders[modality](text_in[rows]))
            losses.append(label_clip_loss(z, t, self.temperatures[modality](), target[rows],
                                          self.config.label_temperature))
        return torch.stack(losses).mean() if losses else None

    # ---------------------------------------------------------------- stage 2

    def corrupt(self, batch: dict) -> tuple[dict, dict]:
        """Quality augmentation: for a random share of the samples, one modality's frames are
        swapped for another sample's (they look like real features but say nothing about this
        video, as a hand over the face or street noise would), and its quality cues (face share
        and confidence; SNR and speech share) and per-frame quality say the signal is gone.
        Returns the batch and, per modality, which samples were hit: the auxiliary quality task
        learns to tell them apart, and only the cues can, so the fusion weights follow the cues."""
        batch = dict(batch)
        cues = batch["cues"].clone()
        n = cues.shape[0]
        hits = {}
        if n < 2:
            return batch, hits
        donor = (torch.arange(n, device=cues.device) + torch.randint(1, n, (1,), device=cues.device)) % n
        for m in ("visual", "audio"):
            if m not in self.modalities:
                continue
            index = self.modalities.index(m)
            hit = torch.rand(n, device=cues.device) < self.config.quality_augment
            hit &= batch["present"][:, index] & batch["present"][donor, index]
            hits[m] = hit
            if not hit.any():
                continue
            # A hit sample takes the donor's frames, mask and per-frame quality (lowered below),
            # so all three describe the same signal. The frames are swapped after the input
            # projection (`sequence_features`): gathering the raw 768-d inputs cost a tenth of a step.
            source = torch.where(hit, donor, torch.arange(n, device=cues.device))
            mask = batch[f"{m}_mask"][source]
            level = torch.rand(n, device=cues.device) * 0.3  # what a bad face or voice measures: low, not nil
            q = batch[f"{m}_quality"][source] * torch.where(hit, level, torch.ones_like(level))[:, None]
            start = self.spec.cue_slices[m].start
            for name in QUALITY_CUES[m]:
                cues[hit, start + CUE_NAMES[m].index(name)] *= level[hit]
            batch[f"{m}_source"], batch[f"{m}_mask"], batch[f"{m}_quality"] = source, mask, q
        batch["cues"] = cues
        return batch, hits

    def forward(self, batch: dict) -> dict:
        hits = {}
        if self.training and self.augment and self.config.quality_augment > 0:
            batch, hits = self.corrupt(batch)
        present = self.drop_modalities(batch["present"], self.config.modality_dropout)
        frame = self.spec.level == "frame"
        frames = batch["frame_mask"].shape[1] if frame else 1
        summaries, step_quality = [], []
        for m in self.modalities:
            if frame and m == "text" and batch["text"].shape[1] != frames:  # one vector per video
                z = self.encode(batch, m).unsqueeze(1).expand(-1, frames, -1)
                q = batch["text_quality"][:, :1].expand(-1, frames)
            elif frame:
                h = self.sequence_features(batch, m)
                z, q = self.summaries[m](h), batch[f"{m}_quality"]
            else:
                z = self.encode(batch, m).unsqueeze(1)
                q = masked_mean(batch[f"{m}_quality"].unsqueeze(-1), batch[f"{m}_mask"])
                q = q.unsqueeze(1)
            summaries.append(z)
            step_quality.append(q.reshape(z.shape[0], frames, 1))
        alive = present.unsqueeze(1).expand(-1, frames, -1)                       # (B, T, M)
        summaries = [z * alive[..., i:i + 1] for i, z in enumerate(summaries)]
        if self.config.fusion == "concat":
            fused = torch.cat(summaries, dim=-1)
            weights = alive.float() / alive.float().sum(-1, keepdim=True).clamp_min(1)
        else:
            cues = batch["cues"].unsqueeze(1).expand(-1, frames, -1)
            scores = torch.cat([self.quality[m](torch.cat([z, cues[..., self.spec.cue_slices[m]], q], -1))
                                for m, z, q in zip(self.modalities, summaries, step_quality)], dim=-1)
            reliable = torch.cat([self.reliability[m](torch.cat([cues[..., self.spec.cue_slices[m]], q], -1))
                                  if m in self.reliability else torch.full_like(q, 20.0)
                                  for m, q in zip(self.modalities, step_quality)], dim=-1)
            scores = scores + F.logsigmoid(reliable)
            weights = torch.softmax(scores.masked_fill(~alive, float("-inf")), dim=-1)
            weights = torch.nan_to_num(weights, nan=0.0)
            if self.config.fusion == "quality_sum":
                fused = sum(weights[..., i:i + 1] * z for i, z in enumerate(summaries))
            else:
                # Gate each summary by its weight (scaled so equal weights leave it unchanged),
                # then concatenate: a weighted sum would let the strongest modality crowd out
                # what the others add.
                scale = weights * alive.sum(-1, keepdim=True).clamp_min(1)
                fused = torch.cat([scale[..., i:i + 1] * z for i, z in enumerate(summaries)], dim=-1)
        pred = self.to_range(self.head(fused))
        out = {}
        if hits and self.config.fusion != "concat" and self.config.quality_loss > 0:
            # The reliability head learns which samples were swapped: from the cues alone.
            terms = []
            for m, hit in hits.items():
                i = self.modalities.index(m)
                rows = present[:, i]
                if rows.any():
                    logit = reliable[..., i].mean(1)[rows]
                    terms.append(F.binary_cross_entropy_with_logits(logit, (~hit[rows]).float()))
            if terms:
                out["aux_loss"] = self.config.quality_loss * torch.stack(terms).mean()
        if not frame:
            pred, weights = pred[:, 0], weights[:, 0]
        return {"pred": pred, "weights": weights, **out}
