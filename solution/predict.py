"""python -m solution.predict: a new release's test videos -> a validated submission, from the saved checkpoints.

    python -m solution.predict --train-data DIR --data NEW --work WORK [--out-dir submissions --name NAME]
    python -m solution.predict --train-data DIR --work WORK                  # a test listing that arrived in DIR
    python -m solution.predict --train-data DIR --data NEW --work WORK --runs dual_stage,linear   # no saved blend

No training. The test set often arrives weeks after the training data: NEW is a full release
or just its test listing with the media and/or organizer features (EMI: test_split.csv with
raw/, audio/, transcripts/, vit/, wav2vec2/ as available; VA: a VA_Estimation_Challenge/
test_set.csv with batch*/ and cropped_aligned/). DIR and WORK are those of the training run.

1. The saved blend (WORK/<track>-<fingerprint>/predictions/blend.json, written by
   solution.ensemble; --blend another file; --runs: these runs with equal weights) names
   the runs; every fold's every seed's best.pt of each run must be there (an error lists
   what is missing).
2. The checkpoints name the cache folders they were trained on (`spec@folder`); each
   folder's spec.json holds the extractor settings. NEW's test videos are extracted with
   exactly those settings into those same folders (entries that exist are skipped). A
   folder that is gone, settings that no longer give the same folder (the extractor
   changed), or features of another width than the checkpoints were trained on stop the
   run with an error naming the stream and both values.
3. Each checkpoint predicts with a store pinned to its own folders (never another stream
   or folder of the same extractor), through the same code as training: seeds averaged
   per fold and written as the fold's test predictions, folds averaged, the saved blend
   applied (solution.blend.apply_blend), the prediction file written and zipped by
   solution.submission. Every number passes the same writers at the same precision as in a
   full run, so the same test videos give the same zip as the full run's submission
   (given the same --threads as training and the same feature inputs).

Writes WORK/<track>-<fingerprint>/predict/<NEW folder name>-<hash of its path>/ (or
--pred-dir): runs/<run>/fold<k>/test.csv, test.csv (EMI; test.txt for VA) and
predict.json (what was used), and the zip in --out-dir.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import torch

from solution import cache, fileio, submission
from solution.blend import apply_blend, read_blend
from solution.checkpoints import load_checkpoint, read_checkpoint
from solution.config import TrainConfig
from solution.data import VideoStore
from solution.errors import DataError
from solution.inference import average_predictions, frame_counts_to_predict, predict
from solution.predictions import prediction_filename, read_predictions, write_predictions
from solution.readers import VideoSources
from solution.runs import ReleaseWork, release_work
from solution.streams import Pinned, has_timed_entries, parse_stream_key, pin_streams, pinned_streams
from solution.tracks import detect_track, open_release

log = logging.getLogger("predict")


# ------------------------------------------------------------------ what to run

def equal_blend(track, runs: list[str]) -> dict:
    """A blend giving each run the same weight (when no blend was fitted)."""
    return {"track": track.name, "runs": runs, "mode": "shared",
            "weights": {r: [1.0 / len(runs)] * track.dim for r in runs}, "rescale": None}


def find_checkpoints(rw: ReleaseWork, run: str) -> list[list[Path]]:
    """[fold][seed] -> best.pt of every fold and seed of `run`; DataError listing all that is missing."""
    found, missing = [], []
    for fold in range(rw.fold_count()):
        metrics = rw.fold_files(run, fold).metrics
        if not metrics.is_file():
            missing.append(f"{rw.fold(run, fold)} (fold not finished: no metrics.json)")
            found.append([])
            continue
        train = fileio.read_json(metrics, "fold metrics", f"run python -m solution.train_fold for fold {fold} again")["settings"]["train"]
        paths = [rw.seed_checkpoint(run, fold, s, train.get("refit", False)) for s in range(train["seeds"])]
        missing += [str(p) for p in paths if not p.is_file()]
        found.append(paths)
    if missing:
        raise DataError(f"run {run!r}: {len(missing)} checkpoint(s) missing: " + "; ".join(missing[:8]) +
                        (" ..." if len(missing) > 8 else "") + "; train them with python -m solution.train_fold")
    return found


def read_settings(path: Path) -> dict:
    """A checkpoint's training settings and input spec (its weights are dropped)."""
    payload = read_checkpoint(path)
    return {"settings": payload["settings"], "spec": payload["spec"]}


# ------------------------------------------------------------------ the new release

class ListingView:
    """The new release as a store sees it: its test videos, never its labels (a test-only
    folder has none)."""

    def __init__(self, release):
        self._release = release
        self.track = release.track

    def labelled_keys(self) -> dict:
        return {}

    def __getattr__(self, name):
        return getattr(self._release, name)


