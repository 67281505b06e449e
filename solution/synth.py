"""python -m solution.synth: a synthetic release in the official layouts, with real media.

Nobody here has Hume-Vidmimic2 or Aff-Wild2, so the demo data is generated. It is built to
be a fair benchmark rather than a toy:

* labels drive what is seen and heard over time: facial actions rise and fall in bursts
  (smile, mouth opening, brow raise/furrow, sad inner brows, lip press, eye widening or
  squinting, head tilt), the voice's pitch, loudness, syllable rate, spectral tilt,
  breathiness and laughter follow the same bursts, and transcripts choose words by emotion;
* every subject has a face, a voice, an expressivity and a personal rating bias, and the
  splits are disjoint in subjects, so folds must be grouped by subject to be honest;
* videos differ in length (spread around the mean `--seconds`), so padding and masking
  downstream meet ragged sequences, as they will on the real releases;
* some videos have an occluded or missing face, noisy, silent or missing audio, or no
  transcript, recorded in metadata.csv, and the organizer feature stand-ins degrade with
  the media they are computed from;
* labels are noisy k/N fractions; ceiling.json holds the score a perfect model of the clean
  intensities would reach on each split;
* with `--timed-transcripts SHARE` (EMI; default 0), that share of the transcripts is written
  as word-timed ASR JSON (`transcripts/<id>.json`, in the transformers pipeline's `chunks`
  form or the whisperX `words` form, drawn per video) instead of `.txt`: fillers spread over
  the video, each emotion's words spoken inside that emotion's burst;
* with `--set latents=true` (default off), the generator's clean latent streams beside the
  release, for every video: `latent_face/<video>.pkl` and `latent_voice/<video>.pkl`, per
  video frame, what the emotions drive on the face and in the voice before rendering,
  extraction, corruption and feature noise (write_latents; a headroom study trains on them
  with `--organizer latent_face,latent_voice`, docs/synthetic.md).

Every random draw for a video comes from (seed, video id), so the same seed writes the same
bytes whatever the number of worker processes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from solution import fileio
from solution.layouts import LATENT_FOLDERS
from solution.media import SAMPLE_RATE, write_audio, write_video
from solution.metrics import ccc_per_dim, pearson_per_dim
from solution.progress import progress
from solution.tracks import EMI_TARGETS, VA_UNANNOTATED

ACTIONS = ("smile", "mouth_open", "brow_raise", "brow_furrow", "brow_inner_up",
           "lip_press", "eye_wide", "eye_squint", "head_tilt", "frown")
A = {name: i for i, name in enumerate(ACTIONS)}

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


# ============================================================== subjects and rendering

@dataclass
class Subject:
    skin: np.ndarray
    hair: np.ndarray
    background: np.ndarray
    face_w: float
    face_h: float
    eye_gap: float
    neutral: np.ndarray      # resting offset of each facial action
    expressivity: float
    f0: float                # voice base pitch, Hz
    formant: float           # vocal tract scale
    rate: float              # syllables per second at rest
    loudness: float
    verbosity: float
    bias: np.ndarray         # personal rating bias per target


def make_subject(rng: np.random.Generator, n_targets: int) -> Subject:
    return Subject(
        skin=np.clip(np.array([250, 215, 185]) + rng.uniform(0, 1) * np.array([-150, -150, -140])
                     + rng.normal(0, 8, 3), 0, 255),
        hair=rng.uniform(10, 120, 3),
        background=rng.uniform(40, 220, 3),
        face_w=rng.uniform(0.26, 0.33), face_h=rng.uniform(0.34, 0.41),
        eye_gap=rng.uniform(0.085, 0.11),
        neutral=rng.normal(0, 0.08, len(ACTIONS)),
        expressivity=rng.uniform(0.6, 1.4),
        f0=float(np.exp(rng.uniform(np.log(95), np.log(230)))),
        formant=rng.uniform(0.85, 1.18), rate=rng.uniform(3.2, 5.0),
        loudness=rng.uniform(0.5, 1.0), verbosity=rng.uniform(0.6, 1.5),
        bias=rng.normal(0, 0.07, n_targets),
    )


def smooth_noise(rng, n: int, scale: float, width: int) -> np.ndarray:
    """Gaussian noise low-passed by a moving average of `width` samples."""
    raw = rng.normal(0, 1, n + width)
    kernel = np.ones(width) / np.sqrt(width)
    return scale * np.convolve(raw, kernel, mode="valid")[:n]


def bump(t: np.ndarray, onset: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """A raised-cosine burst: 0 before onset, rises to 1, holds, falls back to 0."""
    up = np.clip((t - onset) / rise, 0, 1)
    down = np.clip((t - onset - rise - hold) / fall, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * up) - (0.5 - 0.5 * np.cos(np.pi * down))


def _segment_distance(u, v, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    h = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
    return np.hypot(u - x0 - h * dx, v - y0 - h * dy)


def render_faces(actions: np.ndarray, subject: Subject, size: int, rng: np.random.Generator,
                 present: np.ndarray, occluder: np.ndarray, blink: np.ndarray,
                 shift: np.ndarray, light: float, noise: float) -> np.ndarray:
    """Draw one frame per row of `actions` (T, len(ACTIONS)) -> uint8 (T, size, size, 3).

    `present` (T,) says whether the face is in view; `occluder` (T,) is 0 none, 1 a hand over
    the mouth, 2 a hand over the eyes; `shift` (T, 2) moves the head.
    """
    T = len(actions)
    col = lambda name: actions[:, A[name]][:, None, None]  # noqa: E731
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx = 0.5 + shift[:, 0][:, None, None]
    cy = 0.52 + shift[:, 1][:, None, None]
    theta = (0.3 * col("head_tilt") + 0.03 * shift[:, :1, None] * 10)
    cos, sin = np.cos(theta), np.sin(theta)
    u = cos * (xx - cx) + sin * (yy - cy)
    v = -sin * (xx - cx) + cos * (yy - cy)

    img = np.empty((T, size, size, 3), np.float32)
    img[:] = subject.background * (0.85 + 0.3 * yy[..., None])
    fw, fh = subject.face_w, subject.face_h
    face = (u / fw) ** 2 + (v / fh) ** 2 <= 1
    hair = ((u / (fw * 1.08)) ** 2 + ((v + 0.02) / (fh * 1.05)) ** 2 <= 1) & (v < -fh * 0.55)
    layers = [(hair, subject.hair), (face & ~hair, subject.skin)]

    eye_h = 0.028 * np.clip(1 + 0.9 * col("eye_wide") - 0.6 * col("eye_squint"), 0.15, 2.2)
    eye_h = eye_h * (1 - 0.9 * blink[:, None, None])
    brow_lift = -0.07 * col("brow_raise") + 0.04 * col("brow_furrow")
    for side in (-1, 1):
        ex = side * subject.eye_gap
        eye = ((u - ex) / 0.058) ** 2 + ((v + 0.07) / eye_h) ** 2 <= 1
        pupil = eye & ((u - ex) ** 2 + (v + 0.07) ** 2 <= 0.018 ** 2)
        inner_x = side * (0.03 - 0.015 * col("brow_furrow"))
        inner_y = -0.14 + brow_lift - 0.06 * col("brow_inner_up")
        outer_y = -0.15 + brow_lift + 0.01 * col("brow_inner_up")
        brow = _segment_distance(u, v, inner_x, inner_y, side * 0.14, outer_y) <= 0.012
        layers += [(eye, np.array([245, 245, 245])), (pupil, np.array([30, 20, 15])),
                   (brow, subject.hair * 0.7)]
    nose = (u / 0.025) ** 2 + ((v - 0.04) / 0.05) ** 2 <= 1
    layers.append((nose, subject.skin * 0.82))

    mouth_w = 0.09 * (1 + 0.4 * col("smile") - 0.3 * col("lip_press"))
    s = np.clip((u / mouth_w) ** 2, 0, 1)
    inside = np.abs(u) < mouth_w
    centre = 0.18 - 0.08 * (col("smile") - col("frown")) * (1 - s - 0.4)
    opening = 0.07 * np.clip(col("mouth_open"), 0, 1.3) * (1 - s)
    lip = 0.004 + 0.013 * np.clip(1 - 0.7 * col("lip_press"), 0.1, 1.2)
    lips = inside & (np.abs(v - centre) <= opening + lip)
    cavity = inside & (np.abs(v - centre) <= opening)
    layers += [(lips, np.array([170, 60, 70])), (cavity, np.array([60, 15, 25]))]

    for mask, colour in layers:
        mask = mask & present[:, None, None]
        img[mask] = colour
    hand = np.array([200, 150, 120])
    lower = (np.abs(xx - cx) < 0.25) & (yy > cy + 0.06) & (yy < cy + 0.34)
    upper = (np.abs(xx - cx) < 0.3) & (yy > cy - 0.2) & (yy < cy + 0.0)
    img[lower & (occluder == 1)[:, None, None]] = hand
    img[upper & (occluder == 2)[:, None, None]] = hand
    img = img * light + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# ============================================================== voice

def synth_voice(controls: dict, subject: Subject, seconds: float, fps: float,
                rng: np.random.Generator) -> np.ndarray:
    """Speech-like audio from per-frame controls (arrays at the video rate):
    f0 (multiplier), energy, rate (multiplier), tilt, breath, laugh."""
    n = int(round(seconds * SAMPLE_RATE))
    t_frames = np.arange(len(controls["f0"])) / fps
    t = np.arange(n) / SAMPLE_RATE
    c = {k: np.interp(t, t_frames, v) for k, v in controls.items()}
    pauses = (smooth_noise(rng, n, 1.0, 8000) > -0.5).astype(np.float32)
    pauses = np.convolve(pauses, np.ones(800) / 800, mode="same")

    f0 = subject.f0 * c["f0"] * (1 + 0.04 * np.sin(2 * np.pi * 0.7 * t) + smooth_noise(rng, n, 0.02, 400))
    f0 = f0 * (1 + 0.5 * c["laugh"])
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = np.zeros(n)
    for k in range(1, 13):
        voiced += np.sin(k * phase) * k ** (-c["tilt"])
    voiced /= np.std(voiced) + 1e-9
    breath_noise = rng.normal(0, 1, n)

    syllable_rate = subject.rate * c["rate"]
    syllables = (0.5 - 0.5 * np.cos(2 * np.pi * np.cumsum(syllable_rate) / SAMPLE_RATE)) ** 1.5
    laugh_gate = (0.5 - 0.5 * np.cos(2 * np.pi * 5.0 * t)) ** 3
    gate = (1 - c["laugh"]) * syllables * pauses + c["laugh"] * laugh_gate
    source = gate * ((1 - c["breath"]) * voiced + c["breath"] * 1.5 * breath_noise)

    out = 0.3 * source
    for freq, bandwidth, gain in ((650, 110, 1.0), (1700, 160, 0.6), (2600, 220, 0.3)):
        f = freq * subject.formant
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        a = [1, -2 * r * np.cos(2 * np.pi * f / SAMPLE_RATE), r * r]
        out = out + gain * (1 - r) * lfilter([1], a, source)
    # Normalise the timbre first, so that the energy control survives as real loudness.
    out = out / (np.abs(out).max() + 1e-9)
    return (subject.loudness * 0.5 * c["energy"] * out).astype(np.float32)


def corrupt_audio(samples: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    floor = rng.normal(0, 0.002, samples.shape)
    if kind == "silent":
        return (0.0005 * rng.normal(0, 1, samples.shape)).astype(np.float32)
    if kind == "noisy":
        snr_db = rng.uniform(-6, 3)
        hiss = smooth_noise(rng, len(samples), 1.0, 3) + rng.normal(0, 1, len(samples))
        hiss *= np.sqrt(np.mean(samples ** 2) / (np.mean(hiss ** 2) * 10 ** (snr_db / 10)))
        mixed = samples + hiss
        return (0.6 * mixed / (np.abs(mixed).max() + 1e-9)).astype(np.float32)
    return (samples + floor).astype(np.float32)


# ============================================================== organizer feature stand-ins

def _feature_net(seed: int, n_in: int, dim: int, salt: int, hidden: int = 64):
    """A fixed random two-layer network, the same for every video of a release: a narrow
    non-linear code spread over `dim` redundant output dimensions, as a real embedding is."""
    rng = np.random.default_rng([seed, salt])
    return (rng.normal(0, 1.5 / np.sqrt(n_in), (n_in, hidden)), rng.normal(0, 0.5, hidden),
            rng.normal(0, 1 / np.sqrt(hidden), (hidden, dim)))


def _embed(inputs: np.ndarray, net, noise: float, rng) -> np.ndarray:
    w1, b1, w2 = net
    out = np.tanh(inputs @ w1 + b1) @ w2
    return (out + noise * rng.normal(0, 1, out.shape)).astype(np.float32)


def _nuisance(rng, T: int, n: int, width: int) -> np.ndarray:
    """What a real embedding also encodes and emotion does not explain (pose, light, room,
    channel): per video an offset, plus slow drift over time."""
    return rng.normal(0, 0.7, n)[None] + np.stack([smooth_noise(rng, T, 0.5, width) for _ in range(n)], 1)


STANDIN_NOISE = 0.25
MOUTH = [A["smile"], A["mouth_open"], A["lip_press"], A["frown"]]
EYES = [A["eye_wide"], A["eye_squint"], A["brow_raise"], A["brow_furrow"], A["brow_inner_up"]]


def vit_standin(actions, present, occluder, subject: Subject, dim: int, seed: int, rng):
    """Stand-in for the organizers' per-frame ViT features: a fixed random non-linear map of
    what the camera shows: the face's visible actions and identity, the background, a hand
    where one covers the face (in a pose of its own per video), and nuisance (pose, light)
    that has nothing to do with emotion; plus noise. A covered or absent face shows only as
    what the features lose (the hidden actions, the identity), never as a column that says
    which frames are bad: a model has to learn that from the features themselves."""
    T = len(actions)
    seen = (actions - 0.15) * present[:, None]
    seen[np.ix_(occluder == 1, MOUTH)] = 0
    seen[np.ix_(occluder == 2, EYES)] = 0
    identity = np.concatenate([subject.skin / 255 - 0.55, subject.hair / 255 - 0.25, [3 * subject.face_w - 0.9]])
    hand = (occluder > 0)[:, None] * rng.normal(0, 0.5, 4)[None]       # where and how the hand is: per video
    inputs = np.concatenate([2 * seen, present[:, None] * identity[None],
                             np.repeat((subject.background / 255 - 0.5)[None], T, 0), hand,
                             _nuisance(rng, T, 8, 9)], 1)
    return _embed(inputs, _feature_net(seed, inputs.shape[1], dim, 1), STANDIN_NOISE, rng)


# How much of the voice a wav2vec2 embedding still hears under each audio condition.
AUDIO_QUALITY = {"ok": 1.0, "noisy": 0.15, "silent": 0.0, "missing": 0.0}


def wav2vec2_standin(samples, controls, fps, audio_kind, subject: Subject, dim, seed, rng):
    """Stand-in for the organizers' wav2vec2 features at 50 Hz: a fixed random non-linear
    map of the measured loudness, the voice controls and the speaker, each blurred by the
    audio's quality (AUDIO_QUALITY), and of channel nuisance; plus noise. Silent or missing
    audio carries no voice at all: no controls, no speaker, and the loudness of what is
    heard (nothing, for a missing track)."""
    hop = SAMPLE_RATE // 50
    n = len(samples) // hop
    heard = samples if audio_kind != "missing" else np.zeros_like(samples)
    frames = heard[: n * hop].reshape(n, hop)
    loudness = (np.log(np.mean(frames ** 2, 1) + 1e-6)[:, None] + 5) / 5
    t = np.arange(n) / 50
    t_frames = np.arange(len(controls["f0"])) / fps
    voice = np.stack([np.interp(t, t_frames, controls[k]) for k in
                      ("f0", "energy", "rate", "tilt", "breath", "laugh")], 1)
    voice = voice - np.array([1.0, 0.55, 1.0, 1.4, 0.1, 0.0])      # at rest: zero
    quality = AUDIO_QUALITY[audio_kind]
    voice = quality * 2 * voice + (1 - quality) * rng.normal(0, 0.5, voice.shape)
    speaker = quality * np.array([[np.log(subject.f0) - 5, subject.formant - 1, subject.rate / 4 - 1]])
    inputs = np.concatenate([loudness, voice, np.repeat(speaker, n, 0), _nuisance(rng, n, 6, 25)], 1)
    return _embed(inputs, _feature_net(seed, inputs.shape[1], dim, 2), STANDIN_NOISE, rng)


# ============================================================== clean latent streams

def write_latents(out: Path, stem: str, face: np.ndarray, voice: np.ndarray, fps: float) -> None:
    """The clean latent streams of one video (Config.latents), for a headroom study ("how much
    do the features lose?"): latent_face/<stem>.pkl and latent_voice/<stem>.pkl, each a dict
    {"features": (frames, dims) float32, "fps": the video's frame rate}, row k being the
    video's frame k (k / fps seconds), in the organizer-pickle form `organizer:<folder>`
    reads (the stated fps puts them on the time grid even in a release without media).

    What they hold is the emotion drive, per frame, in the labels' own coordinates (EMI: the
    six EMI_TARGETS; VA: valence, arousal): on the face, the intensities after the subject's
    mapping (Style.drive) times its expressivity, before they are mixed into facial actions;
    in the voice, what the voice hears of them (`heard`), before it becomes voice controls.
    Not the actions and controls themselves: those also carry what emotion does not explain
    (the resting face, talk, small motion), clip at their limits, and spread six emotions
    over ten actions in each subject's own way; they are the first step of rendering. The
    drive is what is expressed before any of that, so a model trained on these streams shows
    what the rendering, extraction, corruption (occlusion, lost face, noisy, silent or
    missing audio, VA's detector gaps and silences) and feature noise cost, and the gap left
    between it and ceiling.json is the labelling alone. Deterministic functions of what the
    generator computes anyway, drawing nothing: the rest of the release keeps its bytes."""
    for folder, values in zip(LATENT_FOLDERS, (face, voice)):
        fileio.write_pickle(out / folder / f"{stem}.pkl",
                            {"features": np.asarray(values, np.float32), "fps": float(fps)})


# ============================================================== shared per-video pieces

def _corruptions(rng, rates: dict) -> dict:
    face = rng.choice(["ok", "occluded", "missing"],
                      p=[1 - rates["occluded"] - rates["face_missing"], rates["occluded"], rates["face_missing"]])
    audio = rng.choice(["ok", "noisy", "silent", "missing"],
                       p=[1 - rates["noisy"] - rates["silent"] - rates["audio_missing"],
                          rates["noisy"], rates["silent"], rates["audio_missing"]])
    transcript = "missing" if rng.random() < rates["no_transcript"] else "ok"
    return {"face": str(face), "audio": str(audio), "transcript": transcript}


def _visibility(rng, T: int, face: str):
    present = np.ones(T, bool)
    occluder = np.zeros(T, np.int64)
    if face == "missing":  # lost, not never there: at least the first frame shows it
        start = int(rng.integers(1, max(2, T // 5)))
        present[start:] = False
    elif face == "occluded":
        start = int(rng.integers(0, T // 3))
        stop = int(rng.integers(start + T // 2, T + 1))
        occluder[start:stop] = rng.integers(1, 3)
    return present, occluder


def _blinks(rng, T: int, fps: float) -> np.ndarray:
    blink = np.zeros(T)
    for start in np.flatnonzero(rng.random(T) < 0.25 / fps):
        blink[start:start + max(1, int(fps * 0.15))] = 1
    return blink


def _head_shift(rng, T: int, scale: float) -> np.ndarray:
    return np.stack([smooth_noise(rng, T, scale, 9), smooth_noise(rng, T, scale, 9)], 1)


@dataclass
class Config:
    track: str
    seed: int
    videos: int
    subjects: int
    seconds: float
    fps: float
    size: int
    label_noise: float
    length_spread: float = 0.5
    occluded: float = 0.08
    face_missing: float = 0.04
    noisy: float = 0.08
    silent: float = 0.03
    audio_missing: float = 0.02
    no_transcript: float = 0.10
    timed_transcripts: float = 0.0   # share of EMI transcripts written as word-timed JSON
    other_fps: float = 0.0           # VA: one video (the second, in test) at this frame rate
    long_seconds: float = 0.0        # VA: one video (the first, in train) this long
    # The world a release comes from (bench/quality.py draws these per release; WORLD_KNOBS):
    mapping: str = "linear"          # how intensities reach face and voice: linear, or nonlinear
    #                                  (per-subject threshold and saturation)
    style: float = 0.0               # per-subject spread of which facial actions each emotion moves
    gain_spread: float = 0.4         # expressivity of the face, per subject, about 1 +/- this; the voice
    #                                  scales by the ratio to the default spread's
    voice_gain: float = 1.0          # how strongly the voice follows the emotions (0: not at all)
    word_rate: float = 3.0           # EMI: emotion words per unit of intensity in a transcript
    onset_spread: float = 0.5        # EMI: bursts start within the first 0.05 + this of a video
    hold_scale: float = 1.0          # EMI: how long an expression holds its peak (x the usual 0.6-2 s)
    report_bias: float = 0.07        # std of a subject's personal rating bias
    silences: float = 0.0            # VA: share of the time between utterances, with no voice
    occlusion_seconds: float = 0.0   # VA: hands cover the face for about this long, about twice a
    #                                  minute (0: only the per-video occlusion of `occluded`)
    gap_seconds: float = 0.9         # VA: mean length of a run of frames the detector misses
    annotator_lag: float = 0.5       # VA: mean seconds an annotator is late
    annotator_smooth: float = 0.0    # VA: seconds over which an annotator smooths what they see
    annotator_bias: float = 0.0      # VA: std of an annotator's offset, per video
    vit_dim: int = 96                # width of the vit/ stand-in (the organizers': 768)
    wav2vec2_dim: int = 64           # width of the wav2vec2/ stand-in (the organizers': 768)
    standins: bool = True            # EMI: write the organizer stand-ins vit/ and wav2vec2/
    media: bool = True               # EMI: write raw/, audio/ and transcripts/ (False: features only)
    latents: bool = False            # write the clean latent streams latent_face/ and latent_voice/ (write_latents)


def _marker_config(cfg: "Config") -> dict:
    """The settings synth_config.json records. A setting at its "off" default that older
    generators did not have is left out, so their releases are still recognised as complete."""
    settings = asdict(cfg)
    for name in ("timed_transcripts", "other_fps", "long_seconds"):
        if not settings[name]:
            settings.pop(name)
    defaults = Config.__dataclass_fields__
    for name in WORLD_KNOBS + ("standins", "media", "latents"):
        if settings[name] == defaults[name].default:
            settings.pop(name)
    return settings


# 2: organizer stand-ins without any column that says which frames are bad; the world's knobs;
# the VA ceiling of the annotator's view. A release written by an older version is written again.
GENERATOR_VERSION = 2

WORLD_KNOBS = ("mapping", "style", "gain_spread", "voice_gain", "word_rate", "onset_spread", "hold_scale",
               "report_bias", "silences", "occlusion_seconds", "gap_seconds", "annotator_lag",
               "annotator_smooth", "annotator_bias")
# What is written, rather than the world it comes from (also set with --set NAME=VALUE).
RELEASE_SETTINGS = ("vit_dim", "wav2vec2_dim", "standins", "media", "latents")


@dataclass
class Style:
    """How one subject's emotions reach their face and voice (WORLD_KNOBS), drawn from its
    own stream (seed, 5, subject) so the rest of a release does not change with the knobs."""
    actions: np.ndarray      # (n_emotions, len(ACTIONS)): how strongly each emotion moves each action
    gain: float              # face and voice gain (expressivity)
    bias: np.ndarray         # personal rating bias per target
    curve: np.ndarray        # (threshold, sharpness) of the nonlinear mapping; sharpness 0: linear

    def drive(self, x: np.ndarray) -> np.ndarray:
        """An intensity in [0, 1] -> how much of it shows: itself, or past a threshold and saturating."""
        threshold, sharpness = self.curve
        if sharpness == 0:
            return x
        past = np.clip(x - threshold, 0, None)
        return (1 - np.exp(-sharpness * past)) / (1 - np.exp(-sharpness * (1 - threshold)))


def subject_style(cfg: "Config", subject: Subject, index: int, emotion_to_action: np.ndarray) -> Style:
    rng = np.random.default_rng([cfg.seed, 5, index])
    actions = emotion_to_action
    if cfg.style:
        actions = np.clip(actions * np.exp(cfg.style * rng.normal(0, 1, actions.shape))
                          + cfg.style * 0.3 * np.clip(rng.normal(0, 1, actions.shape), 0, None), 0, None)
    gain = subject.expressivity if cfg.gain_spread == 0.4 else 1 + (subject.expressivity - 1) * cfg.gain_spread / 0.4
    curve = np.array([rng.uniform(0.0, 0.3), rng.uniform(2.0, 6.0)]) if cfg.mapping == "nonlinear" else np.zeros(2)
    bias = subject.bias if cfg.report_bias == 0.07 else subject.bias * cfg.report_bias / 0.07
    return Style(actions, max(0.05, gain), bias, curve)


def _video_frames(cfg: Config, n: int) -> np.ndarray:
    """Frame count of each of `n` videos: lengths spread around `cfg.seconds`, so that code
    downstream meets ragged sequences (real releases never have one length).

    Nine in ten lengths are uniform in (1 +/- spread) x seconds, one in ten is longer, up to
    (1 + 2 spread) x seconds; all are scaled so that the expected length is `cfg.seconds`
    (spread 0.5, 6 s: about 2.8-8.4 s, a few up to 11 s). At least 4 frames, which the
    corruption timings need. Drawn from their own stream, (seed, 3), in the main process.
    """
    rng = np.random.default_rng([cfg.seed, 3])
    spread = cfg.length_spread
    factor = rng.uniform(1 - spread, 1 + spread, n)
    longer = rng.random(n) < 0.1
    factor[longer] = rng.uniform(1 + spread, 1 + 2 * spread, int(longer.sum()))
    factor /= 1 + 0.15 * spread
    return np.maximum(4, np.round(factor * cfg.seconds * cfg.fps)).astype(int)


def _subject_splits(rng, n_subjects: int) -> np.ndarray:
    """Subject -> split, disjoint: about 60 % train, 20 % valid, 20 % test subjects."""
    order = rng.permutation(n_subjects)
    n_test = max(1, round(0.2 * n_subjects))
    n_valid = max(1, round(0.2 * n_subjects))
    split = np.array(["train"] * n_subjects, dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_valid]] = "valid"
    return split


# ============================================================== EMI

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

    flags = _corruptions(rng, asdict(cfg))
    present, occluder = _visibility(rng, T, flags["face"])
    frames = render_faces(actions, subject, cfg.size, rng, present, occluder, _blinks(rng, T, cfg.fps),
                          _head_shift(rng, T, 0.006), rng.uniform(0.75, 1.15), rng.uniform(2, 7))

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
    layouts.Transcript in time order. A word tagged with emotion e is spoken inside e's burst
    (`timing` rows: onset, rise, hold, fall, in seconds), a filler (-1) anywhere; each lasts
    about 0.15 s + 0.05 s a letter, words never overlap and all fit in [0, seconds)."""
    from solution.layouts import Transcript

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


def generate_emi(cfg: Config, out: Path, workers: int) -> dict:
    rng = np.random.default_rng([cfg.seed, 0])
    subjects = [make_subject(rng, 6) for _ in range(cfg.subjects)]
    subject_split = _subject_splits(rng, cfg.subjects)
    clips = _seed_clips(rng, max(4, cfg.videos // 6), cfg.onset_spread, cfg.hold_scale)
    owners = np.concatenate([np.arange(cfg.subjects), rng.integers(0, cfg.subjects, max(0, cfg.videos - cfg.subjects))])[: cfg.videos]
    ids = np.sort(rng.choice(np.arange(1, cfg.videos * 3 + 1), size=cfg.videos, replace=False))
    videos = [EmiVideo(int(vid), int(s), str(subject_split[s]), int(rng.integers(len(clips))),
                       float(rng.uniform(0.35, 1.0)), int(T))
              for vid, s, T in zip(ids, rng.permutation(owners), _video_frames(cfg, cfg.videos))]
    jobs = [(asdict(cfg), v, subjects[v.subject], clips[v.clip], out) for v in videos]
    results = _run(_emi_video, jobs, workers, "EMI videos")

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


# ============================================================== VA

VA_RENDER_CHUNK = 256  # frames drawn at once


@dataclass
class _VaDrive:
    """How much of each pole of valence and arousal shows, per frame (the subject's style.drive)."""
    pos: np.ndarray
    neg: np.ndarray
    high: np.ndarray
    low: np.ndarray


@dataclass
class _VaFace:
    """What the camera sees of a VA video, per frame, and where the organizers' detector found the face."""
    actions: np.ndarray
    present: np.ndarray
    occluder: np.ndarray
    blinks: np.ndarray
    shift: np.ndarray
    light: float
    grain: float
    cropped: np.ndarray


def _va_video(job):
    cfg, index, name, split, subject, T, fps, out = job
    cfg = Config(**cfg)
    style = subject_style(cfg, subject, index, np.eye(2))
    world = np.random.default_rng([cfg.seed, 6, index])  # the world knobs' own draws
    rng = np.random.default_rng([cfg.seed, 1, index])
    slow = max(3, int(fps * 4))
    valence = np.tanh(smooth_noise(rng, T, 1.2, slow) + rng.normal(0, 0.3))
    arousal = np.tanh(smooth_noise(rng, T, 1.2, slow) + rng.normal(0, 0.3))
    clean = np.stack([valence, arousal], 1)
    drive = _VaDrive(pos=style.drive(np.clip(valence, 0, None)), neg=style.drive(np.clip(-valence, 0, None)),
                     high=style.drive(np.clip(arousal, 0, None)), low=style.drive(np.clip(-arousal, 0, None)))
    actions = _va_actions(cfg, subject, style, drive, rng, world)
    flags = _corruptions(rng, asdict(cfg))
    face = _va_face(cfg, actions, drive, flags["face"], rng, world, fps)
    voice, flags["audio"] = _va_voice(cfg, subject, style, drive, flags["audio"], rng, world, fps)
    _write_va_media(cfg, out, name, index, subject, face, voice, fps)
    if cfg.latents:  # signed valence and arousal drive: on the face (expressivity included), in the voice
        write_latents(out, name, style.gain * np.stack([drive.pos - drive.neg, drive.high - drive.low], 1),
                      np.stack(_va_heard(cfg, subject, style, drive), 1), fps)
    lagged, noisy, lag = _va_annotation(cfg, clean, style.bias, rng, world, fps)
    flags.update(lag=round(lag / fps, 3), no_crop_frames=int((~face.cropped).sum()))
    # The ceiling is that of a perfect model of what the annotator saw (late and smoothed: a
    # model can learn the delay, solution.delay chooses it), not of the noise-free signal itself.
    return name, lagged, noisy, flags, T


def _va_actions(cfg: Config, subject: Subject, style: Style, drive: _VaDrive, rng, world) -> np.ndarray:
    """The facial actions of a VA video, per frame, from its valence and arousal."""
    pos, neg, high, low = drive.pos, drive.neg, drive.high, drive.low
    T = len(pos)
    actions = np.zeros((T, len(ACTIONS))) + subject.neutral
    e = style.gain
    actions[:, A["smile"]] += e * 0.9 * pos
    actions[:, A["frown"]] += e * 0.7 * neg
    actions[:, A["brow_inner_up"]] += e * 0.7 * neg * (0.5 + 0.5 * low)
    actions[:, A["brow_furrow"]] += e * 0.5 * neg * high
    actions[:, A["mouth_open"]] += e * 0.6 * high + 0.2 * np.clip(smooth_noise(rng, T, 0.3, 2), 0, None)
    actions[:, A["eye_wide"]] += e * 0.7 * high
    actions[:, A["eye_squint"]] += e * 0.5 * low + 0.3 * pos * high
    actions[:, A["brow_raise"]] += e * 0.5 * high
    actions[:, A["head_tilt"]] += 0.3 * neg * low
    if cfg.style:  # each subject shows valence and arousal through their own mix of actions
        mix = np.exp(cfg.style * world.normal(0, 1, len(ACTIONS)))
        actions = subject.neutral + (actions - subject.neutral) * mix
    return np.clip(actions, -0.3, 1.4)


def _va_face(cfg: Config, actions: np.ndarray, drive: _VaDrive, face: str, rng, world, fps: float) -> _VaFace:
    """Where the face is in view, covered, blinking and moving, the light and grain, and the
    frames the detector found it in."""
    T = len(actions)
    present, occluder = _visibility(rng, T, face)
    if face == "missing":  # in Aff-Wild2 the face leaves and comes back
        present = np.roll(present, -int(rng.integers(0, T // 2)))
    if cfg.occlusion_seconds:  # hands over the face for seconds, now and then
        for _ in range(world.poisson(T / fps / 30)):
            start = int(world.integers(0, T))
            occluder[start:start + int(world.uniform(0.5, 1.5) * cfg.occlusion_seconds * fps)] = world.integers(1, 3)
    blinks, shift = _blinks(rng, T, fps), _head_shift(rng, T, 0.01 + 0.03 * float(np.mean(drive.high)))
    light, grain = rng.uniform(0.75, 1.15), rng.uniform(2, 7)
    # The face is in view but the organizers' detector found none: short runs of frames without a crop.
    cropped = present.copy()
    for _ in range(1 + rng.poisson(1.0)):
        start = int(rng.integers(0, T))
        seconds = rng.uniform(0.3, 1.5) * (1 if cfg.gap_seconds == 0.9 else cfg.gap_seconds / 0.9)
        cropped[start:start + int(seconds * fps)] = False
    if not cropped.any():  # a face seen only briefly is still found once
        cropped = present.copy()
    return _VaFace(actions, present, occluder, blinks, shift, light, grain, cropped)


def _va_voice(cfg: Config, subject: Subject, style: Style, drive: _VaDrive, audio: str, rng, world,
              fps: float) -> tuple[np.ndarray, str]:
    """The video's audio track, and its condition as metadata.csv records it."""
    g = _va_voice_gain(cfg, subject, style)
    pos, neg, high, low = drive.pos, drive.neg, drive.high, drive.low
    heard_v, heard_a = _va_heard(cfg, subject, style, drive)
    controls = {"f0": 1 + 0.35 * heard_a + 0.05 * heard_v, "energy": np.clip(0.6 + 0.35 * heard_a, 0.1, 1.2),
                "rate": 1 + 0.3 * heard_a, "tilt": 1.4 - 0.4 * heard_v - 0.2 * heard_a,
                "breath": np.clip(0.1 + 0.4 * g * neg * (0.5 + 0.5 * low), 0, 0.9),
                "laugh": np.clip(1.2 * g * pos * high - 0.5, 0, 0.8)}
    voice = synth_voice(controls, subject, len(pos) / fps, fps, rng)
    if cfg.silences:  # utterances of 2-6 s with silences between them
        voice = voice * _utterances(world, len(voice), cfg.silences)
    voice = corrupt_audio(voice, "ok" if audio == "missing" else audio, rng)
    if audio == "missing":
        return np.zeros_like(voice), "silent"  # an Aff-Wild2 video always has a track; "missing" = mute
    return voice, audio


def _va_voice_gain(cfg: Config, subject: Subject, style: Style) -> float:
    """How strongly a VA subject's voice follows valence and arousal (voice_gain, gain_spread)."""
    return 1.0 if (cfg.voice_gain == 1 and style.gain == subject.expressivity) else \
        cfg.voice_gain * style.gain / subject.expressivity


def _va_heard(cfg: Config, subject: Subject, style: Style, drive: _VaDrive) -> tuple[np.ndarray, np.ndarray]:
    """The valence and arousal the voice follows, per frame, before any silence or corruption."""
    g = _va_voice_gain(cfg, subject, style)
    return g * (drive.pos - drive.neg), g * (drive.high - drive.low)


def _write_va_media(cfg: Config, out: Path, name: str, index: int, subject: Subject, face: _VaFace,
                    voice: np.ndarray, fps: float) -> None:
    """batch1/<name>.mp4 with its audio track, and cropped_aligned/<name>/ with the face crops
    of the frames the detector found the face in."""
    crop_dir = out / "cropped_aligned" / name
    crop_dir.mkdir(parents=True, exist_ok=True)
    render_rng = np.random.default_rng([cfg.seed, 4, index])
    frames = _va_frames(face, subject, cfg.size, render_rng, crop_dir)
    write_video(out / "batch1" / f"{name}.mp4", frames, fps, audio=voice)


def _va_frames(face: _VaFace, subject: Subject, size: int, rng, crop_dir: Path):
    """The video's frames, rendered a chunk at a time, so a long video never sits in memory
    whole; each chunk's face crops are written as it is drawn."""
    from PIL import Image

    T = len(face.actions)
    half = int(size * 0.4)
    for a in range(0, T, VA_RENDER_CHUNK):
        b = min(T, a + VA_RENDER_CHUNK)
        chunk = render_faces(face.actions[a:b], subject, size, rng, face.present[a:b], face.occluder[a:b],
                             face.blinks[a:b], face.shift[a:b], face.light, face.grain)
        c = size // 2
        for i in np.flatnonzero(face.cropped[a:b]):
            crop = chunk[i, max(0, c - half):c + half, max(0, c - half):c + half]
            image = Image.fromarray(crop).resize((112, 112), Image.BILINEAR)
            with fileio.atomic_path(crop_dir / f"{a + i + 1:05d}.jpg") as tmp:
                image.save(tmp, format="JPEG", quality=90)
        yield chunk


def _va_annotation(cfg: Config, clean: np.ndarray, bias: np.ndarray, rng, world,
                   fps: float) -> tuple[np.ndarray, np.ndarray, int]:
    """What the annotator saw (`clean`, late and maybe smoothed), what they wrote (that, noisy
    and biased, VA_UNANNOTATED where not annotated) and their lag in frames."""
    T = len(clean)
    # Annotators lag (each by their own reaction time), smooth and disagree; some stretches
    # are not annotated at all.
    lag_seconds = float(np.clip(cfg.annotator_lag + (rng.normal(0.5, 0.1) - 0.5) * cfg.annotator_lag / 0.5,
                                0.5 * cfg.annotator_lag, 1.6 * cfg.annotator_lag))
    lag = min(int(round(lag_seconds * fps)), T - 1)
    seen = clean
    if cfg.annotator_smooth:  # the annotator's joystick follows what they see slowly
        width = max(1, int(cfg.annotator_smooth * fps))
        padded = np.concatenate([np.repeat(clean[:1], width - 1, 0), clean])
        seen = np.stack([np.convolve(padded[:, j], np.ones(width) / width, mode="valid") for j in range(2)], 1)
    lagged = np.concatenate([np.repeat(seen[:1], lag, 0), seen[: T - lag]])
    noisy = lagged + np.stack([smooth_noise(rng, T, cfg.label_noise, max(2, int(fps / 6))) for _ in range(2)], 1)
    offset = world.normal(0, cfg.annotator_bias, 2) if cfg.annotator_bias else 0.0  # this annotator's, this video
    noisy = np.clip(noisy + bias + offset, -1, 1)
    annotated = np.ones(T, bool)
    for _ in range(1 + rng.poisson(1.0)):
        start = int(rng.integers(0, T))
        annotated[start:start + int(rng.integers(T // 50 + 1, T // 10 + 2))] = False
    noisy[~annotated] = VA_UNANNOTATED
    return lagged, noisy, lag


def _utterances(rng, n: int, share: float) -> np.ndarray:
    """A 0/1 gate over `n` samples, eased at the edges: utterances of 2-6 s and silences
    between them that take about `share` of the time."""
    gate, i = np.zeros(n), int(rng.uniform(0, 2) * SAMPLE_RATE)
    while i < n:
        talk = int(rng.uniform(2, 6) * SAMPLE_RATE)
        gate[i:i + talk] = 1
        i += talk + int(rng.exponential(4 * share / max(1e-3, 1 - share)) * SAMPLE_RATE)
    return np.convolve(gate, np.ones(800) / 800, mode="same")


def _write_va_annotation(path: Path, values: np.ndarray) -> None:
    body = "\n".join(f"{v:.3f},{a:.3f}" if v != VA_UNANNOTATED else "-5,-5" for v, a in values)
    fileio.write_text(path, "valence,arousal\n" + body + "\n")


def _move_to_split(split: np.ndarray, index: int, name: str) -> None:
    """Put video `index` in split `name` by swapping with a video of that split (one after the
    two placed videos first), so every split keeps its size; with none, it just moves."""
    if split[index] != name:
        others = [j for j in [*range(2, len(split)), 0, 1] if j != index and split[j] == name]
        if others:
            split[others[0]] = split[index]
        split[index] = name


def generate_va(cfg: Config, out: Path, workers: int) -> dict:
    rng = np.random.default_rng([cfg.seed, 0])
    subjects = [make_subject(rng, 2) for _ in range(cfg.videos)]
    split = _subject_splits(rng, cfg.videos)  # Aff-Wild2: one subject per video
    fps = np.full(cfg.videos, cfg.fps)
    seconds = _video_frames(cfg, cfg.videos) / cfg.fps
    if cfg.other_fps:  # Aff-Wild2 is mostly 30 fps, not all of it: the second video at another rate, in test
        fps[1] = cfg.other_fps
        _move_to_split(split, 1, "test")
    if cfg.long_seconds:  # one long video (Aff-Wild2 has videos of tens of minutes), in train
        seconds[0] = cfg.long_seconds
        _move_to_split(split, 0, "train")
    frames = np.maximum(4, np.round(seconds * fps)).astype(int)
    # Aff-Wild2 names say the video's length and size ("1-30-1280x720").
    names = [f"{i + 1}-{round(frames[i] / fps[i])}-{cfg.size}x{cfg.size}" for i in range(cfg.videos)]
    jobs = [(asdict(cfg), i, names[i], split[i], subjects[i], int(frames[i]), float(fps[i]), out)
            for i in range(cfg.videos)]
    results = _run(_va_video, jobs, workers, "VA videos")

    challenge = out / "6th_ABAW_Annotations" / "VA_Estimation_Challenge"
    private = out / "private" / "VA_Estimation_Challenge"
    folders = {"train": challenge / "Train_Set", "valid": challenge / "Validation_Set",
               "test": private / "Test_Set"}
    meta, listing, pairs = [], [], {"train": [], "valid": [], "test": []}
    for (name, clean, noisy, flags, T), part in zip(results, split):
        _write_va_annotation(folders[part] / f"{name}.txt", noisy)
        keep = noisy[:, 0] != VA_UNANNOTATED
        pairs[part].append((clean[keep], noisy[keep]))
        rate = fps[names.index(name)]
        meta.append({"video": name, "split": part, "subject": name, **flags,
                     "seconds": round(T / rate, 4), "frames": T, "fps": rate})
        if part == "test":
            listing.append(f"{name},{T}")
    fileio.write_text(challenge / "test_set.csv", "video,frames\n" + "\n".join(listing) + "\n")
    fileio.write_csv(out / "metadata.csv", pd.DataFrame(meta))

    ceiling = {}
    pairs["labelled"] = pairs["train"] + pairs["valid"]  # pooled, as an out-of-fold score is
    for part, chunks in pairs.items():
        if chunks:
            clean = np.concatenate([c for c, _ in chunks])
            noisy = np.concatenate([n for _, n in chunks])
            r = ccc_per_dim(clean, noisy)
            ceiling[part] = {"metric": "ccc", "per_dim": {"valence": round(float(r[0]), 4),
                                                          "arousal": round(float(r[1]), 4)},
                             "mean": round(float(r.mean()), 4), "frames": int(len(clean))}
    return ceiling


# ============================================================== driver

def _run(worker, jobs, workers: int, what: str):
    if workers <= 1:
        return [worker(job) for job in progress(jobs, desc=what, unit="video")]
    with ProcessPoolExecutor(workers) as pool:
        return list(progress(pool.map(worker, jobs, chunksize=2), total=len(jobs), desc=what, unit="video"))


# The demo's sizes (what run_all.sh trains on without DATA_DIR): a smoke test through every stage and
# model that ends within ten minutes of stages on 2 CPU cores (bench/README.md, "End-to-end time of
# the demo"). Real releases are far larger; nothing else is sized by these.
DEFAULTS = {
    "emi": dict(videos=96, subjects=16, seconds=4.0, length_spread=0.5, fps=15.0, size=112, label_noise=0.12),
    "va": dict(videos=16, subjects=16, seconds=12.0, length_spread=0.5, fps=30.0, size=112, label_noise=0.2,
               other_fps=25.0, long_seconds=120.0),
}


def generate(track: str, out, seed: int = 0, workers: int = 0, overwrite: bool = False, **overrides) -> dict:
    """Write a synthetic release to `out`; returns the ceiling. A finished folder with the
    same settings is left as it is (its synth_config.json marks it complete)."""
    import os

    out = Path(out)
    settings = {**DEFAULTS[track], **{k: v for k, v in overrides.items() if v is not None}}
    if track == "va":
        settings["subjects"] = settings["videos"]
    unknown = sorted(set(settings) - set(Config.__dataclass_fields__))
    if unknown:
        raise SystemExit(f"[synth] no setting(s) {unknown}; the world's: {', '.join(WORLD_KNOBS)}")
    cfg = Config(track=track, seed=seed, **settings)
    marker = out / "synth_config.json"
    recorded = json.loads(marker.read_text()) if marker.is_file() else {}
    if recorded.get("generator") == "solution.synth" and recorded.get("version", 1) < GENERATOR_VERSION:
        # Ours, from an older generator (e.g. stand-ins that said which frames were bad): write it anew.
        print(f"[synth] {out} was written by an older version of this generator; writing it again")
        shutil.rmtree(out)
        recorded = {}
    if recorded.get("config") == _marker_config(cfg):
        print(f"[synth] {out} already holds this dataset (see {marker}); nothing to do")
        return json.loads((out / "ceiling.json").read_text())
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = ("a synthetic release with other settings (or from an older generator)" if marker.is_file()
                else "other files")
        raise SystemExit(f"[synth] {out} exists and holds {what}; pass --overwrite or choose another --out")
    if cfg.videos < 5 or (track == "emi" and cfg.subjects < 5):
        raise SystemExit("[synth] need at least 5 videos and 5 subjects so every split has data")
    if not 0 <= cfg.length_spread < 1:
        raise SystemExit(f"[synth] --length-spread must be in [0, 1), got {cfg.length_spread}")
    if not 0 <= cfg.timed_transcripts <= 1:
        raise SystemExit(f"[synth] --timed-transcripts must be a share in [0, 1], got {cfg.timed_transcripts}")
    if track == "emi" and (cfg.other_fps or cfg.long_seconds):
        raise SystemExit("[synth] --other-fps and --long-seconds are VA settings")
    if cfg.other_fps < 0 or cfg.long_seconds < 0:
        raise SystemExit("[synth] --other-fps and --long-seconds must be positive (0: off)")
    if cfg.mapping not in ("linear", "nonlinear"):
        raise SystemExit(f"[synth] mapping must be linear or nonlinear, got {cfg.mapping!r}")
    if not (cfg.standins or cfg.media or cfg.latents):
        raise SystemExit("[synth] standins=false and media=false (without latents=true) leave nothing to learn from")
    if track == "va" and cfg.timed_transcripts:
        raise SystemExit("[synth] --timed-transcripts: a VA release has no transcripts")
    if track == "emi" and cfg.subjects > cfg.videos:
        raise SystemExit(f"[synth] --subjects ({cfg.subjects}) cannot exceed --videos ({cfg.videos})")
    if marker.exists():
        marker.unlink()
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(4, os.cpu_count() or 1)
    ceiling = (generate_emi if track == "emi" else generate_va)(cfg, out, workers)
    fileio.write_json(out / "ceiling.json", ceiling)
    fileio.write_json(marker, {"config": _marker_config(cfg), "generator": "solution.synth", "version": GENERATOR_VERSION})
    return ceiling


def world_settings(items: list[str], parser) -> dict:
    """--set NAME=VALUE items -> typed settings (the type of the setting's default)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        field = Config.__dataclass_fields__.get(name)
        if not sep or field is None or name not in WORLD_KNOBS + RELEASE_SETTINGS:
            parser.error(f"--set {item}: use NAME=VALUE with NAME one of {', '.join(WORLD_KNOBS + RELEASE_SETTINGS)}")
        kind = type(field.default)
        try:
            out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            parser.error(f"--set {item}: {name} takes a {kind.__name__}")
    return out


def main(argv=None) -> int:
    # Every help text states its default itself (some differ by track), so no
    # ArgumentDefaultsHelpFormatter, which would add "(default: None)" to those.
    summary = __doc__.split("\n\n")[0].split(": ", 1)[1]
    parser = argparse.ArgumentParser(prog="python -m solution.synth", description=summary[0].upper() + summary[1:])
    parser.add_argument("--track", choices=["emi", "va"], default="emi", help="which release (default: emi)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the release into")
    parser.add_argument("--videos", type=int, help="number of videos (default: emi 96, va 16)")
    parser.add_argument("--subjects", type=int, help="number of subjects (emi; default: 16)")
    parser.add_argument("--seconds", type=float, help="mean length of a video (default: emi 4, va 12)")
    parser.add_argument("--length-spread", type=float,
                        help="lengths vary over about (1 +/- spread) x seconds, a few up to (1 + 2 spread) x; "
                             "0 gives every video the same length (default: 0.5)")
    parser.add_argument("--fps", type=float, help="video frame rate (default: emi 15, va 30)")
    parser.add_argument("--size", type=int, help="frame width and height in pixels (default: 112)")
    parser.add_argument("--label-noise", type=float, help="std of label noise (default: emi 0.12, va 0.2)")
    parser.add_argument("--timed-transcripts", type=float, metavar="SHARE",
                        help="EMI: share of transcripts written as word-timed ASR JSON instead of .txt (default: 0)")
    parser.add_argument("--other-fps", type=float, metavar="FPS",
                        help="VA: the second video (in test) at this frame rate; 0 for none (default: 25)")
    parser.add_argument("--long-seconds", type=float, metavar="S",
                        help="VA: the first video (in train) this long; 0 for none (default: 120)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="world",
                        help="a setting of the world the release comes from, repeatable: "
                             + ", ".join(f"{k} (default {Config.__dataclass_fields__[k].default!r})"
                                         for k in WORLD_KNOBS + RELEASE_SETTINGS))
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: 0, up to 4, one per core)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    args = parser.parse_args(argv)
    ceiling = generate(args.track, args.out, seed=args.seed, workers=args.workers, overwrite=args.overwrite,
                       videos=args.videos, subjects=args.subjects, seconds=args.seconds,
                       length_spread=args.length_spread, fps=args.fps, size=args.size,
                       label_noise=args.label_noise, timed_transcripts=args.timed_transcripts,
                       other_fps=args.other_fps, long_seconds=args.long_seconds,
                       **world_settings(args.world, parser))
    print(f"[synth] wrote {args.track.upper()} release to {args.out}")
    for split, entry in ceiling.items():
        print(f"[synth] ceiling on {split}: mean {entry['metric']} {entry['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
