"""The Aff-Wild2 release family's generator, drawn from the shared world: videos in batch1/
with their audio track, the organizers' face crops in cropped_aligned/ (with the detector's
gaps), and the VA track's annotations; for an EXPR or AU release (`--track expr|au`) also the
EXPR and AU annotations of the same videos, from a world of expressions (below).

Aff-Wild2 has one subject per video, named by its length and size (`1-30-1280x720`), mostly
at 30 fps: `other_fps` puts the second video (in test) at another rate, `long_seconds` makes
the first (in train) long. Valence and arousal wander slowly; they drive the face's actions
and the voice's controls; the annotator writes them late (annotator_lag), maybe smoothed,
noisy and biased, with stretches not annotated (-5,-5). Written: batch1/, cropped_aligned/,
6th_ABAW_Annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set} and its test_set.csv,
the hidden test annotations under private/, metadata.csv; the ceiling is the CCC of a perfect
model of what the annotator saw.

An EXPR or AU release (the same release for both) is drawn from a world of expressions
(affwild2_classes.py): expression episodes over time drive the action units, the face is
rendered from the units, and valence and arousal follow the expression (with a drift of their
own) and drive the voice. Its VA annotations come from that valence and arousal, by the same
annotator model; its EXPR and AU annotations from annotators of their own. Written besides:
6th_ABAW_Annotations/{EXPR_Recognition_Challenge,AU_Detection_Challenge}/{Train_Set,Validation_Set}
with their test_set.csv, the hidden test annotations under private/<folder>/Test_Set; the
ceiling of each track (ceiling.json keyed by track: va, expr, au), EXPR and AU the score of the
clean labels (the episodes' classes; each unit's activation against the threshold) against the
annotators'. Everything a VA release draws is drawn in the same order from the same streams
(so a VA release stays as it was, and an EXPR release of the same seed has the same subjects,
splits, lengths and corruptions); what is new comes from streams of its own: (seed, 7, video)
the episodes, (seed, 7) the release's share-out of rare classes, (seed, 8, video) the units,
(seed, 9, video) the EXPR annotators, (seed, 10, video) the AU annotators.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.media import write_video
from solution.metrics import ccc_per_dim
from solution.synth.world import (ACTIONS, A, Config, Style, Subject, check_settings, corrupt_audio, draw_blinks,
                                  draw_corruptions, draw_head_shift, draw_visibility, make_subject, render_faces,
                                  run_videos, smooth_noise, subject_splits, subject_style, synth_voice, utterances,
                                  video_frames, write_latents)
from solution.synth import affwild2_classes as classes
from solution.tracks.au import AU
from solution.tracks.expr import EXPR
from solution.tracks.va import VA, VA_UNANNOTATED

# The demo's sizes (what run_all.sh trains on without DATA_DIR): a smoke test through every stage and
# model that ends within ten minutes of stages on 2 CPU cores (bench/README.md, "End-to-end time of
# the demo"). Real releases are far larger; nothing else is sized by these.
DEFAULTS = dict(videos=16, subjects=16, seconds=12.0, length_spread=0.5, fps=30.0, size=112, label_noise=0.2,
                other_fps=25.0, long_seconds=120.0)


def prepare(settings: dict) -> None:
    """Settings that follow from others: one subject per video, as in Aff-Wild2."""
    settings["subjects"] = settings["videos"]


def check(cfg: Config) -> None:
    """The world's checks of the settings, then this family's, in the order they have always run."""
    check_settings(cfg)
    if cfg.timed_transcripts:
        raise SystemExit("[synth] --timed-transcripts: a VA release has no transcripts")


VA_RENDER_CHUNK = 256  # frames drawn at once


@dataclass
class _VaDrive:
    """How much of each pole of valence and arousal shows, per frame (the subject's style.drive)."""
    pos: np.ndarray
    neg: np.ndarray
    high: np.ndarray
    low: np.ndarray


@dataclass
class _VaFace:
    """What the camera sees of a VA video, per frame, and where the organizers' detector found the face."""
    actions: np.ndarray
    present: np.ndarray
    occluder: np.ndarray
    blinks: np.ndarray
    shift: np.ndarray
    light: float
    grain: float
    cropped: np.ndarray


def _va_video(job):
    cfg, index, name, split, subject, T, fps, out = job
    cfg = Config(**cfg)
    style = subject_style(cfg, subject, index, np.eye(2))
    world = np.random.default_rng([cfg.seed, 6, index])  # the world knobs' own draws
    rng = np.random.default_rng([cfg.seed, 1, index])
    slow = max(3, int(fps * 4))
    valence = np.tanh(smooth_noise(rng, T, 1.2, slow) + rng.normal(0, 0.3))
    arousal = np.tanh(smooth_noise(rng, T, 1.2, slow) + rng.normal(0, 0.3))
    clean = np.stack([valence, arousal], 1)
    drive = _VaDrive(pos=style.drive(np.clip(valence, 0, None)), neg=style.drive(np.clip(-valence, 0, None)),
                     high=style.drive(np.clip(arousal, 0, None)), low=style.drive(np.clip(-arousal, 0, None)))
    actions = _va_actions(cfg, subject, style, drive, rng, world)
    flags = draw_corruptions(rng, asdict(cfg))
    face = _va_face(cfg, actions, drive, flags["face"], rng, world, fps)
    voice, flags["audio"] = _va_voice(cfg, subject, style, drive, flags["audio"], rng, world, fps)
    _write_va_media(cfg, out, name, index, subject, face, voice, fps)
    if cfg.latents:  # signed valence and arousal drive: on the face (expressivity included), in the voice
        write_latents(out, name, style.gain * np.stack([drive.pos - drive.neg, drive.high - drive.low], 1),
                      np.stack(_va_heard(cfg, subject, style, drive), 1), fps)
    lagged, noisy, lag = _va_annotation(cfg, clean, style.bias, rng, world, fps)
    flags.update(lag=round(lag / fps, 3), no_crop_frames=int((~face.cropped).sum()))
    # The ceiling is that of a perfect model of what the annotator saw (late and smoothed: a
    # model can learn the delay, solution.delay chooses it), not of the noise-free signal itself.
    return name, lagged, noisy, flags, T


def _expression_video(job):
    """A video of an EXPR or AU release: the world of expressions (affwild2_classes.py) drives
    the units, the face is rendered from them, and valence and arousal follow the expression;
    the draws of the VA world come in its order from its streams, the new ones from their own."""
    cfg, index, name, split, subject, T, fps, out, episodes = job
    cfg = Config(**cfg)
    style = subject_style(cfg, subject, index, classes.PROFILES)
    world = np.random.default_rng([cfg.seed, 6, index])
    rng = np.random.default_rng([cfg.seed, 1, index])
    unit_rng = np.random.default_rng([cfg.seed, 8, index])
    slow = max(3, int(fps * 4))
    drift = np.stack([smooth_noise(rng, T, 1.2, slow) + rng.normal(0, 0.3) for _ in range(2)], 1)
    units = classes.unit_activations(episodes, style, unit_rng, fps)
    clean = classes.expression_va(episodes, drift, unit_rng)
    valence, arousal = clean[:, 0], clean[:, 1]
    drive = _VaDrive(pos=style.drive(np.clip(valence, 0, None)), neg=style.drive(np.clip(-valence, 0, None)),
                     high=style.drive(np.clip(arousal, 0, None)), low=style.drive(np.clip(-arousal, 0, None)))
    actions = _expression_actions(cfg, subject, units, episodes, rng, world)
    flags = draw_corruptions(rng, asdict(cfg))
    face = _va_face(cfg, actions, drive, flags["face"], rng, world, fps)
    voice, flags["audio"] = _va_voice(cfg, subject, style, drive, flags["audio"], rng, world, fps)
    _write_va_media(cfg, out, name, index, subject, face, voice, fps)
    if cfg.latents:  # the face: valence and arousal as VA's, the units' activations, the classes' shares
        write_latents(out, name, np.concatenate([style.gain * np.stack([drive.pos - drive.neg, drive.high - drive.low], 1),
                                                 units[:, :classes.SCORED], episodes.probabilities()], 1),
                      np.stack(_va_heard(cfg, subject, style, drive), 1), fps)
    lagged, noisy, lag = _va_annotation(cfg, clean, style.bias, rng, world, fps)
    flags.update(lag=round(lag / fps, 3), no_crop_frames=int((~face.cropped).sum()))
    expressions = classes.annotate_classes(episodes, fps, np.random.default_rng([cfg.seed, 9, index]))
    marked = classes.annotate_units(units, fps, np.random.default_rng([cfg.seed, 10, index]))
    return name, lagged, noisy, flags, T, episodes.labels(), expressions, classes.clean_units(units), marked


def _expression_actions(cfg: Config, subject: Subject, units: np.ndarray, episodes, rng, world) -> np.ndarray:
    """The facial actions of a video of the world of expressions, per frame, from its units;
    the mouth moves a little as it does in a VA video, and the `style` knob gives each subject
    their own mix of actions, as there."""
    T = len(units)
    actions = classes.unit_faces(units, episodes, subject.neutral)
    actions[:, A["mouth_open"]] += 0.2 * np.clip(smooth_noise(rng, T, 0.3, 2), 0, None)
    if cfg.style:
        mix = np.exp(cfg.style * world.normal(0, 1, len(ACTIONS)))
        actions = subject.neutral + (actions - subject.neutral) * mix
    return np.clip(actions, -0.3, 1.4)


def _va_actions(cfg: Config, subject: Subject, style: Style, drive: _VaDrive, rng, world) -> np.ndarray:
    """The facial actions of a VA video, per frame, from its valence and arousal."""
    pos, neg, high, low = drive.pos, drive.neg, drive.high, drive.low
    T = len(pos)
    actions = np.zeros((T, len(ACTIONS))) + subject.neutral
    e = style.gain
    actions[:, A["smile"]] += e * 0.9 * pos
    actions[:, A["frown"]] += e * 0.7 * neg
    actions[:, A["brow_inner_up"]] += e * 0.7 * neg * (0.5 + 0.5 * low)
    actions[:, A["brow_furrow"]] += e * 0.5 * neg * high
    actions[:, A["mouth_open"]] += e * 0.6 * high + 0.2 * np.clip(smooth_noise(rng, T, 0.3, 2), 0, None)
    actions[:, A["eye_wide"]] += e * 0.7 * high
    actions[:, A["eye_squint"]] += e * 0.5 * low + 0.3 * pos * high
    actions[:, A["brow_raise"]] += e * 0.5 * high
    actions[:, A["head_tilt"]] += 0.3 * neg * low
    if cfg.style:  # each subject shows valence and arousal through their own mix of actions
        mix = np.exp(cfg.style * world.normal(0, 1, len(ACTIONS)))
        actions = subject.neutral + (actions - subject.neutral) * mix
    return np.clip(actions, -0.3, 1.4)


def _va_face(cfg: Config, actions: np.ndarray, drive: _VaDrive, face: str, rng, world, fps: float) -> _VaFace:
    """Where the face is in view, covered, blinking and moving, the light and grain, and the
    frames the detector found it in."""
    T = len(actions)
    present, occluder = draw_visibility(rng, T, face)
    if face == "missing":  # in Aff-Wild2 the face leaves and comes back
        present = np.roll(present, -int(rng.integers(0, T // 2)))
    if cfg.occlusion_seconds:  # hands over the face for seconds, now and then
        for _ in range(world.poisson(T / fps / 30)):
            start = int(world.integers(0, T))
            occluder[start:start + int(world.uniform(0.5, 1.5) * cfg.occlusion_seconds * fps)] = world.integers(1, 3)
    blinks, shift = draw_blinks(rng, T, fps), draw_head_shift(rng, T, 0.01 + 0.03 * float(np.mean(drive.high)))
    light, grain = rng.uniform(0.75, 1.15), rng.uniform(2, 7)
    # The face is in view but the organizers' detector found none: short runs of frames without a crop.
    cropped = present.copy()
    for _ in range(1 + rng.poisson(1.0)):
        start = int(rng.integers(0, T))
        seconds = rng.uniform(0.3, 1.5) * (1 if cfg.gap_seconds == 0.9 else cfg.gap_seconds / 0.9)
        cropped[start:start + int(seconds * fps)] = False
    if not cropped.any():  # a face seen only briefly is still found once
        cropped = present.copy()
    return _VaFace(actions, present, occluder, blinks, shift, light, grain, cropped)


def _va_voice(cfg: Config, subject: Subject, style: Style, drive: _VaDrive, audio: str, rng, world,
              fps: float) -> tuple[np.ndarray, str]:
    """The video's audio track, and its condition as metadata.csv records it."""
    g = _va_voice_gain(cfg, subject, style)
    pos, neg, high, low = drive.pos, drive.neg, drive.high, drive.low
    heard_v, heard_a = _va_heard(cfg, subject, style, drive)
    controls = {"f0": 1 + 0.35 * heard_a + 0.05 * heard_v, "energy": np.clip(0.6 + 0.35 * heard_a, 0.1, 1.2),
                "rate": 1 + 0.3 * heard_a, "tilt": 1.4 - 0.4 * heard_v - 0.2 * heard_a,
                "breath": np.clip(0.1 + 0.4 * g * neg * (0.5 + 0.5 * low), 0, 0.9),
                "laugh": np.clip(1.2 * g * pos * high - 0.5, 0, 0.8)}
    voice = synth_voice(controls, subject, len(pos) / fps, fps, rng)
    if cfg.silences:  # utterances of 2-6 s with silences between them
        voice = voice * utterances(world, len(voice), cfg.silences)
    voice = corrupt_audio(voice, "ok" if audio == "missing" else audio, rng)
    if audio == "missing":
        return np.zeros_like(voice), "silent"  # an Aff-Wild2 video always has a track; "missing" = mute
    return voice, audio


def _va_voice_gain(cfg: Config, subject: Subject, style: Style) -> float:
    """How strongly a VA subject's voice follows valence and arousal (voice_gain, gain_spread)."""
    return 1.0 if (cfg.voice_gain == 1 and style.gain == subject.expressivity) else \
        cfg.voice_gain * style.gain / subject.expressivity


def _va_heard(cfg: Config, subject: Subject, style: Style, drive: _VaDrive) -> tuple[np.ndarray, np.ndarray]:
    """The valence and arousal the voice follows, per frame, before any silence or corruption."""
    g = _va_voice_gain(cfg, subject, style)
    return g * (drive.pos - drive.neg), g * (drive.high - drive.low)


def _write_va_media(cfg: Config, out: Path, name: str, index: int, subject: Subject, face: _VaFace,
                    voice: np.ndarray, fps: float) -> None:
    """batch1/<name>.mp4 with its audio track, and cropped_aligned/<name>/ with the face crops
    of the frames the detector found the face in."""
    crop_dir = out / "cropped_aligned" / name
    crop_dir.mkdir(parents=True, exist_ok=True)
    render_rng = np.random.default_rng([cfg.seed, 4, index])
    frames = _va_frames(face, subject, cfg.size, render_rng, crop_dir)
    write_video(out / "batch1" / f"{name}.mp4", frames, fps, audio=voice)


def _va_frames(face: _VaFace, subject: Subject, size: int, rng, crop_dir: Path):
    """The video's frames, rendered a chunk at a time, so a long video never sits in memory
    whole; each chunk's face crops are written as it is drawn."""
    from PIL import Image

    T = len(face.actions)
    half = int(size * 0.4)
    for a in range(0, T, VA_RENDER_CHUNK):
        b = min(T, a + VA_RENDER_CHUNK)
        chunk = render_faces(face.actions[a:b], subject, size, rng, face.present[a:b], face.occluder[a:b],
                             face.blinks[a:b], face.shift[a:b], face.light, face.grain)
        c = size // 2
        for i in np.flatnonzero(face.cropped[a:b]):
            crop = chunk[i, max(0, c - half):c + half, max(0, c - half):c + half]
            image = Image.fromarray(crop).resize((112, 112), Image.BILINEAR)
            with fileio.atomic_path(crop_dir / f"{a + i + 1:05d}.jpg") as tmp:
                image.save(tmp, format="JPEG", quality=90)
        yield chunk


def _va_annotation(cfg: Config, clean: np.ndarray, bias: np.ndarray, rng, world,
                   fps: float) -> tuple[np.ndarray, np.ndarray, int]:
    """What the annotator saw (`clean`, late and maybe smoothed), what they wrote (that, noisy
    and biased, VA_UNANNOTATED where not annotated) and their lag in frames."""
    T = len(clean)
    # Annotators lag (each by their own reaction time), smooth and disagree; some stretches
    # are not annotated at all.
    lag_seconds = float(np.clip(cfg.annotator_lag + (rng.normal(0.5, 0.1) - 0.5) * cfg.annotator_lag / 0.5,
                                0.5 * cfg.annotator_lag, 1.6 * cfg.annotator_lag))
    lag = min(int(round(lag_seconds * fps)), T - 1)
    seen = clean
    if cfg.annotator_smooth:  # the annotator's joystick follows what they see slowly
        width = max(1, int(cfg.annotator_smooth * fps))
        padded = np.concatenate([np.repeat(clean[:1], width - 1, 0), clean])
        seen = np.stack([np.convolve(padded[:, j], np.ones(width) / width, mode="valid") for j in range(2)], 1)
    lagged = np.concatenate([np.repeat(seen[:1], lag, 0), seen[: T - lag]])
    noisy = lagged + np.stack([smooth_noise(rng, T, cfg.label_noise, max(2, int(fps / 6))) for _ in range(2)], 1)
    offset = world.normal(0, cfg.annotator_bias, 2) if cfg.annotator_bias else 0.0  # this annotator's, this video
    noisy = np.clip(noisy + bias + offset, -1, 1)
    annotated = np.ones(T, bool)
    for _ in range(1 + rng.poisson(1.0)):
        start = int(rng.integers(0, T))
        annotated[start:start + int(rng.integers(T // 50 + 1, T // 10 + 2))] = False
    noisy[~annotated] = VA_UNANNOTATED
    return lagged, noisy, lag


def _write_va_annotation(path: Path, values: np.ndarray) -> None:
    body = "\n".join(f"{v:.3f},{a:.3f}" if v != VA_UNANNOTATED else "-5,-5" for v, a in values)
    fileio.write_text(path, "valence,arousal\n" + body + "\n")


def _move_to_split(split: np.ndarray, index: int, name: str) -> None:
    """Put video `index` in split `name` by swapping with a video of that split (one after the
    two placed videos first), so every split keeps its size; with none, it just moves."""
    if split[index] != name:
        others = [j for j in [*range(2, len(split)), 0, 1] if j != index and split[j] == name]
        if others:
            split[others[0]] = split[index]
        split[index] = name


def generate(cfg: Config, out: Path, workers: int) -> dict:
    """Write an Aff-Wild2 release with the VA track's annotations to `out`, and for an EXPR or AU
    release those of EXPR and AU too; returns the ceiling (VA: {split: entry}; EXPR, AU: keyed
    by track, {track: {split: entry}})."""
    rng = np.random.default_rng([cfg.seed, 0])
    subjects = [make_subject(rng, 2) for _ in range(cfg.videos)]
    split = subject_splits(rng, cfg.videos)  # Aff-Wild2: one subject per video
    fps = np.full(cfg.videos, cfg.fps)
    seconds = video_frames(cfg, cfg.videos) / cfg.fps
    if cfg.other_fps:  # Aff-Wild2 is mostly 30 fps, not all of it: the second video at another rate, in test
        fps[1] = cfg.other_fps
        _move_to_split(split, 1, "test")
    if cfg.long_seconds:  # one long video (Aff-Wild2 has videos of tens of minutes), in train
        seconds[0] = cfg.long_seconds
        _move_to_split(split, 0, "train")
    frames = np.maximum(4, np.round(seconds * fps)).astype(int)
    # Aff-Wild2 names say the video's length and size ("1-30-1280x720").
    names = [f"{i + 1}-{round(frames[i] / fps[i])}-{cfg.size}x{cfg.size}" for i in range(cfg.videos)]
    jobs = [(asdict(cfg), i, names[i], split[i], subjects[i], int(frames[i]), float(fps[i]), out)
            for i in range(cfg.videos)]
    expressions = cfg.track != VA.name  # EXPR and AU: one release with the three tracks' annotations
    if expressions:
        episodes = [classes.draw_episodes(cfg.seed, i, int(frames[i]), float(fps[i])) for i in range(cfg.videos)]
        classes.every_class_in_every_split(episodes, split, cfg.seed, fps)
        results = run_videos(_expression_video, [job + (e,) for job, e in zip(jobs, episodes)], workers,
                             "Aff-Wild2 videos")
    else:
        results = run_videos(_va_video, jobs, workers, "VA videos")

    challenge = out / "6th_ABAW_Annotations" / "VA_Estimation_Challenge"
    private = out / "private" / "VA_Estimation_Challenge"
    folders = {"train": challenge / "Train_Set", "valid": challenge / "Validation_Set",
               "test": private / "Test_Set"}
    meta, listing, pairs = [], [], {"train": [], "valid": [], "test": []}
    for (name, clean, noisy, flags, T, *_), part in zip(results, split):
        _write_va_annotation(folders[part] / f"{name}.txt", noisy)
        keep = noisy[:, 0] != VA_UNANNOTATED
        pairs[part].append((clean[keep], noisy[keep]))
        rate = fps[names.index(name)]
        meta.append({"video": name, "split": part, "subject": name, **flags,
                     "seconds": round(T / rate, 4), "frames": T, "fps": rate})
        if part == "test":
            listing.append(f"{name},{T}")
    fileio.write_text(challenge / "test_set.csv", "video,frames\n" + "\n".join(listing) + "\n")
    fileio.write_csv(out / "metadata.csv", pd.DataFrame(meta))

    ceiling = {}
    pairs["labelled"] = pairs["train"] + pairs["valid"]  # pooled, as an out-of-fold score is
    for part, chunks in pairs.items():
        if chunks:
            clean = np.concatenate([c for c, _ in chunks])
            noisy = np.concatenate([n for _, n in chunks])
            r = ccc_per_dim(clean, noisy)
            ceiling[part] = {"metric": "ccc", "per_dim": {"valence": round(float(r[0]), 4),
                                                          "arousal": round(float(r[1]), 4)},
                             "mean": round(float(r.mean()), 4), "frames": int(len(clean))}
    if not expressions:
        return ceiling
    ceilings = {VA.name: ceiling}
    for track, at in ((EXPR, 5), (AU, 7)):  # each result's clean and annotated labels of the track
        ceilings[track.name] = _write_class_track(track, out, results, split, listing, at)
    return ceilings


def _write_class_track(track, out: Path, results, split, listing: list[str], at: int) -> dict:
    """A class track's annotation folders (Train_Set, Validation_Set, its test_set.csv; the test
    annotations under private/), from each result's clean labels (result[at]) and annotated
    ones (result[at + 1]); returns its ceiling: per split and the labelled videos pooled, the
    track's metric of the clean labels against the annotated ones over the annotated frames."""
    from solution.metrics import score

    challenge = out / "6th_ABAW_Annotations" / track.annotation_folder
    folders = {"train": challenge / "Train_Set", "valid": challenge / "Validation_Set", "test": out / track.hidden_test}
    pairs = {"train": [], "valid": [], "test": []}
    for result, part in zip(results, split):
        name, clean, marked = result[0], result[at], result[at + 1]
        classes.write_class_annotation(folders[part] / f"{name}.txt", track.header, marked)
        marked = track.encode(marked.reshape(len(marked), -1))
        keep = track.annotated(marked)
        pairs[part].append((track.encode(clean.reshape(len(clean), -1))[keep], marked[keep]))
    fileio.write_text(challenge / "test_set.csv", "video,frames\n" + "\n".join(listing) + "\n")
    ceiling = {}
    pairs["labelled"] = pairs["train"] + pairs["valid"]
    for part, chunks in pairs.items():
        if chunks:
            clean = np.concatenate([c for c, _ in chunks])
            marked = np.concatenate([m for _, m in chunks])
            result = score(track, clean, marked)
            ceiling[part] = {"metric": track.metric, "per_dim": {k: round(v, 4) for k, v in result["per_dim"].items()},
                             "mean": round(result["mean"], 4), "frames": int(len(clean))}
    return ceiling
