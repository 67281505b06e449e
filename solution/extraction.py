"""Feature extraction: the engine behind python -m solution.features (and solution.predict,
which extracts a new release's test videos with it). A Plan names the extractors per modality
and their shared input settings; run() computes what the cache still lacks, in worker
processes, then checks and indexes every stream folder (manifest, failures.csv).

Each video is one Job; its streams are keyed by the files they read (solution/cache.py), so
a finished entry is never computed again and an interrupted run resumes. Bad media never
stops the run: an unreadable video, silent or empty audio, a missing transcript or an
organizer pickle of another width is a recorded failure (the modality missing for that
video); Plan.strict makes the first one an error.
"""
from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from solution import cache, fileio
from solution.cache import Entry
from solution.errors import DataError
from solution.extractors import AsrTranscriber, ModelLoadError, create_extractor
from solution.faces import FaceTrack, MtcnnDetector, face_chunks_from_crops, face_chunks_from_video, face_cues
from solution.media import MediaError, video_info
from solution.progress import progress
from solution.readers import VideoSources
from solution.transcripts import Transcript, read_transcript
from solution.voice import MissingAudio, load_voice, voice_cues

log = logging.getLogger("features")


class FeatureFailure(RuntimeError):
    """Raised instead of recording a failure when --strict is set."""


@dataclass
class Plan:
    work: Path
    specs: dict                 # modality -> list of extractor specs
    fps: float = 5.0
    face: str = "none"          # resolved detector
    face_size: int = 112
    asr: str | None = None
    device: str = "cpu"
    batch_size: int = 32
    strict: bool = False
    retry_failed: bool = False
    threads: int = 0
    keys: dict = field(default_factory=dict)      # spec -> extractor key, its folder (filled by prepare)

    def source_keys(self, src: VideoSources) -> dict:
        """spec -> the source key of this video's entry: a hash of the files the stream reads."""
        return {spec: cache.stream_source_key({"modality": modality, "extractor": spec}, src)
                for modality, specs in self.specs.items() for spec in specs}

    def input_settings(self, modality: str) -> dict:
        """Settings of the shared input stage, part of every key of that modality."""
        if modality == "visual":
            return {"fps": self.fps, "face": self.face, "face_size": self.face_size}
        if modality == "text":
            # ASR transcripts are word-timed since timed text: a new key, not the old untimed entries.
            return {"asr": self.asr, "asr_timestamps": "word"} if self.asr else {"asr": ""}
        return {}


@dataclass
class Job:
    """One video's work: its inputs and, for each stream still to compute, its source key
    (computed before any input is read, so a file replaced meanwhile is read again next run)."""

    src: VideoSources
    keys: dict                  # spec -> source key, only the specs still pending


# ------------------------------------------------------------------ one worker's state

_STATE: dict = {}


def _init_worker(plan: Plan) -> None:
    """Extractors are cheap to construct; each loads its model on first use, so a worker
    whose videos are all cached for a stream never loads that stream's model."""
    if plan.threads:
        import torch

        torch.set_num_threads(plan.threads)
    extractors = {spec: create_extractor(spec, plan.device, plan.batch_size)
                  for specs in plan.specs.values() for spec in specs}
    _STATE.update(plan=plan, extractors=extractors,
                  detector=MtcnnDetector(plan.device) if plan.face == "mtcnn" else None,
                  asr=AsrTranscriber(plan.asr, plan.device) if plan.asr else None)


def _folder(plan: Plan, spec: str) -> Path:
    return cache.features_root(plan.work) / plan.keys[spec]


def _fail(plan: Plan, spec: str, job: Job, reason: str, quality: dict | None = None) -> tuple:
    if plan.strict:
        raise FeatureFailure(f"video {job.src.vid}: {spec}: {reason}")
    cache.write_failure(_folder(plan, spec), job.src.vid, job.keys[spec], reason, quality)
    return spec, "failed"


