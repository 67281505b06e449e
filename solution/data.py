"""Cached features -> padded batches with masks, for every model.

Three modalities: visual, audio, text. Each is the concatenation of one or more cache
streams (e.g. visual = hog + organizer:vit), each resampled onto one time grid per video
(visual 5 Hz, audio 10 Hz by default; capped at a maximum length) by linear interpolation,
so streams of different rates line up. Text is one vector per video. A modality is
missing for a video when none of its streams has an entry (recorded as a failure by the
feature stage); it then contributes no frames and a `present` flag of 0.

Quality cues per modality (fixed order, see CUE_NAMES) come from the cache: share of
frames with a face and its confidence, SNR, speech share, level, word count, missing.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from solution import cache
from solution.layouts import DataError

log = logging.getLogger(__name__)
MODALITIES = ("visual", "audio", "text")
ORGANIZER_MODALITY = {"vit": "visual", "face": "visual", "wav2vec2": "audio", "audio": "audio"}
CUE_NAMES = {
    "visual": ("face_share", "face_confidence", "face_unknown", "missing"),
    "audio": ("snr", "speech_share", "level", "missing"),
    "text": ("words", "from_asr", "missing"),
}


def stream_modality(manifest: dict) -> str:
    modality = manifest["modality"]
    if modality != "organizer":
        return modality
    kind = manifest["extractor"].split(":", 1)[1]
    if kind not in ORGANIZER_MODALITY:
        raise DataError(f"organizer feature {kind!r}: unknown modality; name the streams explicitly")
    return ORGANIZER_MODALITY[kind]


def find_streams(work, wanted: dict | None = None) -> dict[str, list[tuple[str, Path]]]:
    """modality -> [(extractor spec, cache folder)]. `wanted` maps a modality to specs, or
    None for every stream in the cache."""
    root = cache.features_root(work)
    manifests = {}
    for path in sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime):
        manifest = json.loads(path.read_text())
        manifests[manifest["extractor"]] = (manifest, path.parent)  # the newest settings win
    if not manifests:
        raise DataError(f"{root}: no features cache; run python -m solution.features --data DATA --work {work}")
    streams: dict[str, list] = {m: [] for m in MODALITIES}
    if wanted is None:
        for spec, (manifest, folder) in manifests.items():
            streams[stream_modality(manifest)].append((spec, folder))
    else:
        for modality, specs in wanted.items():
            if modality not in MODALITIES:
                raise DataError(f"unknown modality {modality!r} in streams; use {MODALITIES}")
            for spec in specs:
                if spec not in manifests:
                    raise DataError(f"no cached features for {spec!r} in {root}; cached: {sorted(manifests)}")
                streams[modality].append((spec, manifests[spec][1]))
    return {m: sorted(s) for m, s in streams.items() if s}


def resample(seq: np.ndarray, length: int) -> np.ndarray:
    if len(seq) == length:
        return seq
    if len(seq) == 1:
        return np.repeat(seq, length, 0)
    source = (np.arange(len(seq)) + 0.5) / len(seq)
    target = (np.arange(length) + 0.5) / length
    index = np.clip(np.searchsorted(source, target) - 1, 0, len(seq) - 2)
    frac = np.clip((target - source[index]) / (source[index + 1] - source[index]), 0, 1)[:, None]
    return (seq[index] * (1 - frac) + seq[index + 1] * frac).astype(np.float32)


def _cues(modality: str, quality: dict, missing: bool) -> list[float]:
    q = {k: (np.nan if v is None else float(v)) for k, v in quality.items()}
    if modality == "visual":
        share, conf = q.get("face_share", np.nan), q.get("face_confidence", np.nan)
        unknown = float(np.isnan(share))
        return [0.0 if unknown else share, 0.0 if unknown else conf, unknown, float(missing)]
    if modality == "audio":
        return [np.nan_to_num(q.get("snr_db", 0.0)) / 30, np.nan_to_num(q.get("speech_share", 0.0)),
                (np.nan_to_num(q.get("level_db", -60.0)) + 60) / 60, float(missing)]
    return [np.log1p(np.nan_to_num(q.get("words", 0.0))) / 4, np.nan_to_num(q.get("from_asr", 0.0)), float(missing)]


@dataclass
class FeatureTable:
    """Every video's inputs, in memory: sequences per modality (None when missing)."""

    ids: list[str]
    sequences: dict                 # modality -> list of (T, D) arrays or None
    dims: dict                      # modality -> D
    cues: np.ndarray                # (N, sum of cue counts)
    present: np.ndarray             # (N, len(modalities)) bool
    modalities: tuple
    streams: dict                   # modality -> [spec]

    def index(self, ids) -> np.ndarray:
        where = {vid: i for i, vid in enumerate(self.ids)}
        return np.array([where[v] for v in ids])


