"""Throughput of each feature extractor on a release (default: the demo data run_all.sh makes).

    python bench/features.py [--data work/demo-emi] [--videos 20] [--extractors hog,egemaps,fbank,minilm]

Prints, per stage: face frames per second (decode + detection + crop), visual extractor
frames per second, audio extractor seconds of audio per second, text sentences per second.
One process, CPU unless --device says otherwise.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solution.extractors import create_extractor  # noqa: E402
from solution.faces import DETECTORS, MtcnnDetector, faces_from_crops, faces_from_video, resolve_detector  # noqa: E402
from solution.layouts import detect_track, read_transcript, release_videos  # noqa: E402
from solution.media import SAMPLE_RATE  # noqa: E402
from solution.voice import MissingAudio, load_voice  # noqa: E402


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("work/demo-emi"),
                        help="the release to read (default work/demo-emi, the demo run_all.sh makes)")
    parser.add_argument("--videos", type=int, default=20, help="how many of its videos to time (default 20)")
    parser.add_argument("--extractors", default="hog,egemaps,fbank,minilm",
                        help="comma list of extractor specs, as solution.features takes them "
                             "(default hog,egemaps,fbank,minilm)")
    parser.add_argument("--face", default="auto", choices=DETECTORS,
                        help="face detector (see solution/faces.py; default auto)")
    parser.add_argument("--fps", type=float, default=5.0, help="face frames sampled per second (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for neural extractors (default cpu)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: run `bash run_all.sh` (or python -m solution.synth) first")
    import torch

    torch.set_num_threads(1)
    sources = release_videos(detect_track(args.data), args.data)[: args.videos]
    face = resolve_detector(args.face, any(s.crops for s in sources))
    detector = MtcnnDetector(args.device) if face == "mtcnn" else None
    # Models load on first call; load them here so the timings below are compute only.
    extractors = {spec: create_extractor(spec, args.device).load() for spec in args.extractors.split(",") if spec}

    tracks, voices, texts, face_time = [], [], [], 0.0
    for src in sources:
        if face == "crops":
            track, seconds = timed(faces_from_crops, src.crops, src.video, args.fps, 112)
        else:
            track, seconds = timed(faces_from_video, src.video, args.fps, 112, detector)
        tracks.append(track)
        face_time += seconds
        try:
            voices.append(load_voice(src.audio, src.video))
        except MissingAudio:
            pass
        if src.transcript:
            texts.append(read_transcript(src.transcript).text)
    frames = sum(len(t.faces) for t in tracks)
    audio_seconds = sum(len(v) for v in voices) / SAMPLE_RATE
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, "
          f"{len(sources)} videos of {args.data}")
    print(f"{'stage':<28}{'throughput':>16}  unit")
    print(f"{'faces (' + face + ')':<28}{frames / face_time:>16.1f}  frames/s (decode + detect + crop)")
    for spec, extractor in extractors.items():
        if extractor.modality == "visual":
            _, seconds = timed(lambda: [extractor(t.faces) for t in tracks])
            print(f"{spec:<28}{frames / seconds:>16.1f}  frames/s")
        elif extractor.modality == "audio":
            _, seconds = timed(lambda: [extractor(v) for v in voices])
            print(f"{spec:<28}{audio_seconds / seconds:>16.1f}  audio seconds/s")
        elif extractor.modality == "text":
            _, seconds = timed(lambda: [extractor(t) for t in texts])
            print(f"{spec:<28}{len(texts) / max(seconds, 1e-9):>16.1f}  sentences/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