def _has_labels(track, data: Path) -> bool:
    try:
        return detect_track(data) == track.name and bool(open_release(track, data).labelled_keys())
    except DataError:
        return False


def listing_sources(track, release, keys: list[str]) -> dict[str, VideoSources]:
    """{key: VideoSources} of listed test videos of the track's `release`, found as its
    release_videos finds them (which needs the label files a test-only folder lacks; a test
    keeps the two in step)."""
    return {key: release.source(key, "test") for key in keys}


def new_release_sources(track, data) -> tuple[object, list[str], dict[str, VideoSources]]:
    """(release reader, test keys, {key: VideoSources}) of NEW, a full release or a test listing."""
    data = Path(data)
    release = open_release(track, data)
    problem = release.test_listing_problem()
    if problem is not None:
        raise DataError(problem)
    keys = release.test_keys()
    if not keys:
        raise DataError(f"{data}: the test listing is empty")
    if _has_labels(track, data):
        sources = {s.vid: s for s in track.release_videos(data) if s.split == "test"}
    else:
        sources = listing_sources(track, release, keys)
    absent = [k for k in keys if k not in sources]
    if absent:
        raise DataError(f"{data}: no media or features for {len(absent)} listed test video(s), e.g. {absent[:5]}")
    return release, keys, {k: sources[k] for k in keys}


# ------------------------------------------------------------------ streams and their extraction

def extraction_plans(work, pinned: dict[str, Pinned], device: str, batch_size: int, threads: int):
    """solution.features Plans that recompute exactly the pinned folders: one per set of
    shared input settings (face sampling, detector, crop size, ASR), each checked to give
    the very folder names the checkpoints read."""
    from solution.extractors import create_extractor
    from solution.extraction import Plan

    probe = Plan(Path(work), {})
    groups: list[tuple[dict, list[Pinned]]] = []  # (input settings, the streams that share them)
    for stream in pinned.values():
        modality, settings = stream.info["modality"], stream.info.get("settings", {})
        wanted = {k: settings[k] for k in probe.input_settings(modality) if k in settings}
        for fixed, members in groups:
            if all(fixed.get(k, v) == v for k, v in wanted.items()):
                fixed.update(wanted)
                members.append(stream)
                break
        else:
            groups.append((dict(wanted), [stream]))
    plans = []
    for fixed, members in groups:
        specs: dict[str, list[str]] = {}
        for stream in members:
            if stream.spec not in specs.setdefault(stream.info["modality"], []):
                specs[stream.info["modality"]].append(stream.spec)
        plan = Plan(Path(work), specs, fps=float(fixed.get("fps", 5.0)), face=fixed.get("face", "none"),
                    face_size=int(fixed.get("face_size", 112)), asr=fixed.get("asr") or None, device=device,
                    batch_size=batch_size, threads=threads)
        for stream in members:
            try:
                extractor = create_extractor(stream.spec, device, batch_size)
            except (ValueError, FileNotFoundError) as exc:
                raise DataError(f"stream {stream.spec!r} (cache folder {stream.folder.name}): cannot rebuild its "
                                f"extractor: {exc}") from exc
            inputs = plan.input_settings(stream.info["modality"])
            key = extractor.key(inputs)
            if key != stream.folder.name:
                then, now = stream.info.get("settings", {}), {**extractor.settings(), **inputs}
                changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
                raise DataError(
                    f"stream {stream.spec!r}: the checkpoints were trained on features/{stream.folder.name} "
                    f"(extractor settings {then}), but these settings now give features/{key} ({now}; "
                    f"differing: {', '.join(changed) or 'none, the extractor itself changed'}): new features would "
                    "not match what the models were trained on")
        plans.append(plan)
    return plans


def check_organizer_widths(pinned: dict[str, Pinned], sources: dict[str, VideoSources]) -> None:
    """Organizer pickles of another width than the trained stream stop the run before any
    extraction (they would otherwise be recorded as failures, or outvote the training
    release's entries of their folder)."""
    from solution.readers import load_feature_pickle

    for stream in pinned.values():
        if stream.info["modality"] != "organizer" or not stream.dim:
            continue
        kind = stream.spec.partition(":")[2].partition("?")[0]
        for key, src in sources.items():
            path = src.organizer.get(kind)
            if path is None:
                continue
            if cache.status(stream.folder, key, cache.stream_source_key(stream.info, src)) == "ok":
                continue
            width = load_feature_pickle(path).shape[1]
            if width != stream.dim:
                raise DataError(f"stream {stream.spec!r}: {path} has {width} columns; the checkpoints were trained "
                                f"on {stream.dim} ({stream.folder}): other organizer features than at training")
            break  # one new pickle per stream: a whole release of another width is what this catches


