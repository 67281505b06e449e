"""The synthetic world every release family is drawn from: subjects (a face, a voice, an
expressivity, a personal rating bias), the rendering of facial actions into frames, the voice
synthesised from per-frame controls, the organizer feature stand-ins (vit/, wav2vec2/) and
the clean latent streams, the corruptions (occlusion, a lost face, noisy, silent or missing
audio), each subject's style (WORLD_KNOBS), and the settings of a release (Config).

A family's generator (emi.py; affwild2.py) decides what its labels are and how they drive the
face and the voice; everything it draws per video comes from streams seeded by (seed, video),
so the same seed writes the same bytes whatever the number of worker processes (run_videos).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from solution import fileio
from solution.media import SAMPLE_RATE
from solution.progress import progress
from solution.readers import LATENT_FOLDERS

ACTIONS = ("smile", "mouth_open", "brow_raise", "brow_furrow", "brow_inner_up",
           "lip_press", "eye_wide", "eye_squint", "head_tilt", "frown")
A = {name: i for i, name in enumerate(ACTIONS)}


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

def draw_corruptions(rng, rates: dict) -> dict:
    face = rng.choice(["ok", "occluded", "missing"],
                      p=[1 - rates["occluded"] - rates["face_missing"], rates["occluded"], rates["face_missing"]])
    audio = rng.choice(["ok", "noisy", "silent", "missing"],
                       p=[1 - rates["noisy"] - rates["silent"] - rates["audio_missing"],
                          rates["noisy"], rates["silent"], rates["audio_missing"]])
    transcript = "missing" if rng.random() < rates["no_transcript"] else "ok"
    return {"face": str(face), "audio": str(audio), "transcript": transcript}


def draw_visibility(rng, T: int, face: str):
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


def draw_blinks(rng, T: int, fps: float) -> np.ndarray:
    blink = np.zeros(T)
    for start in np.flatnonzero(rng.random(T) < 0.25 / fps):
        blink[start:start + max(1, int(fps * 0.15))] = 1
    return blink


def draw_head_shift(rng, T: int, scale: float) -> np.ndarray:
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


# The settings of the world a release comes from (--set NAME=VALUE; bench/quality.py draws them per release).
WORLD_KNOBS = ("mapping", "style", "gain_spread", "voice_gain", "word_rate", "onset_spread", "hold_scale",
               "report_bias", "silences", "occlusion_seconds", "gap_seconds", "annotator_lag",
               "annotator_smooth", "annotator_bias")
# What is written, rather than the world it comes from (also set with --set NAME=VALUE).
RELEASE_SETTINGS = ("vit_dim", "wav2vec2_dim", "standins", "media", "latents")


def check_settings(cfg: Config) -> None:
    """The checks of Config's settings that every family makes (each family's check calls this
    where its own order puts it)."""
    if cfg.other_fps < 0 or cfg.long_seconds < 0:
        raise SystemExit("[synth] --other-fps and --long-seconds must be positive (0: off)")
    if cfg.mapping not in ("linear", "nonlinear"):
        raise SystemExit(f"[synth] mapping must be linear or nonlinear, got {cfg.mapping!r}")
    if not (cfg.standins or cfg.media or cfg.latents):
        raise SystemExit("[synth] standins=false and media=false (without latents=true) leave nothing to learn from")


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


def video_frames(cfg: Config, n: int) -> np.ndarray:
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


def subject_splits(rng, n_subjects: int) -> np.ndarray:
    """Subject -> split, disjoint: about 60 % train, 20 % valid, 20 % test subjects."""
    order = rng.permutation(n_subjects)
    n_test = max(1, round(0.2 * n_subjects))
    n_valid = max(1, round(0.2 * n_subjects))
    split = np.array(["train"] * n_subjects, dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_valid]] = "valid"
    return split


def utterances(rng, n: int, share: float) -> np.ndarray:
    """A 0/1 gate over `n` samples, eased at the edges: utterances of 2-6 s and silences
    between them that take about `share` of the time."""
    gate, i = np.zeros(n), int(rng.uniform(0, 2) * SAMPLE_RATE)
    while i < n:
        talk = int(rng.uniform(2, 6) * SAMPLE_RATE)
        gate[i:i + talk] = 1
        i += talk + int(rng.exponential(4 * share / max(1e-3, 1 - share)) * SAMPLE_RATE)
    return np.convolve(gate, np.ones(800) / 800, mode="same")


def run_videos(worker, jobs, workers: int, what: str):
    """worker(job) for every job, in order: here, or in `workers` processes."""
    if workers <= 1:
        return [worker(job) for job in progress(jobs, desc=what, unit="video")]
    with ProcessPoolExecutor(workers) as pool:
        return list(progress(pool.map(worker, jobs, chunksize=2), total=len(jobs), desc=what, unit="video"))
