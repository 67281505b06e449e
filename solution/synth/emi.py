"""The EMI release family's generator (Hume-Vidmimic2 layout), drawn from the shared world.

Each subject mimics seed clips: an emotion profile (1-3 dominant of the six EMI_TARGETS) with
a time course of bursts; the clip's intensities, scaled by how well the subject mimics, drive
the face's actions and the voice's controls over time, and transcripts choose words by
emotion (word-timed ASR JSON for a share, `timed_transcripts`). Labels are self-reports:
noisy, biased per subject, averaged over 3-6 raters (k/N fractions). Written: raw/, audio/,
transcripts/, the stand-ins vit/ and wav2vec2/, the split CSVs, test_split.csv,
private/test_labels.csv, private/clean_intensities.csv, metadata.csv; the ceiling is
Pearson's (the track's metric).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.media import write_audio, write_video
from solution.metrics import pearson_per_dim
from solution.synth.world import (ACTIONS, A, Config, bump, check_settings, corrupt_audio, draw_blinks,
                                  draw_corruptions, draw_head_shift, draw_visibility, make_subject, render_faces,
                                  run_videos, smooth_noise, subject_splits, subject_style, synth_voice, video_frames,
                                  vit_standin, wav2vec2_standin, write_latents)
from solution.tracks.emi import EMI_TARGETS
from solution.transcripts import Transcript

# The demo's sizes (what run_all.sh trains on without DATA_DIR): a smoke test through every stage and
# model that ends within ten minutes of stages on 2 CPU cores (bench/README.md, "End-to-end time of
# the demo"). Real releases are far larger; nothing else is sized by these.
DEFAULTS = dict(videos=96, subjects=16, seconds=4.0, length_spread=0.5, fps=15.0, size=112, label_noise=0.12)


def prepare(settings: dict) -> None:
    """Settings that follow from others: none for EMI (subjects are drawn apart from videos)."""


def check(cfg: Config) -> None:
    """This family's checks of the settings, and the world's, in the order they have always run."""
    if cfg.other_fps or cfg.long_seconds:
        raise SystemExit("[synth] --other-fps and --long-seconds are VA settings")
    check_settings(cfg)


# How strongly each EMI emotion moves each facial action (rows follow EMI_TARGETS).
EMOTION_TO_ACTION = np.zeros((6, len(ACTIONS)))
for row, weights in enumerate([
    {"brow_raise": 0.6, "eye_wide": 0.5, "smile": 0.3, "mouth_open": 0.2},       # Admiration
    {"smile": 0.8, "mouth_open": 0.6, "eye_squint": 0.6},                         # Amusement
    {"brow_furrow": 0.8, "lip_press": 0.8, "eye_squint": 0.3},                    # Determination
    {"brow_inner_up": 0.9, "frown": 0.7, "head_tilt": 0.6, "brow_furrow": 0.3},   # Empathic Pain
    {"mouth_open": 0.7, "brow_raise": 0.6, "eye_wide": 0.6, "smile": 0.4},        # Excitement
    {"smile": 1.0, "eye_squint": 0.4, "mouth_open": 0.2},                         # Joy
]):
    for name, weight in weights.items():
        EMOTION_TO_ACTION[row, A[name]] = weight

EMOTION_WORDS = (
    ("amazing", "impressive", "wonderful", "brilliant", "respect", "incredible", "talented",
     "admire", "outstanding", "remarkable"),
    ("funny", "hilarious", "haha", "ridiculous", "silly", "joke", "laughing", "comedy",
     "giggle", "lol"),
    ("must", "focus", "never", "goal", "push", "fight", "commit", "achieve", "persist",
     "determined"),
    ("sorry", "hurts", "painful", "sad", "poor", "tragic", "suffering", "heartbreaking",
     "loss", "cry"),
    ("wow", "yes", "awesome", "thrilled", "epic", "huge", "pumped", "unbelievable", "energy",
     "cannot-wait"),
    ("happy", "love", "delighted", "glad", "smile", "sunshine", "cheerful", "lovely",
     "grateful", "joy"),
)
FILLER_WORDS = ("i", "think", "this", "is", "the", "really", "so", "and", "that", "just",
                "you", "know", "it", "was", "like", "well", "okay", "we", "they", "then")


@dataclass
class EmiVideo:
    vid: int
    subject: int
    split: str
    clip: int
    mimicry: float
    frames: int


def _seed_clips(rng, n: int, onset_spread: float = 0.5, hold_scale: float = 1.0):
    """Each seed clip has an emotion profile (1-3 dominant emotions) and a timing per emotion:
    onsets as fractions of the video's length, rise, hold and fall in seconds at the mean
    length. Each mimicry video has its own length and follows the clip's time course
    stretched to it, so a burst covers the same share of a short and a long video and
    pooled statistics stay comparable across lengths."""
    clips = []
    for _ in range(n):
        profile = rng.uniform(0, 0.15, 6)
        dominant = rng.choice(6, size=rng.integers(1, 4), replace=False)
        profile[dominant] = rng.uniform(0.45, 1.0, len(dominant))
        onset = 0.05 + (rng.uniform(0.05, 0.55, 6) - 0.05) * onset_spread / 0.5
        rise, hold, fall = (rng.uniform(0.3, 1.2, 6), hold_scale * rng.uniform(0.6, 2.0, 6), rng.uniform(0.4, 1.3, 6))
        clips.append({"profile": profile, "timing": np.stack([onset, rise, hold, fall], 1)})
    return clips


def emi_clean_intensity(clip: dict, mimicry: float, rng) -> np.ndarray:
    return np.clip(mimicry * clip["profile"] + rng.normal(0, 0.04, 6), 0, 1)


def _emi_video(job):
    cfg, video, subject, clip, out = job
    cfg = Config(**cfg)
    style = subject_style(cfg, subject, video.subject, EMOTION_TO_ACTION)
    rng = np.random.default_rng([cfg.seed, 1, video.vid])
    T = video.frames
    seconds = T / cfg.fps
    t = np.arange(T) / cfg.fps
    z = emi_clean_intensity(clip, video.mimicry, rng)
    stretch = seconds / cfg.seconds
    timing = clip["timing"] * [seconds, stretch, stretch, stretch]
    timing = timing + rng.normal(0, 0.25, timing.shape) * [1, 0.1, 0.1, 0.1]
    envelope = np.stack([bump(t, *np.maximum(row, [0, 0.2, 0.2, 0.2])) for row in timing], 1)  # (T, 6)
    drive = style.drive(envelope * z)                                       # (T, 6)
    talk = np.clip(smooth_noise(rng, T, 0.12, 2), 0, None)
    actions = subject.neutral + 1.6 * style.gain * drive @ style.actions
    actions[:, A["mouth_open"]] += talk
    actions += smooth_noise(rng, T * len(ACTIONS), 0.02, 3).reshape(T, -1)
    amusement_laugh = 0.5 - 0.5 * np.cos(2 * np.pi * 4.5 * t)
    actions[:, A["mouth_open"]] += 0.4 * drive[:, 1] * amusement_laugh
    actions = np.clip(actions, -0.3, 1.4)

    flags = draw_corruptions(rng, asdict(cfg))
    present, occluder = draw_visibility(rng, T, flags["face"])
    frames = render_faces(actions, subject, cfg.size, rng, present, occluder, draw_blinks(rng, T, cfg.fps),
                          draw_head_shift(rng, T, 0.006), rng.uniform(0.75, 1.15), rng.uniform(2, 7))

    # The voice follows the drive as the face does; voice_gain and gain_spread scale it (at their
    # defaults, not at all: the voice's own level is the subject's loudness).
    heard = drive if (cfg.voice_gain == 1 and style.gain == subject.expressivity) else \
        drive * cfg.voice_gain * style.gain / subject.expressivity
    adm, amu, det, pain, exc, joy = heard.T
    controls = {
        "f0": 1 + 0.12 * adm + 0.2 * amu - 0.05 * det - 0.12 * pain + 0.3 * exc + 0.2 * joy,
        "energy": np.clip(0.55 + 0.2 * amu + 0.25 * det - 0.2 * pain + 0.35 * exc + 0.1 * joy, 0.1, 1.2),
        "rate": 1 + 0.15 * amu + 0.1 * det - 0.3 * pain + 0.4 * exc,
        "tilt": 1.4 + 0.2 * adm - 0.5 * det + 0.5 * pain - 0.3 * exc,
        "breath": np.clip(0.1 + 0.25 * adm + 0.5 * pain, 0, 0.9),
        "laugh": np.clip(1.2 * amu - 0.25, 0, 0.9),
    }
    voice = corrupt_audio(synth_voice(controls, subject, seconds, cfg.fps, rng), flags["audio"], rng)

    stem = f"{video.vid:05d}"
    if cfg.media:
        write_video(out / "raw" / f"{stem}.mp4", frames, cfg.fps)
    if flags["audio"] != "missing" and cfg.media:
        write_audio(out / "audio" / f"{stem}.mp3", voice)
    if flags["transcript"] == "ok" and cfg.media:
        fillers = rng.choice(FILLER_WORDS, size=int(rng.poisson(8 * subject.verbosity)) + 3)
        words = [(str(w), -1) for w in fillers]          # (word, the emotion whose burst it is spoken in)
        for e in range(6):
            for _ in range(rng.poisson(cfg.word_rate * z[e] * subject.verbosity)):
                source = e if rng.random() > 0.15 else int(rng.integers(0, 6))
                words.append((str(rng.choice(EMOTION_WORDS[source])), e))
        rng.shuffle(words)  # the same permutation as shuffling the words alone: the .txt bytes do not change
        timing_rng = np.random.default_rng([cfg.seed, 4, video.vid])  # its own stream: the rest stays as it was
        if timing_rng.random() < cfg.timed_transcripts:
            flags["timed"] = True
            transcript = timed_words(words, timing, seconds, timing_rng)
            form = "chunks" if timing_rng.random() < 0.5 else "words"
            fileio.write_json(out / "transcripts" / f"{stem}.json", transcript.to_json(form))
        else:
            fileio.write_text(out / "transcripts" / f"{stem}.txt", " ".join(w for w, _ in words) + "\n")
    if cfg.standins:
        fileio.write_pickle(out / "vit" / f"{stem}.pkl",
                            vit_standin(actions, present, occluder, subject, cfg.vit_dim, cfg.seed, rng))
        fileio.write_pickle(out / "wav2vec2" / f"{stem}.pkl",
                            wav2vec2_standin(voice, controls, cfg.fps, flags["audio"], subject,
                                             cfg.wav2vec2_dim, cfg.seed, rng))
    if cfg.latents:  # the face's drive (expressivity included) and the voice's, before actions and controls
        write_latents(out, stem, style.gain * drive, heard, cfg.fps)
    return video.vid, z, flags


def timed_words(words: list[tuple[str, int]], timing: np.ndarray, seconds: float, rng):
    """Word times for a transcript, as an ASR would give them: (word, emotion) pairs -> a
    transcripts.Transcript in time order. A word tagged with emotion e is spoken inside e's burst
    (`timing` rows: onset, rise, hold, fall, in seconds), a filler (-1) anywhere; each lasts
    about 0.15 s + 0.05 s a letter, words never overlap and all fit in [0, seconds)."""
    if not words:
        return Transcript("", [], np.zeros(0), np.zeros(0))
    lengths = np.array([0.15 + 0.05 * len(w) for w, _ in words])
    lengths *= min(1.0, 0.8 * seconds / lengths.sum())          # crowded: everyone speaks faster
    wanted = np.empty(len(words))
    for i, (_, e) in enumerate(words):
        if e < 0:
            low, high = 0.0, seconds
        else:
            onset, rise, hold, fall = np.maximum(timing[e], [0, 0.2, 0.2, 0.2])
            low, high = max(0.0, onset + 0.5 * rise), min(seconds, onset + rise + hold + 0.5 * fall)
            if high <= low:
                low, high = 0.0, seconds
        wanted[i] = rng.uniform(low, high)                       # the word's middle
    order = np.argsort(wanted, kind="stable")
    gap = 0.2 * seconds / len(words) / 4
    starts, ends, cursor = np.empty(len(words)), np.empty(len(words)), 0.0
    for i in order:                                              # forwards: no overlap
        starts[i] = max(cursor, wanted[i] - lengths[i] / 2)
        ends[i] = starts[i] + lengths[i]
        cursor = ends[i] + gap
    limit = seconds - 1e-3
    for i in order[::-1]:                                        # backwards: inside the video
        ends[i] = min(ends[i], limit)
        starts[i] = min(starts[i], ends[i] - lengths[i])
        limit = starts[i] - gap
    starts, ends = np.round(starts[order], 3), np.round(ends[order], 3)
    text = [words[i][0] for i in order]
    return Transcript(" ".join(text), text, starts, ends)


def emi_label(z: np.ndarray, bias: np.ndarray, noise: float, rng) -> np.ndarray:
    """Self-reports: noisy, biased, averaged over N raters, so values are k/N fractions."""
    raters = rng.choice([3, 4, 5, 6])
    return np.round(np.clip(z + bias + rng.normal(0, noise, z.shape), 0, 1) * raters) / raters


def generate(cfg: Config, out: Path, workers: int) -> dict:
    """Write an EMI release to `out`; returns the ceiling (the Pearson of the clean intensities per split)."""
    rng = np.random.default_rng([cfg.seed, 0])
    subjects = [make_subject(rng, 6) for _ in range(cfg.subjects)]
    subject_split = subject_splits(rng, cfg.subjects)
    clips = _seed_clips(rng, max(4, cfg.videos // 6), cfg.onset_spread, cfg.hold_scale)
    owners = np.concatenate([np.arange(cfg.subjects), rng.integers(0, cfg.subjects, max(0, cfg.videos - cfg.subjects))])[: cfg.videos]
    ids = np.sort(rng.choice(np.arange(1, cfg.videos * 3 + 1), size=cfg.videos, replace=False))
    videos = [EmiVideo(int(vid), int(s), str(subject_split[s]), int(rng.integers(len(clips))),
                       float(rng.uniform(0.35, 1.0)), int(T))
              for vid, s, T in zip(ids, rng.permutation(owners), video_frames(cfg, cfg.videos))]
    jobs = [(asdict(cfg), v, subjects[v.subject], clips[v.clip], out) for v in videos]
    results = run_videos(_emi_video, jobs, workers, "EMI videos")

    label_rng = np.random.default_rng([cfg.seed, 2])
    rows, clean, meta = [], [], []
    for video, (vid, z, flags) in zip(videos, results):
        bias = subject_style(cfg, subjects[video.subject], video.subject, EMOTION_TO_ACTION).bias
        rows.append(emi_label(z, bias, cfg.label_noise, label_rng))
        clean.append(z)
        timed = flags.pop("timed", False)
        if cfg.timed_transcripts:  # the column only when asked for: the default metadata.csv is as it was
            flags["transcript_timed"] = bool(timed)
        meta.append({"Filename": f"{vid:05d}", "split": video.split, "subject": f"S{video.subject:03d}",
                     "seed_clip": video.clip, "mimicry": round(video.mimicry, 4), **flags,
                     "seconds": round(video.frames / cfg.fps, 4), "frames": video.frames, "fps": cfg.fps})
    labels = pd.DataFrame(np.array(rows), columns=list(EMI_TARGETS))
    labels.insert(0, "Filename", [f"{v.vid:05d}" for v in videos])
    clean = pd.DataFrame(np.array(clean), columns=list(EMI_TARGETS))
    clean.insert(0, "Filename", labels["Filename"])
    split = np.array([v.split for v in videos])
    for name, file in (("train", "train_split.csv"), ("valid", "valid_split.csv")):
        fileio.write_csv(out / file, labels[split == name])
    fileio.write_csv(out / "test_split.csv", labels.loc[split == "test", ["Filename"]])
    fileio.write_csv(out / "private" / "test_labels.csv", labels[split == "test"])
    fileio.write_csv(out / "private" / "clean_intensities.csv", clean)
    fileio.write_csv(out / "metadata.csv", pd.DataFrame(meta))

    ceiling = {}
    for name in ("train", "valid", "test", "labelled"):
        keep = split != "test" if name == "labelled" else split == name  # labelled: pooled, as out of fold
        if keep.sum() >= 2:
            r = pearson_per_dim(clean.iloc[keep, 1:].to_numpy(), labels.iloc[keep, 1:].to_numpy())
            ceiling[name] = {"metric": "pearson", "per_dim": dict(zip(EMI_TARGETS, np.round(r, 4).tolist())),
                             "mean": round(float(r.mean()), 4), "videos": int(keep.sum())}
    return ceiling
