"""Streams: which cache folders feed each modality, the one place they are chosen and named.

A modality (visual, audio, text) is the concatenation of one or more cache streams (e.g.
visual = hog + organizer:vit). Training resolves them from the cache (resolve_streams: the
newest folder of each spec that covers every video); a run records them as `spec@folder`
keys (stream_keys), and predicting a new release pins a checkpoint's very folders again
(pinned_streams, pin_streams) instead of resolving anew. VideoStore takes resolved streams.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from solution import cache, fileio
from solution.errors import DataError
from solution.readers import LATENT_FOLDERS

log = logging.getLogger(__name__)
MODALITIES = ("visual", "audio", "text")
ORGANIZER_MODALITY = {"vit": "visual", "face": "visual", "wav2vec2": "audio", "audio": "audio",
                      "latent_face": "visual", "latent_voice": "audio"}  # latent_*: solution.synth latents=true


@dataclass(frozen=True)
class Stream:
    spec: str           # the extractor spec, e.g. "hog" or "organizer:vit"
    modality: str       # visual | audio | text
    folder: Path
    dim: int
    cache_modality: str  # the cache folder's own modality ("organizer" for the pickles)
    kind: str = ""      # organizer kind
    entry_keys: dict = field(default_factory=dict, compare=False)  # video -> its entry's source key


def _folder_info(folder: Path) -> dict | None:
    spec_file = folder / "spec.json"
    if not spec_file.is_file():
        return None
    info = fileio.read_json(spec_file, "stream spec", "delete its folder and run python -m solution.features again")
    info["dim"] = cache.read_manifest(folder).get("dim")
    info["mtime"] = spec_file.stat().st_mtime
    return info


def stream_modality(info: dict) -> tuple[str, str]:
    """(modality, organizer kind) of a cache folder."""
    if info["modality"] != "organizer":
        return info["modality"], ""
    kind = info["extractor"].split(":", 1)[1]
    if kind not in ORGANIZER_MODALITY:
        raise DataError(f"organizer feature {kind!r}: unknown modality; name the streams explicitly (--set streams=...)")
    return ORGANIZER_MODALITY[kind], kind


def resolve_streams(work, sources: dict, wanted: dict | None = None) -> dict[str, list[Stream]]:
    """modality -> the cache streams that cover every video in `sources` ({key: VideoSources}).
    `wanted` maps a modality to extractor specs (None: every cached stream, except that the
    synthetic generator's clean latent streams are never mixed in with others: they are read by
    default only when the cache holds nothing else for these videos). Where one spec was
    extracted with several settings, the newest folder that covers every video is used."""
    root = cache.features_root(work)
    cache.load_identities(work)
    folders = [info | {"folder": p} for p in sorted(root.glob("*/")) if (info := _folder_info(p))]
    if not folders:
        raise DataError(f"{root}: no features cache; run python -m solution.features --data DATA --work {work}")
    by_spec: dict[str, list[dict]] = {}
    for info in sorted(folders, key=lambda i: -i["mtime"]):
        by_spec.setdefault(info["extractor"], []).append(info)
    if wanted:
        for modality, specs in wanted.items():
            if modality not in MODALITIES:
                raise DataError(f"unknown modality {modality!r} in streams; use {MODALITIES}")
            for spec in specs:
                if spec not in by_spec:
                    raise DataError(f"no cached features for {spec!r} in {root}; cached: {sorted(by_spec)}")
        chosen = {spec: m for m, specs in wanted.items() for spec in specs}
    else:
        chosen = {spec: stream_modality(infos[0])[0] for spec, infos in by_spec.items()}
    streams: dict[str, list[Stream]] = {m: [] for m in MODALITIES}
    for spec in sorted(chosen):
        best, best_missing = None, None
        # Every folder of one spec reads the same inputs: the videos' source keys are computed once.
        entry_keys = {k: cache.stream_source_key(by_spec[spec][0], src) for k, src in sources.items()}
        for info in by_spec[spec]:
            found = {k: cache.status(info["folder"], k, entry_keys[k]) for k in sources}
            missing = [k for k, state in found.items() if state is None]
            if not missing:
                best = info
                break
            if best_missing is None:
                best_missing = (info, missing, sum(state == "ok" for state in found.values()))
        if best is None:
            info, missing, usable = best_missing
            if wanted is None and usable == 0:
                continue  # extracted for another release only (at most its "no input" records match)
            raise DataError(f"features {spec!r} missing for {len(missing)} of {len(sources)} video(s) "
                            f"(e.g. {missing[:5]}) in {info['folder']}; run python -m solution.features again")
        if not best["dim"]:
            raise DataError(f"{best['folder']}: no manifest with the feature width; run python -m solution.features again")
        modality, kind = stream_modality(best)
        streams[chosen[spec]].append(Stream(spec, chosen[spec], best["folder"], int(best["dim"]), best["modality"], kind,
                                            entry_keys))
    streams = {m: s for m, s in streams.items() if s}
    if wanted is None:
        kept = {m: [s for s in items if s.kind not in LATENT_FOLDERS] for m, items in streams.items()}
        kept = {m: items for m, items in kept.items() if items}
        if kept and kept != streams:  # clean latents beside real features: a leak unless asked for by name
            log.info("not reading the generator's latent streams (%s) beside the other features; name them in "
                     "streams to train on them", ", ".join(s.spec for items in streams.values() for s in items
                                                          if s.kind in LATENT_FOLDERS))
            streams = kept
    if not streams:
        raise DataError(f"{root}: no cached stream covers this release's videos; run python -m solution.features "
                        "--data DATA --work WORK")
    cache.save_identities(work)  # a release moved since the features stage: the next stage reads no file again
    return streams


def has_timed_entries(stream: Stream, keys=None) -> bool:
    """Whether any of the stream's entries for the store's videos (or for `keys`) holds word
    spans: read from the manifest, or from the entry itself when the manifest does not list it."""
    listed = cache.read_manifest(stream.folder).get("entries", {})
    wanted = None if keys is None else set(keys)
    for vid, key in stream.entry_keys.items():
        if wanted is not None and vid not in wanted:
            continue
        info = listed.get(f"{vid}.{key}")
        if info is None:
            if cache.status(stream.folder, vid, key) != "ok":
                continue
            info = cache.entry_meta(stream.folder, vid, key)
        if info.get("timed"):
            return True
    return False


def stream_key(stream: Stream) -> str:
    """"hog@visual-hog-6f28a3eb20": the spec and the cache folder it was read from."""
    return f"{stream.spec}@{stream.folder.name}"


def parse_stream_key(item: str) -> tuple[str, str]:
    """"hog@visual-hog-6f28a3eb20" -> ("hog", "visual-hog-6f28a3eb20") (a spec may hold '@')."""
    spec, sep, folder = item.rpartition("@")
    if not sep:
        raise DataError(f"stream {item!r}: not of the form spec@folder")
    return spec, folder


def stream_keys(streams: dict[str, list[Stream]]) -> dict:
    """modality -> its streams' keys, in the order the modalities are concatenated."""
    return {m: [stream_key(s) for s in streams[m]] for m in MODALITIES if m in streams}