def load_table(work, ids: list[str], wanted: dict | None = None, rates: dict | None = None,
               max_len: dict | None = None) -> FeatureTable:
    """Read every id's cached streams; a missing entry (never extracted) or NaN is an error."""
    rates = {"visual": 5.0, "audio": 10.0, **(rates or {})}
    max_len = {"visual": 160, "audio": 400, **(max_len or {})}
    streams = find_streams(work, wanted)
    modalities = tuple(m for m in MODALITIES if m in streams)
    sequences = {m: [] for m in modalities}
    cues, present = [], []
    # Each stream's width, read once: a manifest lists every video, too big to parse per video.
    width = {folder: cache.read_manifest(folder)["dim"] or 0 for m in modalities for _, folder in streams[m]}
    dims = {m: sum(width[folder] for _, folder in streams[m]) for m in modalities}
    for modality in modalities:
        absent = [vid for vid in ids if any(cache.status(folder, vid) is None for _, folder in streams[modality])]
        if absent:
            raise DataError(f"features missing for {len(absent)} video(s) (e.g. {absent[:5]}) in "
                            f"{[str(f) for _, f in streams[modality]]}; run python -m solution.features again")
    for vid in ids:
        row_cues, row_present = [], []
        for modality in modalities:
            entries = [(folder, cache.read_entry(folder, vid, width[folder])) for _, folder in streams[modality]]
            for folder, entry in entries:
                if not entry.missing and not np.isfinite(entry.features).all():
                    raise DataError(f"{cache.entry_path(folder, vid)}: NaN or inf in the cached features; "
                                    "delete the file and extract it again")
            have = [(f, e) for f, e in entries if not e.missing and len(e.features)]
            row_cues += _cues(modality, entries[0][1].quality, not have)
            row_present.append(bool(have))
            if not have:
                sequences[modality].append(None)
                continue
            if modality == "text":
                parts = [e.features.mean(0, keepdims=True) if not e.missing else
                         np.zeros((1, width[f]), np.float32) for f, e in entries]
                sequences[modality].append(np.concatenate(parts, 1))
                continue
            first = have[0][1]
            duration = len(first.features) / (first.fps or rates[modality])
            length = int(np.clip(round(duration * rates[modality]), 1, max_len[modality]))
            parts = [resample(e.features, length) if not e.missing and len(e.features) else
                     np.zeros((length, width[f]), np.float32) for f, e in entries]
            sequences[modality].append(np.concatenate(parts, 1).astype(np.float32))
        cues.append(row_cues)
        present.append(row_present)
    return FeatureTable(list(ids), sequences, dims, np.asarray(cues, np.float32), np.asarray(present, bool),
                        modalities, {m: [s for s, _ in streams[m]] for m in modalities})


@dataclass
class Normalizer:
    """Per-dimension mean and std of each modality, from training videos only."""

    stats: dict  # modality -> (mean, std)

    @classmethod
    def fit(cls, table: FeatureTable, rows) -> "Normalizer":
        stats = {}
        for modality in table.modalities:
            seqs = [table.sequences[modality][i] for i in rows if table.sequences[modality][i] is not None]
            if not seqs:
                stats[modality] = (np.zeros(table.dims[modality], np.float32), np.ones(table.dims[modality], np.float32))
                continue
            frames = np.concatenate(seqs)
            stats[modality] = (frames.mean(0), frames.std(0) + 1e-5)
        return cls(stats)

    def apply(self, modality: str, seq: np.ndarray) -> np.ndarray:
        mean, std = self.stats[modality]
        return np.clip((seq - mean) / std, -8, 8).astype(np.float32)

    def table(self, table: FeatureTable) -> FeatureTable:
        """A copy of `table` with every sequence normalised, done once instead of per batch."""
        sequences = {m: [None if seq is None else self.apply(m, seq) for seq in table.sequences[m]]
                     for m in table.modalities}
        return dataclasses.replace(table, sequences=sequences)

    def state(self) -> dict:
        return {m: (mean.tolist(), std.tolist()) for m, (mean, std) in self.stats.items()}

    @classmethod
    def from_state(cls, state: dict) -> "Normalizer":
        return cls({m: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for m, (a, b) in state.items()})


def make_batch(table: FeatureTable, rows, labels: np.ndarray | None = None, device="cpu") -> dict:
    """Rows of a normalised table -> a dict of padded tensors: <modality> (B, T, D),
    <modality>_mask (B, T), present (B, M), cues (B, C), and target (B, 6) when labels are given."""
    batch = {}
    for modality in table.modalities:
        seqs = [table.sequences[modality][i] for i in rows]
        longest = max([len(s) for s in seqs if s is not None] or [1])
        x = np.zeros((len(rows), longest, table.dims[modality]), np.float32)
        mask = np.zeros((len(rows), longest), bool)
        for j, seq in enumerate(seqs):
            if seq is not None:
                x[j, : len(seq)] = seq
                mask[j, : len(seq)] = True
        batch[modality] = torch.from_numpy(x).to(device)
        batch[f"{modality}_mask"] = torch.from_numpy(mask).to(device)
    batch["present"] = torch.from_numpy(table.present[rows]).to(device)
    batch["cues"] = torch.from_numpy(table.cues[rows]).to(device)
    if labels is not None:
        batch["target"] = torch.from_numpy(labels.astype(np.float32)).to(device)
    return batch


def cue_slices(modalities) -> dict:
    """modality -> slice of the cue vector."""
    out, start = {}, 0
    for modality in modalities:
        n = len(CUE_NAMES[modality])
        out[modality] = slice(start, start + n)
        start += n
    return out