def extract(work, pinned: dict[str, Pinned], sources: dict[str, VideoSources], device: str, batch_size: int,
            workers: int, threads: int) -> None:
    from solution.extraction import run

    cache.load_identities(work)
    check_organizer_widths(pinned, sources)
    listed = list(sources.values())
    for plan in extraction_plans(work, pinned, device, batch_size, threads):
        log.info("features of %d test videos: %s", len(listed), ", ".join(s for v in plan.specs.values() for s in v))
        summary = run(plan, listed, workers)
        for row in summary.itertuples():
            if row.missing:
                log.info("note: %s: %d of the test videos have no %s features (reasons in %s)", row.extractor,
                         row.missing, row.extractor, cache.features_root(work) / "failures.csv")


def pinned_store(release, sources: dict, keys: list[str], payload: dict, pinned: dict[str, Pinned],
                 where: Path) -> VideoStore:
    """A store over `keys` reading exactly the cache folders the checkpoint was trained on."""
    streams_named = payload["settings"]["streams"]
    cfg = TrainConfig(**{**payload["settings"]["train"],
                         "streams": {m: [parse_stream_key(i)[0] for i in items] for m, items in streams_named.items()}})
    streams = pin_streams(pinned, streams_named, sources, keys)
    # Text on a time grid or as one vector, as the model was built (checkpoints without the
    # setting predate word-timed text: one vector).
    text_timed = bool(payload["spec"].get("extra", {}).get("text_timed", False))
    if not text_timed and any(has_timed_entries(s, keys) for s in streams.get("text", [])):
        log.warning("%s: the model was trained on plain transcripts (one vector per video); this release's "
                    "word-timed transcripts are averaged over their words to match", where)
    store = VideoStore(release, streams, cfg, frame_counts=frame_counts_to_predict(release, keys),
                       text_timed=text_timed)
    trained = payload["spec"]
    if list(store.modalities) != list(trained["modalities"]):
        raise DataError(f"{where}: trained on modalities {list(trained['modalities'])}, the pinned streams give "
                        f"{list(store.modalities)}")
    for m in store.modalities:
        if store.dims[m] != trained["dims"][m]:
            named = ", ".join(f"{s.spec} ({s.folder.name}, {s.dim} wide now)" for s in streams[m])
            raise DataError(f"stream {named}: {m} features are {store.dims[m]} wide now; {where} was trained on "
                            f"{trained['dims'][m]}")
    if store.stream_keys() != streams_named:
        raise DataError(f"{where}: streams {store.stream_keys()} instead of {streams_named}")  # cannot happen
    return store


# ------------------------------------------------------------------ the whole prediction

def default_pred_dir(rw: ReleaseWork, data: Path) -> Path:
    resolved = Path(data).resolve()
    return rw.root / "predict" / f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def prediction_file(folder: Path, track) -> Path:
    return Path(folder) / prediction_filename(track)


