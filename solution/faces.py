"""Face frames for the visual extractors: sampled at a chosen rate, cropped, and scored.

Detectors (`--face`):
  crops  the release's own aligned crops (Aff-Wild2 cropped_aligned/); a missing crop = no face
  mtcnn  facenet-pytorch's MTCNN (weights ship inside its wheel; an optional extra)
  none   a centred square of each frame; face cues are then unknown (NaN)
  auto   crops when the release has them, else mtcnn when installed, else none (logged)
Each frame gets a confidence in [0, 1] (0 = no face); frames without a detection reuse the
last good box (or the centre) so every sampled frame still yields a feature row.

A video is read in chunks of frames (`face_chunks_from_video`, `face_chunks_from_crops`):
memory grows with the chunk, never with the video's length, so a video of an hour costs
what one of a minute does. The whole-track functions join the chunks, for small inputs.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from solution.media import MediaError, iter_video_frames, video_info

log = logging.getLogger(__name__)
DETECTORS = ("auto", "crops", "mtcnn", "none")
VIDEO_CHUNK = 64   # decoded frames held at once (full-size frames: about 2.7 MB each at 720p)
CROP_CHUNK = 256   # face crops held at once (about 37 kB each at 112 px)


@dataclass
class FaceTrack:
    faces: np.ndarray        # (T, size, size, 3) uint8
    times: np.ndarray        # (T,) seconds
    confidence: np.ndarray   # (T,) detection confidence, 0 where no face; NaN when unknown
    fps: float


def mtcnn_available() -> bool:
    """Whether facenet-pytorch is installed, found without importing it: importing it imports
    torch (seconds), which a rerun with every entry cached must not pay. An installed package
    that fails to import is named by MtcnnDetector, when a video is first detected."""
    from importlib.util import find_spec

    return find_spec("facenet_pytorch") is not None


def resolve_detector(name: str, has_crops: bool) -> str:
    if name != "auto":
        if name == "mtcnn" and not mtcnn_available():
            raise RuntimeError("--face mtcnn needs facenet-pytorch: "
                               "pip install --no-deps facenet-pytorch==2.6.0 requests")
        return name
    if has_crops:
        return "crops"
    if mtcnn_available():
        return "mtcnn"
    log.warning("no face detector installed (facenet-pytorch): using centred crops, face cues unknown")
    return "none"


class MtcnnDetector:
    def __init__(self, device: str = "cpu"):
        try:
            from facenet_pytorch import MTCNN
        except Exception as exc:  # noqa: BLE001 - installed but broken: say so, and the way around it
            raise RuntimeError(f"facenet-pytorch is installed but does not import ({type(exc).__name__}: {exc}); "
                               "mend it, or pass --face none (centred crops, face cues unknown)") from exc

        self.device = device
        self.models = {}
        self.MTCNN = MTCNN

    def __call__(self, frames: np.ndarray):
        """-> boxes (T, 4) (NaN where none) and confidences (T,)."""
        # The smallest face worth finding scales with the frame, which keeps the image pyramid short.
        min_size = max(20, int(0.2 * min(frames.shape[1:3])))
        if min_size not in self.models:
            self.models[min_size] = self.MTCNN(keep_all=False, min_face_size=min_size, device=self.device)
        boxes, probs = self.models[min_size].detect(list(frames))
        out_boxes = np.full((len(frames), 4), np.nan, np.float32)
        out_conf = np.zeros(len(frames), np.float32)
        for i, (box, prob) in enumerate(zip(boxes, probs)):
            if box is not None and prob is not None and prob[0] is not None:
                out_boxes[i], out_conf[i] = box[0], prob[0]
        return out_boxes, out_conf


def _square_crop(frame: np.ndarray, box, size: int, margin: float = 1.25) -> np.ndarray:
    h, w = frame.shape[:2]
    if box is None:
        side = min(h, w)
        cx, cy = w / 2, h / 2
    else:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * margin
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side = int(round(side))
    padded = np.zeros((side, side, 3), np.uint8)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        padded[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = frame[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(padded).resize((size, size), Image.BILINEAR))


def face_chunks_from_video(path: Path, fps: float, size: int, detector, chunk: int = VIDEO_CHUNK) -> Iterator[FaceTrack]:
    """Faces of a video sampled at `fps`, detected and cropped `chunk` frames at a time; the
    last good box carries over from one chunk to the next."""
    last = None

    def crop(times, frames):
        nonlocal last
        frames = np.stack(frames)
        if detector is None:
            boxes = np.full((len(frames), 4), np.nan, np.float32)
            confidence = np.full(len(frames), np.nan, np.float32)
        else:
            boxes, confidence = detector(frames)
        faces = []
        for frame, box in zip(frames, boxes):
            if not np.isnan(box).any():
                last = box
            faces.append(_square_crop(frame, last, size))
        return FaceTrack(np.stack(faces), np.asarray(times, np.float32), confidence, fps)

    times, frames = [], []
    for t, frame in iter_video_frames(path, fps):
        times.append(t)
        frames.append(frame)
        if len(frames) == chunk:
            yield crop(times, frames)
            times, frames = [], []
    if frames:
        yield crop(times, frames)


def face_chunks_from_crops(crops: Path, video: Path | None, fps: float, size: int,
                           chunk: int = CROP_CHUNK) -> Iterator[FaceTrack]:
    """Aff-Wild2 crops, one per video frame (1-based names), sampled at `fps`, `chunk` at a
    time; a frame without a crop (or with an unreadable one) is black with confidence 0."""
    if video is not None:
        info = video_info(video)
        native, count = info["fps"], info["frames"]
    else:
        names = sorted(crops.glob("*.jpg"))
        if not names:
            raise MediaError(f"{crops}: no face crops and no video to count frames from")
        native, count = 30.0, int(names[-1].stem)
        log.warning("%s: no video file; assuming 30 fps and %d frames", crops, count)
    step = max(1.0, native / fps)
    picks = np.unique(np.round(np.arange(0, count, step)).astype(int))
    picks = picks[picks < count]
    for start in range(0, len(picks), chunk):
        part = picks[start:start + chunk]
        faces = np.zeros((len(part), size, size, 3), np.uint8)
        confidence = np.zeros(len(part), np.float32)
        for row, index in enumerate(part):
            path = crops / f"{index + 1:05d}.jpg"
            if path.is_file():
                try:
                    with Image.open(path) as image:
                        faces[row] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
                    confidence[row] = 1.0
                except OSError as exc:
                    log.warning("%s: unreadable crop (%s); frame treated as faceless", path, exc)
        yield FaceTrack(faces, (part / native).astype(np.float32), confidence, native / step)


def join_tracks(chunks) -> FaceTrack:
    chunks = list(chunks)
    return FaceTrack(np.concatenate([c.faces for c in chunks]), np.concatenate([c.times for c in chunks]),
                     np.concatenate([c.confidence for c in chunks]), chunks[0].fps)


def faces_from_video(path: Path, fps: float, size: int, detector) -> FaceTrack:
    return join_tracks(face_chunks_from_video(path, fps, size, detector))


def faces_from_crops(crops: Path, video: Path | None, fps: float, size: int) -> FaceTrack:
    """Every sampled crop of a video at once (see face_chunks_from_crops)."""
    return join_tracks(face_chunks_from_crops(crops, video, fps, size))


def face_cues(track: FaceTrack) -> dict:
    conf = track.confidence
    if np.isnan(conf).all():
        return {"face_share": float("nan"), "face_confidence": float("nan")}
    found = conf > 0.5
    return {"face_share": float(found.mean()),
            "face_confidence": float(conf[found].mean()) if found.any() else 0.0}
