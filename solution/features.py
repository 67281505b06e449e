"""python -m solution.features: media -> cached per-frame features and quality cues.

    python -m solution.features --data DIR --work WORK                  # offline defaults
    python -m solution.features --data DIR --work WORK --visual hog,timm:resnet50?weights=/m/r50.safetensors \\
        --audio egemaps,hf-audio:/models/wav2vec2-large --text minilm --device cuda
    python -m solution.features --data DIR --work WORK --shard 0/4      # one of four processes or machines

Every video of every split gets one cache entry per extractor, keyed by the files it was
computed from (see solution/cache.py), so a second release in the same WORK never reuses
the first one's features. A second run skips finished entries without loading any model,
an interrupted run resumes, shards split the videos by position. Bad media never stops the
run: an unreadable video, an empty or silent audio file, a missing transcript, an organizer
pickle whose width differs from the rest of its folder are recorded in failures.csv with
the id and reason, the modality is marked missing for that video, and the run ends with a
summary; --strict makes the first failure an error instead. A model that cannot be loaded
stops the run with an error naming its spec.

Text. A plain transcript (`transcripts/<id>.txt`) is one embedding for the whole video. A
timed one (`transcripts/<id>.json`, ASR output with word times: see
solution.transcripts.read_transcript) is one embedding per word or ASR chunk, the rows' `times`
their starts and `ends` their ends (see solution/cache.py); a malformed one is a recorded
failure naming the file. `--asr` transcribes videos without a transcript with word
timestamps, and saves each as WORK/transcripts/<id>.txt and .json.

Organizer-style folders (`<folder>/<id>.pkl`, cached as organizer:<folder>): `--organizer auto`
takes the organizers' vit/ and wav2vec2/; the synthetic generator's clean latent streams
(latent_face/, latent_voice/, EMI and VA; solution.synth latents=true) only when named, e.g.
`--visual none --audio none --text none --organizer latent_face,latent_voice`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from solution import cache
from solution.config import apply_stage_config
from solution.errors import DataError
from solution.extraction import Plan, run
from solution.extractors import REGISTRY, parse_spec
from solution.faces import DETECTORS, resolve_detector
from solution.listing import add_test_listing_option, export_listing
from solution.readers import ORGANIZER_FOLDERS, VideoSources
from solution.tracks import detect_track, release_videos, track_names

log = logging.getLogger("features")
DEFAULTS = {"visual": "hog", "audio": "egemaps", "text": "minilm", "organizer": "auto"}


# ------------------------------------------------------------------ the run

def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 0/4; got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return index, count


def choose_specs(args, sources: list[VideoSources]) -> dict:
    """Explicit flags win; a default is dropped (and said) when the release has nothing for it."""
    has = {"visual": any(s.video or s.crops for s in sources),
           "audio": any(s.audio or s.video for s in sources),
           "text": any(s.transcript for s in sources) or bool(args.asr)}
    specs = {}
    for modality in ("visual", "audio", "text"):
        value = getattr(args, modality)
        if value is None:
            if not has[modality]:
                log.info("no %s input in this release: skipping %s features", modality, modality)
                continue
            value = DEFAULTS[modality]
        specs[modality] = [] if value == "none" else [s for s in value.split(",") if s]
    # auto: the organizers' folders present; the generator's latent streams only when named.
    kinds = sorted({k for s in sources for k in s.organizer if k in ORGANIZER_FOLDERS})
    value = args.organizer
    if value == "auto":
        specs["organizer"] = [f"organizer:{k}" for k in kinds]
    elif value != "none":
        specs["organizer"] = [f"organizer:{k}" for k in value.split(",") if k]
    for modality, items in specs.items():
        for spec in items:
            name, _, _ = parse_spec(spec)
            if REGISTRY[name].modality != modality:
                raise ValueError(f"--{modality} {spec}: {name} is a {REGISTRY[name].modality} extractor")
    return {m: s for m, s in specs.items() if s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.features", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1] + "\n" + sys.modules["solution.extractors"].__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the release folder")
    parser.add_argument("--work", type=Path, required=True, help="where the cache goes (WORK/features/)")
    parser.add_argument("--track", choices=track_names(), help="default: detected from the release")
    parser.add_argument("--visual", help=f"comma list of visual extractors, or none (default {DEFAULTS['visual']})")
    parser.add_argument("--audio", help=f"comma list of audio extractors, or none (default {DEFAULTS['audio']})")
    parser.add_argument("--text", help=f"comma list of text extractors, or none (default {DEFAULTS['text']})")
    parser.add_argument("--organizer", default="auto",
                        help="comma list of organizer-style feature folders to cache, e.g. latent_face,latent_voice "
                             "(the generator's clean latent streams); auto: the organizers' vit and wav2vec2 when "
                             "present (default); none")
    parser.add_argument("--fps", type=float, default=5.0, help="face frames sampled per second")
    parser.add_argument("--face", choices=DETECTORS, default="auto", help="face detector (see solution/faces.py)")
    parser.add_argument("--face-size", type=int, default=112, help="face crop side in pixels")
    parser.add_argument("--asr", metavar="FOLDER", help="a Whisper model on disk: transcribe videos without a transcript, "
                        "with word times (saved as WORK/transcripts/<id>.txt and .json)")
    parser.add_argument("--splits", default="train,valid,test", help="which splits to extract")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="i/n", help="do every n-th video from the i-th (0-based)")
    parser.add_argument("--workers", type=int, default=1, help="processes on this machine")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for neural extractors")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per batch for neural extractors")
    parser.add_argument("--strict", action="store_true", help="stop at the first failure instead of recording it")
    parser.add_argument("--retry-failed", action="store_true", help="try recorded failures again")
    parser.add_argument("--config", type=Path, help="TOML file; its [features] table gives defaults for these options")
    add_test_listing_option(parser)
    args = apply_stage_config(parser, argv, "features")
    export_listing(args)
    logging.basicConfig(level=logging.INFO, format="[features] %(message)s")
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # its model-loading lines, once per worker
    try:
        track = args.track or detect_track(args.data)
        release = [s for s in release_videos(track, args.data) if s.split in args.splits.split(",")]
        index, count = args.shard
        sources = release[index::count]
        specs = choose_specs(args, sources)
        if not specs:
            raise DataError(f"{args.data}: nothing to extract (no media, transcripts or organizer features)")
        face = resolve_detector(args.face, any(s.crops for s in sources)) if "visual" in specs else "none"
        plan = Plan(args.work, specs, args.fps, face, args.face_size, args.asr, args.device, args.batch_size,
                    args.strict, args.retry_failed, threads=1 if args.workers > 1 else 0)
        log.info("%s release, %d videos (shard %d/%d), face detector: %s", track.upper(), len(sources), index, count, face)
        log.info("extractors: %s", ", ".join(s for v in specs.values() for s in v))
        summary = run(plan, sources, args.workers, release)
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.to_string(index=False))
    failures = summary["missing"].sum()
    if failures:
        print(f"[features] {failures} missing entries; reasons in {cache.features_root(args.work) / 'failures.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