def predict_release(train_data, data, work, out_dir, name: str | None = None, runs: list[str] | None = None,
                    blend_path=None, pred_dir=None, device: str = "cpu", threads: int = 0, workers: int = 1,
                    batch_size: int = 32, va_format: str = "single") -> Path:
    """Everything above; returns the zip."""
    from solution.submission import make_submission

    started = time.time()
    if threads:
        torch.set_num_threads(threads)
    train_data, data, work = Path(train_data), Path(data or train_data), Path(work)
    rw = release_work(work, train_data)
    track = rw.track
    if runs:
        blend, blend_from = equal_blend(track, runs), f"equal weights over {','.join(runs)}"
    else:
        blend_path = Path(blend_path or rw.blend_json)
        if not blend_path.is_file():
            raise DataError(f"{blend_path}: no saved blend; run python -m solution.ensemble --data {train_data} "
                            f"--work {work} --runs RUNS first, or pass --runs to average runs with equal weights")
        blend, blend_from = read_blend(blend_path), str(blend_path)
    if blend["track"] != track.name:
        raise DataError(f"{blend_from}: a blend for {blend['track']}, but {train_data} is a {track.name} release")
    log.info("blend: %s (%s)", ", ".join(blend["runs"]), blend_from)

    checkpoints = {run: find_checkpoints(rw, run) for run in blend["runs"]}
    payloads = {p: read_settings(p) for folds in checkpoints.values() for paths in folds for p in paths}
    pinned = pinned_streams(work, checkpoints, payloads)
    release, keys, sources = new_release_sources(track, data)
    log.info("%s: %d test videos; %d checkpoints of %d run(s) read %d cache folder(s)", data, len(keys),
             len(payloads), len(checkpoints), len(pinned))
    extract(work, pinned, sources, device, batch_size, workers, 1 if workers > 1 else threads)

    pred_dir = Path(pred_dir or default_pred_dir(rw, data))
    store_release = ListingView(release)
    by_run = {}
    for run, folds in checkpoints.items():
        tests = []
        for fold, paths in enumerate(folds):
            per_seed = []
            for seed, path in enumerate(paths):
                tick = time.time()
                model, normalizer, payload = load_checkpoint(path, device)
                store = pinned_store(store_release, sources, keys, payload, pinned, path)
                store.set_normalizer(normalizer)
                per_seed.append(predict(model, store, keys, device)[0])
                log.info("%s fold %d seed %d: %d videos (%.1f s)", run, fold, seed, len(keys), time.time() - tick)
            fold_file = prediction_file(pred_dir / "runs" / run / f"fold{fold}", track)
            # The fold's test predictions pass the writer and reader of a trained fold's test.csv,
            # and the folds are averaged as solution.ensemble averages them.
            write_predictions(fold_file, track, average_predictions(per_seed, keys))
            tests.append(read_predictions(fold_file, track))
        by_run[run] = average_predictions(tests)
    fps_of = {k: release.video_fps(k) for k in keys} if blend.get("smooth_seconds") else None
    blended = apply_blend(blend, by_run, track.low, track.high, fps_of)
    pred_file = prediction_file(pred_dir, track)
    write_predictions(pred_file, track, blended)
    fileio.write_json(pred_dir / "predict.json", {
        "train_data": str(train_data.resolve()), "data": str(data.resolve()), "blend": blend, "blend_from": blend_from,
        "checkpoints": {run: [[str(p) for p in paths] for paths in folds] for run, folds in checkpoints.items()},
        "streams": sorted(pinned), "test_videos": len(keys), "threads": torch.get_num_threads(), "device": device})
    name = name or f"{'+'.join(blend['runs'])}-{time.strftime('%Y%m%d-%H%M%S')}"
    zip_path = make_submission(track.name, pred_file, data, out_dir, name, va_format)
    log.info("wrote %s and %s (%.1f s)", pred_file, zip_path, time.time() - started)
    return zip_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--train-data", type=Path, required=True,
                        help="the release the models were trained on (finds their folds, runs and blend in WORK)")
    parser.add_argument("--data", type=Path,
                        help="the new release or test listing to predict (default: --train-data, for a test listing "
                             "that arrived there)")
    parser.add_argument("--work", type=Path, required=True, help="the work folder of the training run (features/, runs)")
    parser.add_argument("--out-dir", type=Path, default=submission.DEFAULT_OUT_DIR,
                        help="where the zip goes (default: submissions/ in the repository)")
    parser.add_argument("--name", help="zip file name without .zip (default: <runs joined by +>-<timestamp>)")
    parser.add_argument("--runs", help="comma list of runs averaged with equal weights, instead of the saved blend")
    parser.add_argument("--blend", type=Path,
                        help="a saved blend file (default: WORK/<track>-<fingerprint>/predictions/blend.json)")
    parser.add_argument("--pred-dir", type=Path,
                        help="where the predictions go (default: WORK/<track>-<fingerprint>/predict/<NEW name>-<hash>)")
    parser.add_argument("--format", "--va-format", dest="va_format", choices=["single", "per-video"], default="single",
                        help="tracks scored per frame (VA, EXPR, AU): the ABAW6 single file, or one <video>.txt per "
                             "video (older rounds)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, for extraction and prediction (default cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); training's count gives training's exact numbers")
    parser.add_argument("--workers", type=int, default=1, help="feature extraction processes (as solution.features)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per batch for neural extractors")
    args = parser.parse_args(argv)
    if args.runs is not None and args.blend is not None:
        parser.error("--runs and --blend exclude each other")
    logging.basicConfig(level=logging.INFO, format="[predict] %(message)s")
    try:
        runs = [r for r in args.runs.split(",") if r] if args.runs is not None else None
        if args.runs is not None and not runs:
            raise DataError("--runs names no run")
        path = predict_release(args.train_data, args.data, args.work, args.out_dir, args.name, runs, args.blend,
                               args.pred_dir, args.device, args.threads, max(1, args.workers), args.batch_size,
                               args.va_format)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[predict] wrote {path} (validated against the test listing of {args.data or args.train_data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
