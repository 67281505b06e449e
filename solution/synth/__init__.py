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
  intensities would reach on each split (a release of several tracks, the Aff-Wild2 one for
  EXPR and AU: one such entry per track, keyed by its name; Track.ceiling_of finds a track's);
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
import importlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from solution import fileio
from solution.synth.emi import timed_words  # noqa: F401 - scripts use synth.timed_words
from solution.synth.world import (ACTIONS, RELEASE_SETTINGS, WORLD_KNOBS, Config, make_subject,  # noqa: F401
                                  vit_standin, wav2vec2_standin)
from solution.tracks import get_track, track_names
from solution.tracks.emi import EMI_TARGETS  # noqa: F401 - scripts use synth.EMI_TARGETS


def family(track: str):
    """The generator module of the track's release family (solution/synth/<family>.py)."""
    return importlib.import_module(f"solution.synth.{get_track(track).family}")


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


def generate(track: str, out, seed: int = 0, workers: int = 0, overwrite: bool = False, **overrides) -> dict:
    """Write a synthetic release to `out`; returns the ceiling (ceiling.json: {split: entry}, or
    {track: {split: entry}} for a release of several tracks). A finished folder with the
    same settings is left as it is (its synth_config.json marks it complete)."""
    import os

    out = Path(out)
    generator = family(track)
    settings = {**generator.DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    generator.prepare(settings)
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
    if cfg.videos < 5 or cfg.subjects < 5:
        raise SystemExit("[synth] need at least 5 videos and 5 subjects so every split has data")
    if not 0 <= cfg.length_spread < 1:
        raise SystemExit(f"[synth] --length-spread must be in [0, 1), got {cfg.length_spread}")
    if not 0 <= cfg.timed_transcripts <= 1:
        raise SystemExit(f"[synth] --timed-transcripts must be a share in [0, 1], got {cfg.timed_transcripts}")
    generator.check(cfg)
    if cfg.subjects > cfg.videos:
        raise SystemExit(f"[synth] --subjects ({cfg.subjects}) cannot exceed --videos ({cfg.videos})")
    if marker.exists():
        marker.unlink()
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(4, os.cpu_count() or 1)
    ceiling = generator.generate(cfg, out, workers)
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
    parser.add_argument("--track", choices=track_names(), default=track_names()[0],
                        help=f"which release (default: {track_names()[0]}); expr and au write one Aff-Wild2 "
                             "release with the VA, EXPR and AU annotations of the same videos")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the release into")
    parser.add_argument("--videos", type=int, help="number of videos (default: emi 96, va/expr/au 16)")
    parser.add_argument("--subjects", type=int, help="number of subjects (emi; default: 16)")
    parser.add_argument("--seconds", type=float, help="mean length of a video (default: emi 4, va/expr/au 12)")
    parser.add_argument("--length-spread", type=float,
                        help="lengths vary over about (1 +/- spread) x seconds, a few up to (1 + 2 spread) x; "
                             "0 gives every video the same length (default: 0.5)")
    parser.add_argument("--fps", type=float, help="video frame rate (default: emi 15, va/expr/au 30)")
    parser.add_argument("--size", type=int, help="frame width and height in pixels (default: 112)")
    parser.add_argument("--label-noise", type=float, help="std of label noise (default: emi 0.12; VA's annotations 0.2)")
    parser.add_argument("--timed-transcripts", type=float, metavar="SHARE",
                        help="EMI: share of transcripts written as word-timed ASR JSON instead of .txt (default: 0)")
    parser.add_argument("--other-fps", type=float, metavar="FPS",
                        help="Aff-Wild2 (va, expr, au): the second video (in test) at this frame rate; 0 for none (default: 25)")
    parser.add_argument("--long-seconds", type=float, metavar="S",
                        help="Aff-Wild2 (va, expr, au): the first video (in train) this long; 0 for none (default: 120)")
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
    keyed = [name for name in track_names() if name in ceiling]  # a release of several tracks: one ceiling each
    for name in keyed or [args.track]:
        for split, entry in get_track(name).ceiling_of(ceiling).items():
            print(f"[synth] {name.upper() + ' ' if keyed else ''}ceiling on {split}: mean {entry['metric']} "
                  f"{entry['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