def _pending(plan: Plan, src: VideoSources, keys: dict) -> Job | None:
    """The streams this video still needs (None: every entry exists, or failed and no retry).
    An entry or failure record that cannot be read (truncated after it was written) is done
    again, with a warning, instead of being trusted (see cache.damaged for the cost)."""
    todo = {}
    for spec, key in keys.items():
        state = cache.status(_folder(plan, spec), src.vid, key)
        if state is not None and (problem := cache.damaged(_folder(plan, spec), src.vid, key)):
            log.warning("video %s: %s: %s; extracting it again", src.vid, spec, problem)
            state = None
        if state is None or (state == "failed" and plan.retry_failed):
            todo[spec] = key
    return Job(src, todo) if todo else None


def _run_each(plan, job: Job, specs, compute, quality=None) -> list[tuple]:
    """Apply `compute(spec)` -> Entry for each spec, recording per-extractor failures. A model
    that cannot be loaded is not this video's failure: it stops the run."""
    done = []
    for spec in specs:
        try:
            entry = compute(spec)
        except (FeatureFailure, ModelLoadError):
            raise
        except Exception as exc:  # noqa: BLE001 - one extractor's failure must not stop the run
            done.append(_fail(plan, spec, job, f"{type(exc).__name__}: {exc}", quality))
            continue
        cache.write_entry(_folder(plan, spec), job.src.vid, job.keys[spec], entry)
        done.append((spec, "ok"))
    return done


def _visual(plan, job: Job, specs) -> list[tuple]:
    """Faces a chunk at a time through every extractor, so a long video never sits in memory
    whole; an extractor that fails on one chunk fails for the video (recorded), the others go on."""
    src = job.src
    extractors = _STATE["extractors"]
    rows, failed, times, confidence, fps = {spec: [] for spec in specs}, {}, [], [], None
    try:
        if plan.face == "crops":
            if src.crops is None:
                raise MediaError(f"no cropped_aligned folder for {src.vid}")
            chunks = face_chunks_from_crops(src.crops, src.video, plan.fps, plan.face_size)
        else:
            if src.video is None:
                raise MediaError("no video file")
            chunks = face_chunks_from_video(src.video, plan.fps, plan.face_size, _STATE["detector"])
        for track in chunks:
            times.append(track.times)
            confidence.append(track.confidence)
            fps = track.fps
            for spec in specs:
                if spec in failed:
                    continue
                try:
                    rows[spec].append(extractors[spec](track.faces))
                except (FeatureFailure, ModelLoadError):
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded as this extractor's failure below
                    failed[spec] = exc
    except (MediaError, OSError, ValueError) as exc:
        return [_fail(plan, spec, job, str(exc), {"missing": 1.0}) for spec in specs]
    whole = FaceTrack(None, np.concatenate(times), np.concatenate(confidence), fps)
    cues = {**face_cues(whole), "missing": 0.0}
    source = str(src.crops if plan.face == "crops" else src.video)

    def compute(spec):
        if spec in failed:
            raise failed[spec]
        return Entry(np.concatenate(rows[spec]), whole.times, whole.confidence, cues, whole.fps, source=source)

    return _run_each(plan, job, specs, compute)


def _audio(plan, job: Job, specs) -> list[tuple]:
    src = job.src
    try:
        samples = load_voice(src.audio, src.video)
    except (MissingAudio, MediaError) as exc:
        return [_fail(plan, spec, job, str(exc), {"missing": 1.0}) for spec in specs]
    cues, activity = voice_cues(samples)
    cues["missing"] = 0.0
    extractors = _STATE["extractors"]

    def compute(spec):
        feats, rate = extractors[spec](samples)
        times = (np.arange(len(feats)) / rate).astype(np.float32)
        activity_at = np.interp(times, np.arange(len(activity)) / 100.0, activity)
        return Entry(feats, times, activity_at, cues, rate, source=str(src.audio or src.video))

    return _run_each(plan, job, specs, compute)


def _said(transcript: Transcript | None) -> bool:
    return transcript is not None and bool(transcript.text) and (not transcript.timed or bool(transcript.words))


