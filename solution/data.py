"""Cached features -> batches, read on demand: memory grows with the batch, not the release.

Three modalities (visual, audio, text), each the concatenation of one or more cache streams
(e.g. visual = hog + organizer:vit), found by the identity of the video's source files, so
another release's entries with the same ids are never read. `VideoStore.load(key)` puts each
modality on a time grid by linear interpolation (its own rate, one shared grid, or for a
frame-level track the label frames thinned to `shared_rate`, read `label_delay` seconds
early), normalises, and keeps videos in an LRU cache with a byte budget (`cache_mb`).

Text is one vector per video unless some video has a word-timed transcript: then each word is
held over the grid steps of its span and steps without a word are masked, not filled with the
last word (silence says nothing; a word held into the pause would meet faces it was not spoken
over). docs/features.md has the details. Batches are `Piece`s: a random crop (video-level
training), chunks averaged (video-level prediction) or windows of grid steps (frame-level),
carried back to every label frame by `gather`.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from solution import cache
from solution.config import TrainConfig
from solution.errors import DataError
from solution.progress import progress
from solution.streams import MODALITIES, Stream, has_timed_entries, resolve_streams, stream_keys
from solution.windows import align, chunk_spans, grid_times, stitch, window_starts

log = logging.getLogger(__name__)
KNOWN_RATES = {"wav2vec2": 50.0}  # organizer streams whose frame rate is a property of the model
FALLBACK_RATE = 30.0              # frames a second assumed when no stream of a video knows its rate
CUE_NAMES = {
    "visual": ("face_share", "face_confidence", "face_unknown", "missing"),
    "audio": ("snr", "speech_share", "level", "missing"),
    "text": ("words", "from_asr", "missing"),
}


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


def cue_slices(modalities) -> dict:
    """modality -> slice of the cue vector."""
    out, start = {}, 0
    for modality in modalities:
        n = len(CUE_NAMES[modality])
        out[modality] = slice(start, start + n)
        start += n
    return out


def hold_spans(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `values` (N, D) spoken over spans [starts, ends) -> (len(at), D) on the grid times
    `at` (ascending) and a mask of the steps that hold a word. A step takes the word whose
    span contains its time (of overlapping words, the one that started last); a word whose
    span contains no step takes the step nearest its middle when no word holds that step
    (and the middle is within half a step of the grid). Other steps are zeros, masked."""
    at = np.asarray(at, np.float64)
    index = np.full(len(at), -1, np.int64)
    if len(at) == 0 or len(values) == 0:
        return np.zeros((len(at), values.shape[1]), np.float32), index >= 0
    starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    order = np.argsort(starts, kind="stable")
    first = np.searchsorted(at, starts, side="left")   # first step at or after the start
    stop = np.searchsorted(at, ends, side="left")      # first step at or after the end
    for w in order:                                    # later starts overwrite: the word just begun
        index[first[w]:stop[w]] = w
    half = 0.5 * float(np.median(np.diff(at))) if len(at) > 1 else np.inf
    for w in order[first[order] >= stop[order]]:       # too short for a step of its own
        middle = 0.5 * (starts[w] + ends[w])
        if not at[0] - half <= middle < at[-1] + half:
            continue                                   # outside the grid (e.g. after the video's end)
        k = int(np.searchsorted(at, middle))           # the nearer of the steps around the middle
        if k == len(at) or (k > 0 and middle - at[k - 1] <= at[k] - middle):
            k -= 1
        if index[k] < 0:
            index[k] = w
    held = index >= 0
    out = np.zeros((len(at), values.shape[1]), np.float32)
    out[held] = values[index[held]]
    return out, held


# ------------------------------------------------------------------ aligning a video's streams

def merged_quality(pairs: list) -> dict:
    """A modality's quality readings over its streams; the project's own extraction wins a name
    both give, since organizer features carry no frame quality of their own."""
    merged = {}
    for s, e in sorted(pairs, key=lambda se: se[0].cache_modality == "organizer"):
        for name, value in e.quality.items():
            merged.setdefault(name, value)
    return merged


