"""Voice input for the audio extractors: decoded 16 kHz mono audio and its quality cues.

An empty or silent file counts as a missing modality (the caller records why). The cues
are measured on 25 ms frames every 10 ms: level, a voice-activity estimate (frames more
than 6 dB above the noise floor), and an SNR estimate (the 90th minus the 10th percentile
of frame energy in dB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from solution.media import SAMPLE_RATE, MediaError, read_audio

SILENCE_DBFS = -60.0  # below this RMS a recording carries no usable voice
HOP = SAMPLE_RATE // 100
WINDOW = SAMPLE_RATE // 40


class MissingAudio(Exception):
    """The audio is absent, empty or silent: the modality is missing for this video."""


def load_voice(audio: Path | None, video: Path | None) -> np.ndarray:
    source = audio
    if source is None:
        if video is None:
            raise MissingAudio("no audio file and no video")
        source = video
    try:
        samples = read_audio(source, SAMPLE_RATE)
    except MediaError as exc:
        if audio is None and "no audio stream" in str(exc):
            raise MissingAudio(f"no audio file, and {video.name} has no audio track") from exc
        raise
    if samples.size < WINDOW:
        raise MissingAudio(f"{source.name}: empty audio ({samples.size} samples)")
    level = 20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) + 1e-12)
    if level < SILENCE_DBFS:
        raise MissingAudio(f"{source.name}: silent audio ({level:.0f} dBFS)")
    return samples


def frame_energy_db(samples: np.ndarray) -> np.ndarray:
    count = 1 + max(0, (len(samples) - WINDOW) // HOP)
    index = np.arange(WINDOW)[None, :] + HOP * np.arange(count)[:, None]
    frames = samples[np.minimum(index, len(samples) - 1)].astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def voice_cues(samples: np.ndarray):
    """-> per-video cues and per-frame voice activity at 100 Hz."""
    energy = frame_energy_db(samples)
    floor, peak = np.percentile(energy, 10), np.percentile(energy, 90)
    active = (energy > floor + 6) & (energy > SILENCE_DBFS)
    cues = {"level_db": float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12)),
            "snr_db": float(peak - floor), "speech_share": float(active.mean())}
    return cues, active.astype(np.float32)