def _text(plan, job: Job, specs) -> list[tuple]:
    """One embedding of the whole transcript (plain text), or one per word (timed: rows at the
    words' starts, with their ends; the encoder embeds all of a video's words in one call)."""
    src = job.src
    transcript, source = None, "transcript"
    if src.transcript is not None:
        try:
            transcript = read_transcript(src.transcript)
        except (DataError, OSError) as exc:
            return [_fail(plan, spec, job, str(exc), {"missing": 1.0}) for spec in specs]
    if not _said(transcript) and _STATE["asr"] is not None:
        try:
            transcript, source = _STATE["asr"](load_voice(src.audio, src.video)), "asr"
        except (MissingAudio, MediaError) as exc:
            return [_fail(plan, spec, job, f"no transcript, and ASR had no audio: {exc}") for spec in specs]
        except DataError as exc:  # ASR output with impossible times
            return [_fail(plan, spec, job, f"ASR: {exc}", {"missing": 1.0}) for spec in specs]
        if _said(transcript):
            folder = Path(plan.work) / "transcripts"
            fileio.write_text(folder / f"{src.vid}.txt", transcript.text + "\n")
            if transcript.timed:
                fileio.write_json(folder / f"{src.vid}.json", transcript.to_json("chunks"))
    if not _said(transcript):
        reason = "empty transcript" if src.transcript is not None else "no transcript"
        return [_fail(plan, spec, job, reason, {"missing": 1.0}) for spec in specs]
    cues = {"words": float(len(transcript.text.split())), "from_asr": float(source == "asr"), "missing": 0.0}
    extractors = _STATE["extractors"]
    origin = str(src.transcript if source == "transcript" else src.audio or src.video)
    if not transcript.timed:
        return _run_each(plan, job, specs, lambda spec: Entry(
            extractors[spec](transcript.text), np.zeros(1, np.float32), np.ones(1, np.float32), cues, None,
            source=origin))
    n = len(transcript.words)
    return _run_each(plan, job, specs, lambda spec: Entry(
        extractors[spec].many(transcript.words), transcript.starts.astype(np.float32), np.ones(n, np.float32), cues,
        None, source=origin, ends=transcript.ends.astype(np.float32)))


def _organizer(plan, job: Job, specs) -> list[tuple]:
    src = job.src
    extractors = _STATE["extractors"]
    duration = None
    if src.video is not None:
        try:
            duration = video_info(src.video)["duration"] or None
        except MediaError:
            duration = None

    def compute(spec):
        path = src.organizer.get(extractors[spec].argument)
        if path is None:
            raise FileNotFoundError(f"no {extractors[spec].argument} pickle for this video")
        feats, stated = extractors[spec](path)  # a rate the pickle states wins over the video's duration
        rate = stated or (len(feats) / duration if duration else None)
        times = (np.arange(len(feats)) / rate if rate else np.arange(len(feats))).astype(np.float32)
        return Entry(feats, times, np.ones(len(feats), np.float32), {"missing": 0.0}, rate, source=str(path))

    return _run_each(plan, job, specs, compute, {"missing": 1.0})


STAGES = {"visual": _visual, "audio": _audio, "text": _text, "organizer": _organizer}


def process_video(job: Job) -> list[tuple]:
    plan = _STATE["plan"]
    results = []
    for modality, stage in STAGES.items():
        todo = [spec for spec in plan.specs.get(modality, []) if spec in job.keys]
        if todo:
            results += stage(plan, job, todo)
    return results


def prepare(plan: Plan) -> dict:
    """Build each extractor once here (so a bad spec or a missing model folder fails before
    any work; no model is loaded) and fix its key."""
    extractors = {}
    for modality, specs in plan.specs.items():
        for spec in specs:
            extractor = create_extractor(spec, plan.device, plan.batch_size)
            plan.keys[spec] = extractor.key(plan.input_settings(modality))
            folder = cache.features_root(plan.work) / plan.keys[spec]
            folder.mkdir(parents=True, exist_ok=True)
            extractors[spec] = {"extractor": spec, "modality": modality, "key": plan.keys[spec],
                                "settings": {**extractor.settings(), **plan.input_settings(modality)}}
            fileio.write_json(folder / "spec.json", extractors[spec])
    return extractors