def entry_times(stream: Stream, entry: cache.Entry, duration: float) -> np.ndarray:
    """Seconds of each feature row: its own timestamps, else the stream kind's known rate, else
    spread evenly over the duration the other streams give."""
    if entry.fps:
        return entry.times.astype(np.float64)
    rate = KNOWN_RATES.get(stream.kind)
    n = len(entry.features)
    if rate:
        return np.arange(n) / rate
    return (np.arange(n) + 0.5) * duration / n


def align_frames(pairs: list, at: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame streams (face, audio) side by side at the times `at`, and the first own stream's
    frame quality there (ones when none has it); a missing stream is zeros."""
    parts, q = [], None
    for s, e in pairs:
        if not e.has_rows:
            parts.append(np.zeros((len(at), s.dim), np.float32))
            continue
        times = entry_times(s, e, duration)
        parts.append(align(e.features, times, at))
        if q is None and s.cache_modality != "organizer" and len(e.frame_quality) == len(e.features):
            q = align(np.nan_to_num(e.frame_quality, nan=1.0)[:, None], times, at)[:, 0]
    return np.concatenate(parts, 1), q if q is not None else np.ones(len(at), np.float32)


def hold_timed_text(pairs: list, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word-timed text streams side by side at the times `at`, each word held over its span,
    and which steps hold a word; a plain transcript among them is held over the whole video."""
    parts, mask = [], np.zeros(len(at), bool)
    for s, e in pairs:
        if not e.has_rows:
            parts.append(np.zeros((len(at), s.dim), np.float32))
        elif e.ends is None:
            parts.append(np.repeat(e.features.mean(0, keepdims=True), len(at), 0).astype(np.float32))
            mask[:] = True
        else:
            values, held = hold_spans(e.features, e.times, e.ends, at)
            parts.append(values)
            mask |= held
    return np.concatenate(parts, 1), mask


def text_vector_steps(pairs: list) -> np.ndarray:
    """Untimed text streams as one step: each stream's mean vector side by side."""
    parts = [e.features.mean(0, keepdims=True) if e.has_rows else
             np.zeros((1, s.dim), np.float32) for s, e in pairs]
    return np.concatenate(parts, 1)


# ------------------------------------------------------------------ normalisation

@dataclass
class Normalizer:
    """Per-dimension mean and std of each modality, from training videos only."""

    stats: dict  # modality -> (mean, std)

    @classmethod
    def fit(cls, store: "VideoStore", keys) -> "Normalizer":
        """One streaming pass over the training videos (float64 sums; nothing kept but the sums)."""
        sums = {m: [np.zeros(store.dims[m]), np.zeros(store.dims[m]), 0] for m in store.modalities}
        for key in progress(keys, desc="normalisation", unit="video", disable=len(keys) < 500, leave=False):
            video = store.load(key, normalise=False, keep=False)
            for m, seq in video.seqs.items():
                if seq is not None:
                    if video.masks.get(m) is not None:
                        seq = seq[video.masks[m]]  # timed text: word steps only, not the gaps' zeros
                    s = sums[m]
                    s[0] += seq.sum(0, dtype=np.float64)
                    s[1] += np.square(seq, dtype=np.float64).sum(0)
                    s[2] += len(seq)
        stats = {}
        for m, (total, squares, count) in sums.items():
            if count == 0:
                stats[m] = (np.zeros(store.dims[m], np.float32), np.ones(store.dims[m], np.float32))
                continue
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
            stats[m] = (mean.astype(np.float32), (std + 1e-5).astype(np.float32))
        return cls(stats)

    def apply(self, modality: str, seq: np.ndarray) -> np.ndarray:
        mean, std = self.stats[modality]
        return np.clip((seq - mean) / std, -8, 8).astype(np.float32)

    def state(self) -> dict:
        return {m: (mean.tolist(), std.tolist()) for m, (mean, std) in self.stats.items()}

    @classmethod
    def from_state(cls, state: dict) -> "Normalizer":
        return cls({m: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for m, (a, b) in state.items()})


# ------------------------------------------------------------------ one video

@dataclass
class Video:
    key: str
    duration: float                      # seconds
    seqs: dict                           # modality -> (T_m, D) on its grid, or None when missing
    quality: dict                        # modality -> (T_m,) per-step quality, or None
    rates: dict                          # modality -> grid rate (Hz); frame-level: the label rate
    cues: np.ndarray                     # (C,)
    present: np.ndarray                  # (M,) bool
    target: np.ndarray | None = None     # (k,) video-level; (T, k) frame-level, rows nobody annotated at the
    #                                      track's mark (Track.annotated)
    masks: dict = field(default_factory=dict)  # modality -> (T_m,) bool, False on steps without data (timed
    #                                            text's gaps); a modality absent here is real at every step

    @property
    def nbytes(self) -> int:
        arrays = list(self.seqs.values()) + list(self.quality.values()) + list(self.masks.values())
        return sum(a.nbytes for a in arrays if a is not None)


class Piece(NamedTuple):
    """What one batch row reads: a video's span [start, stop) in seconds (video-level) or
    grid steps (frame-level); `crop_seed` set (and start/stop None) for a random crop."""

    key: str
    start: float | None = None
    stop: float | None = None
    crop_seed: int | None = None


class VideoStore:
    """Reads, aligns and normalises videos on demand, keeping recent ones within a byte budget."""

    def __init__(self, release, streams: dict[str, list[Stream]], cfg: TrainConfig, frame_counts: dict | None = None,
                 text_timed: bool | None = None, timed_keys=None):
        """`streams`: resolved (solution.streams). `text_timed`: None decides from the cache:
        timed when any text entry of `timed_keys` (default: all these videos) has word times;
        training passes its training videos, so what the model is built for does not depend on
        the videos it will only predict. True or False forces it (a checkpoint's model was built
        for one or the other: False pools a timed transcript's words into one vector, their mean)."""
        self.release, self.track, self.cfg = release, release.track, cfg
        self.streams = streams
        self.modalities = tuple(m for m in MODALITIES if m in self.streams)
        # Whether text is on a time grid (the model's InputSpec.extra["text_timed"]); else one vector.
        self.text_timed = "text" in self.streams and (
            any(has_timed_entries(s, timed_keys) for s in self.streams["text"]) if text_timed is None
            else bool(text_timed))
        self.dims = {m: sum(s.dim for s in self.streams[m]) for m in self.modalities}
        self.frame_level = self.track.level == "frame"
        if cfg.grid not in ("own", "shared"):
            raise DataError(f"grid must be 'own' or 'shared', got {cfg.grid!r}")
        self.frame_counts = frame_counts or {}   # frame-level test videos: frames to predict
        self.normalizer: Normalizer | None = None
        self._cache: OrderedDict[str, Video] = OrderedDict()
        self._bytes = 0
        self._lengths: dict[str, float] = {}
        self._steps: dict[str, tuple[np.ndarray, int]] = {}  # frame-level: (label frame of each step, frames)
        self._labelled = set(self.release.labelled_keys())

    @classmethod
    def from_cache(cls, work, release, sources: dict, cfg: TrainConfig, **kwargs) -> "VideoStore":
        """A store over `sources` ({key: VideoSources}) reading the streams cfg.streams names
        (default: every cached stream that covers them)."""
        return cls(release, resolve_streams(work, sources, cfg.streams or None), cfg, **kwargs)

    # ---- settings shared with the model
    def rate(self, modality: str) -> float:
        if self.cfg.grid == "shared":
            return self.cfg.shared_rate
        return {"visual": self.cfg.visual_rate, "audio": self.cfg.audio_rate}.get(modality, self.cfg.shared_rate)

    def stream_keys(self) -> dict:
        """Which cache folders feed each modality (part of a run's settings)."""
        return stream_keys(self.streams)

    def entry_digest(self, keys) -> str:
        """A hash of the cache entries `keys` read: changes when any of them is re-extracted."""
        import hashlib

        h = hashlib.sha256()
        for key in sorted(keys):
            for m in self.modalities:
                for s in self.streams[m]:
                    h.update(f"{key}:{s.folder.name}:{s.entry_keys[key]};".encode())
        return h.hexdigest()[:16]

    def set_normalizer(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self._cache.clear()
        self._bytes = 0

    # ---- reading
    def _entry(self, stream: Stream, key: str) -> cache.Entry:
        entry = cache.read_entry(stream.folder, key, stream.entry_keys[key], stream.dim)
        if not entry.missing:
            path = cache.entry_path(stream.folder, key, stream.entry_keys[key])
            if entry.features.ndim != 2 or entry.features.shape[1] != stream.dim:
                raise DataError(f"{path}: features of shape {entry.features.shape} in a stream {stream.dim} wide; "
                                "delete the file and run python -m solution.features again")
            if not np.isfinite(entry.features).all():
                raise DataError(f"{path}: NaN or inf in the cached features; delete the file and extract it again")
            if entry.ends is not None and (entry.ends.shape != entry.times.shape or not np.isfinite(entry.ends).all()
                                           or not np.isfinite(entry.times).all() or (entry.ends < entry.times).any()):
                raise DataError(f"{path}: span ends do not match the rows' start times (shape {entry.ends.shape} "
                                f"for {entry.times.shape}, NaN, or an end before its start); delete the file and "
                                "extract it again")
        return entry

    def _label_grid(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float, int]:
        """Frame-level: (grid step times, the label frame of each step, the steps' targets or
        None, fps, label frames). Label frame k (0-based) is at k / fps; the media are read
        `label_delay` seconds earlier, since annotators react late."""
        fps = self.release.video_fps(key)
        target = None
        if key in self.frame_counts:
            n = self.frame_counts[key]
        else:
            target = self.release.video_targets(key)
            n = len(target)
        steps = frame_steps(n, fps, self.cfg.shared_rate)
        return steps / fps - self.cfg.label_delay, steps, None if target is None else target[steps], fps, n

    def _duration(self, entries: dict) -> float:
        """Seconds a video lasts by its timed streams (word times only when nothing else says)."""
        timed = [(s, e) for m in self.modalities if m != "text" for s, e in entries[m] if e.has_rows]
        known = [e.times[-1] + 1 / e.fps for s, e in timed if e.fps] + \
                [len(e.features) / KNOWN_RATES[s.kind] for s, e in timed if not e.fps and s.kind in KNOWN_RATES]
        spans = [float(e.ends.max()) for s, e in entries.get("text", []) if not e.missing and e.ends is not None
                 and len(e.ends)] if self.text_timed else []
        return max(known) if known else max([len(e.features) / FALLBACK_RATE for _, e in timed] + spans or [1.0])

    def load(self, key: str, normalise: bool = True, keep: bool = True) -> Video:
        """One video on the model's grid: each modality's streams aligned side by side (frames,
        word-timed text or one text vector), their quality, cues and, when labelled, targets."""
        if normalise and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        entries = {m: [(s, self._entry(s, key)) for s in self.streams[m]] for m in self.modalities}
        duration = self._duration(entries)
        label_times, target, steps, frames = None, None, None, 0
        if self.frame_level:
            label_times, steps, target, fps, frames = self._label_grid(key)
            duration = max(duration, frames / fps)
        elif key not in self.frame_counts and key in self._labelled:
            target = self.release.video_targets(key)
        seqs, quality, rates, cues, present, masks = {}, {}, {}, [], [], {}
        for m in self.modalities:
            have = any(e.has_rows for _, e in entries[m])
            cues += _cues(m, merged_quality(entries[m]), not have)
            present.append(have)
            untimed_text = m == "text" and not self.text_timed
            rates[m] = None if untimed_text or self.frame_level else self.rate(m)
            if not have:
                seqs[m] = quality[m] = None
            elif untimed_text:
                seqs[m], quality[m] = text_vector_steps(entries[m]), np.ones(1, np.float32)
            else:
                at = label_times if self.frame_level else grid_times(duration, rates[m])
                if m == "text":
                    seqs[m], masks[m] = hold_timed_text(entries[m], at)
                    quality[m] = masks[m].astype(np.float32)
                else:
                    seqs[m], quality[m] = align_frames(entries[m], at, duration)
        video = Video(key, float(duration), seqs, quality, rates, np.asarray(cues, np.float32),
                      np.asarray(present, bool), target, masks=masks)
        if self.frame_level:
            self._steps[key] = (steps, frames)
        self._lengths[key] = len(label_times) if self.frame_level else video.duration
        if normalise and self.normalizer is not None:
            video.seqs = {m: None if v is None else self.normalizer.apply(m, v) for m, v in video.seqs.items()}
            for m, mask in masks.items():
                video.seqs[m][~mask] = 0.0  # a gap is zeros (the mean) whatever the statistics
        if keep and normalise:
            self._remember(video)
        return video

    def _remember(self, video: Video) -> None:
        self._cache[video.key] = video
        self._bytes += video.nbytes
        budget = self.cfg.cache_mb * 2**20
        while self._bytes > budget and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.nbytes

    def text_vector(self, key: str) -> np.ndarray | None:
        """A video's text as one normalised vector: its one transcript vector, or the mean of
        the grid steps that hold a word (word-timed text); None without text."""
        if "text" not in self.modalities:
            return None
        video = self.load(key)
        seq = video.seqs.get("text")
        if seq is None:
            return None
        words = video.masks.get("text", np.ones(len(seq), bool))
        return seq[words].mean(0) if words.any() else None

    def check(self, keys) -> None:
        """Read every video once (nothing kept): a bad entry fails here, before any training."""
        for key in progress(keys, desc="checking features", unit="video", disable=len(keys) < 500, leave=False):
            self.load(key, normalise=False, keep=False)

    def length(self, key: str) -> float:
        """Seconds (video-level) or grid steps (frame-level) of a video."""
        if key not in self._lengths:
            self.load(key)
        return self._lengths[key]

    def label_steps(self, key: str) -> tuple[np.ndarray, int]:
        """Frame-level: (the label frame of each grid step, the video's label frames)."""
        if key not in self._steps:
            self.load(key)
        return self._steps[key]

    def window_steps(self, key: str) -> tuple[int, int]:
        """Frame-level: `window` and `hop` (in label frames) as grid steps of this video."""
        steps, frames = self.label_steps(key)
        per_frame = len(steps) / max(1, frames)
        return max(1, round(self.cfg.window * per_frame)), max(1, round(self.cfg.hop * per_frame))

    # ---- pieces of videos
    def piece(self, piece: Piece) -> dict:
        video = self.load(piece.key)
        start, stop = piece.start, piece.stop
        if piece.crop_seed is not None:
            if self.frame_level:
                raise ValueError("frame-level tracks train on windows, not crops")
            length = min(self.cfg.crop_seconds, video.duration)
            start = float(np.random.default_rng(piece.crop_seed).uniform(0, video.duration - length))
            stop = start + length
        item = {"key": piece.key, "cues": video.cues, "present": video.present, "seqs": {}, "quality": {}, "masks": {}}
        for m in self.modalities:
            seq = video.seqs[m]
            if seq is None or (m == "text" and not self.text_timed) or start is None:
                item["seqs"][m], item["quality"][m] = seq, video.quality[m]
                if seq is not None and m in video.masks:
                    item["masks"][m] = video.masks[m]
                continue
            if self.frame_level:
                a, b = int(start), int(stop)
            else:
                rate = video.rates[m]
                a = min(int(np.floor(start * rate + 1e-6)), len(seq) - 1)
                b = max(a + 1, min(len(seq), int(np.ceil(stop * rate - 1e-6))))
            item["seqs"][m], item["quality"][m] = seq[a:b], video.quality[m][a:b]
            if m in video.masks:
                item["masks"][m] = video.masks[m][a:b]
        if video.target is not None:
            if self.frame_level:
                a, b = (0, len(video.target)) if start is None else (int(start), int(stop))
                item["target"] = video.target[a:b]
                item["annotated"] = self.track.annotated(item["target"])
            else:
                item["target"] = video.target
        if self.frame_level:
            a, b = (0, int(self.length(piece.key))) if start is None else (int(start), min(int(stop), int(self.length(piece.key))))
            item["frames"] = b - a
        return item


# ------------------------------------------------------------------ batches

def collate(items: list[dict], modalities, dims, frame_level: bool, text_timed: bool = False,
            shared_grid: bool = False) -> dict:
    """Items -> padded tensors: <modality> (B, T, D), <modality>_mask and _quality (B, T),
    present (B, M), cues (B, C), keys; target (B, k) or (B, T, k) with target_mask (B, T)
    (each item's `annotated` frames, as its track marks them) and frame_mask (B, T) for
    frame-level tracks. Untimed text is (B, 1, D); timed text
    (`text_timed`) is a sequence like the others, its mask False on steps without a word.
    `shared_grid` (video-level, grid = "shared"): every timed modality is padded to one
    length, so step t is the same instant in all of them even where the longest piece of
    the batch lacks one (its face, voice or transcript missing)."""
    batch = {"keys": [it["key"] for it in items]}
    frames = max(it["frames"] for it in items) if frame_level else None
    timed = [m for m in modalities if m != "text" or text_timed]
    common = max([len(it["seqs"][m]) for it in items for m in timed if it["seqs"][m] is not None] or [1])
    for m in modalities:
        seqs = [it["seqs"][m] for it in items]
        on_frames = frame_level and m in timed
        longest = frames if on_frames else common if shared_grid and m in timed else \
            max([len(s) for s in seqs if s is not None] or [1])
        x = np.zeros((len(items), longest, dims[m]), np.float32)
        q = np.zeros((len(items), longest), np.float32)
        mask = np.zeros((len(items), longest), bool)
        for j, (seq, it) in enumerate(zip(seqs, items)):
            if seq is not None:
                x[j, :len(seq)] = seq
                q[j, :len(seq)] = it["quality"][m]
                steps = it.get("masks", {}).get(m)
                mask[j, :len(seq)] = True if steps is None else steps
        batch[m], batch[f"{m}_mask"], batch[f"{m}_quality"] = torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(q)
    batch["present"] = torch.from_numpy(np.stack([it["present"] for it in items]))
    batch["cues"] = torch.from_numpy(np.stack([it["cues"] for it in items]))
    if frame_level:
        frame_mask = np.zeros((len(items), frames), bool)
        for j, it in enumerate(items):
            frame_mask[j, :it["frames"]] = True
        batch["frame_mask"] = torch.from_numpy(frame_mask)
    if all("target" in it for it in items):
        if frame_level:
            k = items[0]["target"].shape[1]
            target = np.zeros((len(items), frames, k), np.float32)
            annotated = np.zeros((len(items), frames), bool)
            for j, it in enumerate(items):
                t = it["target"]
                target[j, :len(t)] = t
                annotated[j, :len(t)] = it["annotated"]
            batch["target"], batch["target_mask"] = torch.from_numpy(target), torch.from_numpy(annotated)
        else:
            batch["target"] = torch.from_numpy(np.stack([it["target"] for it in items]).astype(np.float32))
    return batch


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class _Pieces(torch.utils.data.Dataset):
    def __init__(self, store: VideoStore, pieces: list[Piece]):
        self.store, self.pieces = store, pieces

    def __len__(self):
        return len(self.pieces)

    def __getitem__(self, index):
        return self.store.piece(self.pieces[index])


def batch_indices(n: int, size: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Batches of positions 0..n-1 (shuffled when `rng` is given). A tiny last training batch
    gives a meaningless batch correlation, so it joins the previous one."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    cuts = list(range(0, n, size))
    if rng is not None and len(cuts) > 1 and n - cuts[-1] < max(8, size // 4):
        cuts.pop()
    return [order[start:(cuts[i + 1] if i + 1 < len(cuts) else n)].tolist() for i, start in enumerate(cuts)]


def loader(store: VideoStore, pieces: list[Piece], batch_size: int, rng: np.random.Generator | None = None):
    """A DataLoader over `pieces`; shuffled batches when `rng` is given."""
    return torch.utils.data.DataLoader(
        _Pieces(store, pieces), batch_sampler=batch_indices(len(pieces), batch_size, rng),
        collate_fn=lambda items: collate(items, store.modalities, store.dims, store.frame_level, store.text_timed,
                                         store.cfg.grid == "shared"),
        num_workers=store.cfg.loader_workers, persistent_workers=False)


def training_pieces(store: VideoStore, keys: list[str], rng: np.random.Generator) -> list[Piece]:
    """One epoch: a random crop of every video (video-level), or every video cut into windows
    from a random offset (frame-level)."""
    if not store.frame_level:
        return [Piece(k, crop_seed=int(s)) for k, s in zip(keys, rng.integers(0, 2**31, len(keys)))]
    pieces = []
    for k in keys:
        n = int(store.length(k))
        window, hop = store.window_steps(k)
        pieces += [Piece(k, s, min(n, s + window)) for s in window_starts(n, window, hop, int(rng.integers(0, hop)))]
    return pieces


def prediction_pieces(store: VideoStore, keys: list[str]) -> list[Piece]:
    """Every video whole: overlapping chunks (video-level) or windows (frame-level)."""
    pieces = []
    for k in keys:
        if store.frame_level:
            n = int(store.length(k))
            window, hop = store.window_steps(k)
            pieces += [Piece(k, s, min(n, s + window)) for s in window_starts(n, window, hop)]
        else:
            pieces += [Piece(k, a, b) for a, b in chunk_spans(store.length(k), store.cfg.crop_seconds)]
    return pieces


def frame_steps(frames: int, fps: float, rate: float) -> np.ndarray:
    """The label frames (0-based) a frame-level model sees: every frame when `rate` is 0 or at
    least `fps`, else the frame nearest each 1/rate seconds (labels change slowly; the frames
    between are interpolated at prediction)."""
    if rate <= 0 or rate >= fps:
        return np.arange(frames)
    picked = np.round(np.arange(0, frames / fps, 1 / rate) * fps).astype(int)
    return np.unique(picked[picked < frames])


def to_frames(values: np.ndarray, steps: np.ndarray, frames: int) -> np.ndarray:
    """Values (len(steps), k) at label frames `steps` -> (frames, k), linear in between, held
    beyond the first and last step."""
    if len(steps) == frames:
        return values
    at = np.arange(frames)
    return np.stack([np.interp(at, steps, values[:, j]) for j in range(values.shape[1])], 1)


def gather(store: VideoStore, pieces: list[Piece], outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-piece predictions -> one per video: chunks averaged by their length (video-level);
    frame-level: overlapping windows averaged per grid step, then carried to every label
    frame by linear interpolation between steps (one row per frame, in order)."""
    by_key: dict[str, list] = {}
    for piece, out in zip(pieces, outputs):
        by_key.setdefault(piece.key, []).append((piece, out))
    result = {}
    for key, parts in by_key.items():
        if store.frame_level:
            on_steps = stitch(int(store.length(key)), [(int(p.start), o[: int(p.stop) - int(p.start)]) for p, o in parts])
            steps, frames = store.label_steps(key)
            result[key] = to_frames(on_steps, steps, frames)
        else:
            weights = np.array([(p.stop - p.start) if p.start is not None else 1.0 for p, _ in parts])
            result[key] = np.average(np.stack([o for _, o in parts]), axis=0, weights=weights)
    return result