# ---- a checkpoint's streams, pinned

@dataclass
class Pinned:
    spec: str           # extractor spec, e.g. "hog"
    modality: str       # the model's modality it feeds
    folder: Path        # the cache folder the checkpoints were trained on
    info: dict          # its spec.json
    dim: int            # its width before this run


def pinned_streams(work, checkpoints: dict[str, list[list[Path]]], payloads: dict[Path, dict]) -> dict[str, Pinned]:
    """Every cache folder any checkpoint was trained on, read from its spec.json."""
    root = cache.features_root(work)
    out: dict[str, Pinned] = {}
    for run, folds in checkpoints.items():
        for paths in folds:
            for path in paths:
                for modality, items in payloads[path]["settings"]["streams"].items():
                    for item in items:
                        spec, name = parse_stream_key(item)
                        if item in out:
                            continue
                        folder = root / name
                        if not (folder / "spec.json").is_file():
                            raise DataError(
                                f"stream {spec!r}: {path} was trained on features from {folder}, which is gone (no "
                                "spec.json), so the extractor settings it was made with are unknown; restore that "
                                "folder (or retrain) to predict with these checkpoints")
                        info = json.loads((folder / "spec.json").read_text())
                        if info.get("extractor") != spec:
                            raise DataError(f"stream {spec!r}: {folder}/spec.json is for {info.get('extractor')!r}")
                        dim = int(cache.read_manifest(folder).get("dim") or 0)
                        out[item] = Pinned(spec, modality, folder, info, dim)
    return out


def pin_streams(pinned: dict[str, Pinned], named: dict, sources: dict, keys: list[str]) -> dict[str, list[Stream]]:
    """The streams a checkpoint recorded (`named`: modality -> spec@folder keys), read from
    exactly those folders for the videos in `sources`; every video in `keys` must have an entry."""
    streams: dict[str, list[Stream]] = {}
    for modality in MODALITIES:
        for item in named.get(modality, []):
            p = pinned[item]
            manifest_dim = int(cache.read_manifest(p.folder).get("dim") or 0)
            entry_keys = {k: cache.stream_source_key(p.info, src) for k, src in sources.items()}
            missing = [k for k in keys if cache.status(p.folder, k, entry_keys[k]) is None]
            if missing:
                raise DataError(f"stream {p.spec!r}: no entry in {p.folder} for {len(missing)} test video(s), "
                                f"e.g. {missing[:5]}")
            _, kind = stream_modality(p.info)
            streams.setdefault(modality, []).append(
                Stream(p.spec, modality, p.folder, manifest_dim, p.info["modality"], kind, entry_keys))
    return streams