def reject_odd_widths(plan: Plan, spec: str, manifest: dict) -> int:
    """Turn every entry whose width is not the stream's into a recorded failure; returns how
    many. The stream's width is the most common one among its entries: one organizer pickle
    of another width (767 columns among 768) would otherwise pass this stage and crash
    training inside numpy without naming the file."""
    folder = _folder(plan, spec)
    ok = [e for e in manifest["entries"].values()
          if e["status"] == "ok" and len(e["shape"]) == 2 and e["shape"][0]]  # no frames: read as missing
    widths = Counter(e["shape"][1] for e in ok)
    if len(widths) < 2:
        return 0
    width, count = widths.most_common(1)[0]
    odd = [e for e in ok if e["shape"][1] != width]
    for e in odd:
        where = e.get("source") or str(cache.entry_path(folder, e["id"], e["key"]))
        reason = f"{where}: {e['shape'][1]} columns where the other {count} videos have {width}"
        if plan.strict:
            raise FeatureFailure(f"video {e['id']}: {spec}: {reason}")
        log.warning("video %s: %s: %s; recorded as missing", e["id"], spec, reason)
        quality = {**cache.read_entry(folder, e["id"], e["key"]).quality, "missing": 1.0}
        cache.write_failure(folder, e["id"], e["key"], reason, quality)
    return len(odd)


def _extract(plan: Plan, jobs: list[Job], workers: int) -> list[list[tuple]]:
    """Run the jobs here or in `workers` processes; the first error (--strict, a model that
    cannot load) cancels the videos not started yet instead of waiting for all of them."""
    if not jobs:
        return []
    if workers <= 1:
        _init_worker(plan)
        return [process_video(job) for job in progress(jobs, desc="features", unit="video")]
    with ProcessPoolExecutor(min(workers, len(jobs)), initializer=_init_worker, initargs=(plan,)) as pool:
        try:
            return list(progress(pool.map(process_video, jobs, chunksize=1), total=len(jobs),
                                 desc="features", unit="video"))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run(plan: Plan, sources: list[VideoSources], workers: int = 1,
        release: list[VideoSources] | None = None) -> pd.DataFrame:
    """Extract what `sources` still need, then check and index every stream folder. failures.csv
    lists the failures of `release` (every video of every shard; default `sources`)."""
    specs_info = prepare(plan)
    cache.load_identities(plan.work)
    keys = [plan.source_keys(src) for src in sources]
    cache.save_identities(plan.work)
    jobs = [job for src, src_keys in zip(sources, keys) if (job := _pending(plan, src, src_keys)) is not None]
    log.info("%d of %d videos have streams to compute", len(jobs), len(sources))
    results = _extract(plan, jobs, workers)
    computed = pd.Series([spec for batch in results for spec, _ in batch], dtype=object).value_counts()
    stems = [{spec: f"{src.vid}.{key}" for spec, key in src_keys.items()} for src, src_keys in zip(sources, keys)]
    rows = []
    for spec, info in specs_info.items():
        folder = _folder(plan, spec)
        manifest = cache.write_manifest(folder, info)
        if reject_odd_widths(plan, spec, manifest):
            manifest = cache.write_manifest(folder, info)
        entries = {stem[spec]: manifest["entries"].get(stem[spec], {}) for stem in stems}
        rows.append({"extractor": spec, "key": info["key"], "dim": manifest["dim"],
                     "ok": sum(e.get("status") == "ok" for e in entries.values()),
                     "missing": sum(e.get("status") == "missing" for e in entries.values()),
                     "computed_now": int(computed.get(spec, 0))})
    cache.write_failures_table(plan.work, sources if release is None else release)
    return pd.DataFrame(rows)
