"""Reading and writing video and audio with PyAV; the one place that touches codecs.

Readers raise MediaError naming the file and what is wrong, so a corrupt upload never
surfaces as a bare FFmpeg traceback.
"""
from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from solution.fileio import atomic_path

SAMPLE_RATE = 16000


class MediaError(RuntimeError):
    """A media file is missing, unreadable, or has no stream of the needed kind."""


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: unreadable media file ({exc})") from exc


def video_info(path, count: bool = True) -> dict:
    """Frame count, rate, size and duration without decoding (frame count from the header,
    or from a decode pass when the container does not store it). With count=False there is
    never a decode pass: a header without a frame count gives the count its duration and rate
    imply, and `frames_estimated` is True (a probe of milliseconds, for checks that tolerate a
    frame or two)."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = stream.frames
        estimated = False
        if not frames and not count:
            seconds = (float(stream.duration * stream.time_base) if stream.duration is not None and stream.time_base
                       else (container.duration / 1e6 if container.duration is not None else 0.0))
            frames, estimated = int(round(seconds * fps)), True
        if not frames:
            try:
                frames = sum(1 for _ in container.decode(video=0))
            except av.error.FFmpegError as exc:
                raise MediaError(f"{path}: corrupt video stream ({exc})") from exc
            estimated = False
        info = {"frames": int(frames), "fps": fps, "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "duration": frames / fps if fps else 0.0,
                "has_audio": bool(container.streams.audio)}
        if estimated:
            info["frames_estimated"] = True
        return info


def iter_video_frames(path, fps: float | None = None):
    """Yield (time_seconds, RGB uint8 frame). With `fps`, keep the frame nearest each 1/fps
    tick (frames are never duplicated, so a low-rate source yields fewer frames)."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        next_tick = 0.0
        got_any = False
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
                if fps is not None and t + 0.5 / (fps * 4) < next_tick:
                    continue
                if fps is not None:
                    next_tick = (np.floor(t * fps + 1e-6) + 1) / fps
                got_any = True
                yield t, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt video stream ({exc})") from exc
        if not got_any:
            raise MediaError(f"{path}: video stream has no decodable frames")


def read_video(path, fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) uint8 and their times in seconds."""
    times, frames = zip(*iter_video_frames(path, fps))
    return np.stack(frames), np.asarray(times)


def read_audio(path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from an audio file or a video's audio track.

    Encoder padding (AAC/MP3 priming and tail) is trimmed to the stream's stated duration.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        native_rate = stream.codec_context.sample_rate or sample_rate
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=native_rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                for out in to_mono.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in to_mono.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt audio stream ({exc})") from exc
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if duration is not None:
        samples = samples[: int(round(duration * native_rate))]
    if native_rate != sample_rate and samples.size:
        import torch
        import torchaudio.functional as AF

        samples = AF.resample(torch.from_numpy(samples), native_rate, sample_rate).numpy()
    return samples


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    samples = np.clip(np.asarray(samples, np.float32), -1.0, 1.0)
    chunk = stream.codec_context.frame_size or 1152
    for start in range(0, len(samples), chunk):
        part = samples[start:start + chunk]
        frame = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_audio(path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio as .mp3 (LAME) or .wav (PCM 16-bit), atomically."""
    path = Path(path)
    codec = {".mp3": ("mp3", "libmp3lame"), ".wav": ("wav", "pcm_s16le")}.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"{path}: audio must be .mp3 or .wav")
    fmt, name = codec
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = container.add_stream(name, rate=sample_rate, layout="mono")
            if name == "libmp3lame":
                stream.bit_rate = 48000
            _encode_audio(container, stream, samples, sample_rate)


def yuv420p_frame(image: np.ndarray) -> av.VideoFrame:
    """RGB uint8 (H, W, 3) -> a yuv420p frame whose row padding is zeroed.

    x264 reads a little past each row; left to swscale or PyAV, that padding holds whatever
    the heap held before, and identical frames encoded to different files from run to run.
    Converting here (BT.601 limited range) and zeroing the padding makes encoding repeatable.
    """
    rgb = image.astype(np.float32)
    y = 16 + 0.257 * rgb[..., 0] + 0.504 * rgb[..., 1] + 0.098 * rgb[..., 2]
    u = 128 - 0.148 * rgb[..., 0] - 0.291 * rgb[..., 1] + 0.439 * rgb[..., 2]
    v = 128 + 0.439 * rgb[..., 0] - 0.368 * rgb[..., 1] - 0.071 * rgb[..., 2]
    h, w = y.shape
    half = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean((1, 3))  # noqa: E731
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, values in zip(frame.planes, (y, half(u), half(v))):
        padded = np.zeros((plane.buffer_size // plane.line_size, plane.line_size), np.uint8)
        padded[: values.shape[0], : values.shape[1]] = np.clip(np.round(values), 0, 255)
        plane.update(padded)
    return frame


def write_video(path, frames, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = SAMPLE_RATE, crf: int = 23) -> None:
    """Write RGB frames as H.264 .mp4 (plus an AAC track if `audio`), atomically. `frames` is
    an array (T, H, W, 3) or any iterable of such arrays (chunks of frames, so a long video is
    written without holding it whole).

    Same frames, same bytes: one encoder thread, explicit timestamps, and x264's assembly
    off, since its SIMD routines read past the last row of small frames and so depended on
    whatever memory lay there (seen at 48 and 64 pixels wide).
    """
    chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    first = np.asarray(next(chunks), np.uint8)
    height, width = first.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: frame size {width}x{height} must be even in both directions")
    frames = (image for chunk in itertools.chain([first], chunks) for image in np.asarray(chunk, np.uint8))
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=int(round(fps)),
                                         options={"crf": str(crf), "preset": "veryfast", "threads": "1",
                                                  "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:asm=0"})
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.codec_context.thread_count = 1
            audio_stream = None
            if audio is not None:
                audio_stream = container.add_stream("aac", rate=sample_rate, layout="mono")
            for index, image in enumerate(frames):
                frame = yuv420p_frame(image)
                # Explicit timestamps: x264's rate control reads them, and unset ones vary.
                frame.pts, frame.time_base = index, Fraction(1, int(round(fps)))
                for packet in video.encode(frame):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
            if audio_stream is not None:
                _encode_audio(container, audio_stream, audio, sample_rate)
