"""Throughput of each feature extractor on a release (default: the demo data run_all.sh makes).

    python bench/features.py [--data work/demo-emi] [--videos 20] [--extractors hog,egemaps,fbank,minilm]
    python bench/features.py --videos 3 --json          # JSON lines only

Prints, per stage: face frames per second (decode + detection + crop), visual extractor
frames per second, audio extractor seconds of audio per second, text sentences per second.
One process, --threads torch threads (default 1, as each of run_all.sh's feature workers on
a 2-core machine), CPU unless --device says otherwise. Each extractor's model is loaded
before it is timed (load_s, reported apart); the face stage runs once untimed on the first
video so the detector's construction is not timed either.

Output (stdout): one JSON line per stage ("bench": "features", with the extractor, its
modality, throughput and unit, the work done, seconds, and the machine), then a Markdown
table unless --json. An extractor that cannot load is a line with "error"; the others go on.
Progress on stderr. No demo data yet? `python -m solution.synth --track emi --out work/demo-emi`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, machine_info, missing_data, progress, rel, render  # noqa: E402

sys.path.insert(0, str(ROOT))
from solution.extractors import ModelLoadError, create_extractor  # noqa: E402
from solution.faces import DETECTORS, MtcnnDetector, faces_from_crops, faces_from_video, resolve_detector  # noqa: E402
from solution.layouts import detect_track, read_transcript, release_videos  # noqa: E402
from solution.media import SAMPLE_RATE  # noqa: E402
from solution.voice import MissingAudio, load_voice  # noqa: E402

DEFAULT_DATA = ROOT / "work" / "demo-emi"


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python bench/features.py", description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the release to read (default work/demo-emi, the demo run_all.sh makes)")
    parser.add_argument("--videos", type=int, default=20, help="how many of its videos to time (default 20)")
    parser.add_argument("--extractors", default="hog,egemaps,fbank,minilm",
                        help="comma list of extractor specs, as solution.features takes them "
                             "(default hog,egemaps,fbank,minilm)")
    parser.add_argument("--face", default="auto", choices=DETECTORS,
                        help="face detector (see solution/faces.py; default auto)")
    parser.add_argument("--fps", type=float, default=5.0, help="face frames sampled per second (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for neural extractors (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", action="store_true", help="JSON lines only, no Markdown table after them")
    parser.add_argument("--data-label", default=None, help=argparse.SUPPRESS)  # how --data is named in the output
    args = parser.parse_args(argv)
    if args.videos < 1:
        parser.error("--videos must be at least 1")
    if not args.data.is_dir():
        sys.exit(missing_data(args.data, "emi"))
    import torch

    torch.set_num_threads(args.threads)
    try:
        track = detect_track(args.data)
        sources = release_videos(track, args.data)[: args.videos]
    except Exception as exc:  # noqa: BLE001 - say which folder is not a release
        sys.exit(f"{args.data}: not a release this harness reads ({type(exc).__name__}: {exc})")
    if not sources:
        sys.exit(f"{args.data}: no videos found")
    face = resolve_detector(args.face, any(s.crops for s in sources))
    detector = MtcnnDetector(args.device) if face == "mtcnn" else None
    machine = machine_info(args.threads, args.device)
    common = {"bench": "features", "data": args.data_label or rel(args.data), "track": track, "videos": len(sources)}
    records = []

    def report(record: dict) -> None:
        record = {**common, **record, "machine": machine}
        emit(record)
        records.append(record)

    # Models load on first call; load them here so the timings below are compute only.
    extractors, loads = {}, {}
    for spec in [s for s in args.extractors.split(",") if s]:
        progress(f"features: loading {spec}")
        try:
            extractor, seconds = timed(lambda: create_extractor(spec, args.device).load())
        except (ModelLoadError, ValueError, ImportError, OSError) as exc:
            report({"extractor": spec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        extractors[spec], loads[spec] = extractor, round(seconds, 2)

    def faces_of(src):
        if face == "crops":
            return faces_from_crops(src.crops, src.video, args.fps, 112)
        return faces_from_video(src.video, args.fps, 112, detector)

    if sources[0].video is not None or face == "crops":
        faces_of(sources[0])  # untimed: builds the detector (and warms the decoder)
    tracks, voices, texts, face_time = [], [], [], 0.0
    for i, src in enumerate(sources):
        progress(f"features: faces, voice and text of video {i + 1}/{len(sources)} ({src.vid})")
        track_, seconds = timed(faces_of, src)
        tracks.append(track_)
        face_time += seconds
        try:
            voices.append(load_voice(src.audio, src.video))
        except MissingAudio:
            pass
        if src.transcript:
            texts.append(read_transcript(src.transcript).text)
    frames = sum(len(t.faces) for t in tracks)
    audio_seconds = sum(len(v) for v in voices) / SAMPLE_RATE
    report({"extractor": f"faces:{face}", "modality": "faces", "throughput": round(frames / max(face_time, 1e-9), 1),
            "unit": "frames/s", "what": "decode + detect + crop", "frames": frames, "seconds": round(face_time, 2),
            "fps": args.fps})
    for spec, extractor in extractors.items():
        progress(f"features: timing {spec}")
        if extractor.modality == "visual":
            _, seconds = timed(lambda: [extractor(t.faces) for t in tracks])
            work = {"throughput": round(frames / max(seconds, 1e-9), 1), "unit": "frames/s", "frames": frames}
        elif extractor.modality == "audio":
            _, seconds = timed(lambda: [extractor(v) for v in voices])
            work = {"throughput": round(audio_seconds / max(seconds, 1e-9), 1), "unit": "audio seconds/s",
                    "audio_seconds": round(audio_seconds, 1)}
        elif extractor.modality == "text":
            _, seconds = timed(lambda: [extractor(t) for t in texts])
            work = {"throughput": round(len(texts) / max(seconds, 1e-9), 1), "unit": "sentences/s",
                    "sentences": len(texts)}
        else:
            report({"extractor": spec, "modality": extractor.modality,
                    "error": "organizer features are read, not computed: nothing to time"})
            continue
        report({"extractor": spec, "modality": extractor.modality, **work, "seconds": round(seconds, 2),
                "load_s": loads[spec]})
    if not args.json:
        print("\n" + render(records), flush=True)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
