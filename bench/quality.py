"""The quality panel: the default models and the baseline on many synthetic releases, each
drawn from its own world, scored out of fold and on its held-back test labels.

    bash bench/quality.sh --panel tune                 # the tune releases: defaults and ablations are decided here
    bash bench/quality.sh --panel tune --tag no_crop --train-args "--set crop_seconds=0" --models dual_stage
    bash bench/quality.sh --panel report               # the report releases: once, at the end of a change of quality
    bash bench/quality.sh --compare base no_crop       # paired differences per release, 95 % intervals, cost
    bash bench/quality.sh --compare base:dual_stage base:blend   # two runs of one results file
    bash bench/quality.sh --table bench/reference/quality-report.jsonl   # the table of a results file

Each release is written by solution.synth with world settings (solution.synth.WORLD_KNOBS)
drawn from its own seed, so the panel is a family of generators, not one:

* emi-media: raw mp4, mp3 and transcripts, no organizer stand-ins (the project's own extraction);
* emi-features: the organizer stand-ins only, at the organizers' widths (768-d vit, 768-d
  wav2vec2), no media and no metadata.csv (so no subjects: folds are not grouped);
* va: the Aff-Wild2 layout, with silences, occlusions and detector gaps lasting seconds and
  annotators who are late, smooth and biased per video.

Every release runs through `bash run_all.sh` as a user runs it (DATA_DIR, FOLDS=3, the
default models and the linear baseline); the features cache is shared by every --tag, each
tag has its own runs (--reuse links another tag's finished folds of some models instead of
training them again). A stopped panel resumes: releases, features and finished folds are
reused. Per release and run: the out-of-fold score (the whole procedure's nested estimate,
for each run alone as for the blend), the held-back test score, and each as a share of the
release's noise-free ceiling (ceiling.json), with what the run cost (its folds' CPU seconds)
and where its folds came from. Then the means, over the releases every run holds.

Writes JSON lines (one per release and run, and one per run for the means) to stdout and to
QUALITY_DIR/results-<tag>.jsonl (releases of this tag measured by an earlier invocation with the
same panel and settings are kept there), then a Markdown table. QUALITY_DIR defaults to work/quality.
Tune and report releases have disjoint seeds; nothing is tuned on the report releases, and
--panel has no default, so an ablation never lands on them by accident.
"""
from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import ROOT, emit, machine_info, progress  # noqa: E402
from solution.provenance import cpu_seconds, stamp  # noqa: E402

KINDS = ("emi-media", "emi-features", "va", "expr", "au")
# The track each kind's releases are run as (an expr or au release also holds VA's annotations).
KIND_TRACK = {"emi-media": "emi", "emi-features": "emi", "va": "va", "expr": "expr", "au": "au"}
# Seeds per kind and panel: tune and report never share one. The report seeds 111-113,
# 211-213 and 311-313 served as the report set until 2026-12-06, when they joined the tune set.
PANELS = {"tune": {"emi-media": [101, 102, 111, 112, 113], "emi-features": [201, 202, 211, 212, 213],
                   "va": [301, 302, 311, 312, 313], "expr": [401, 402, 403, 404, 405], "au": [501, 502, 503, 504, 505]},
          "report": {"emi-media": [121, 122, 123], "emi-features": [221, 222, 223], "va": [321, 322, 323],
                     "expr": [421, 422, 423], "au": [521, 522, 523]}}
DEFAULT_MODELS, BASELINE = "dual_stage,foalnet,rcma", "linear"
SCORES = ("test", "oof")


# ------------------------------------------------------------------ releases

def draw_world(kind: str, seed: int) -> dict:
    """The settings of one release: sizes fixed per kind (so the panel fits its time), the
    world drawn from the seed."""
    rng = np.random.default_rng([seed, 42])
    u = lambda a, b: round(float(rng.uniform(a, b)), 3)  # noqa: E731
    world = {"mapping": str(rng.choice(["linear", "nonlinear"])), "style": u(0.0, 0.4),
             "gain_spread": u(0.2, 0.6), "voice_gain": u(0.5, 1.5), "report_bias": u(0.03, 0.1),
             "length_spread": u(0.3, 0.7)}
    scale = u(0.5, 2.0)  # corruption rates, all together
    world.update({k: round(v * scale, 4) for k, v in
                  {"occluded": 0.08, "face_missing": 0.04, "noisy": 0.08, "silent": 0.03, "audio_missing": 0.02}.items()})
    if kind.startswith("emi"):
        world.update(videos=240, subjects=30, seconds=u(4.0, 9.0), fps=15.0, size=112, label_noise=u(0.08, 0.18),
                     word_rate=u(1.0, 4.0), onset_spread=u(0.3, 0.8), hold_scale=u(0.5, 1.5),
                     no_transcript=round(0.1 * scale, 4))
        if kind == "emi-features":
            world.update(standins=True, media=False, vit_dim=768, wav2vec2_dim=768)
        else:
            world.update(standins=False, media=True)
    else:
        world.update(videos=14, seconds=u(25.0, 45.0), fps=30.0, size=64, label_noise=u(0.1, 0.25),
                     other_fps=25.0, long_seconds=0.0, silences=u(0.0, 0.4), occlusion_seconds=u(0.0, 4.0),
                     gap_seconds=u(0.5, 3.0), annotator_lag=u(0.2, 1.0), annotator_smooth=u(0.0, 1.5),
                     annotator_bias=u(0.0, 0.15))
    return world


def make_release(kind: str, seed: int, releases: Path, scale: float | None = None, latents: bool = False) -> Path:
    """Write (or reuse) the release; an emi-features one loses metadata.csv, as the organizers' has none.
    `scale` (a learning curve): the release drawn from the same world with twice the videos
    and subjects, then (scale below 2) only a share scale / 2 of its labelled subjects kept,
    so every point of the curve is scored on the same held-back test videos. `latents`: the
    generator also writes its clean latent streams (the release is otherwise the same bytes)."""
    from solution import synth

    world = draw_world(kind, seed)
    name = f"{kind}-{seed}" + ("-latents" if latents else "")
    if latents:
        world["latents"] = True
    if scale is not None:
        world["videos"] *= 2
        if "subjects" in world:
            world["subjects"] *= 2
        name += "-x2"
    out = releases / name
    track = KIND_TRACK[kind]
    synth.generate(track, out, seed=seed, overwrite=True, **world)  # our folder: a half-written one is redone
    if kind == "emi-features":
        hidden = out / "private" / "metadata.csv"
        if (out / "metadata.csv").is_file():
            hidden.parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / "metadata.csv", hidden)
    if scale is None or scale == 2:
        return out
    return derive_subset(out, releases / f"{name}-keep{scale / 2:g}", scale / 2, seed)


def derive_subset(source: Path, out: Path, keep: float, seed: int) -> Path:
    """A release with the world and the test videos of `source`, whose labelled videos are
    those of a share `keep` of its labelled subjects (drawn with `seed`). Files are hard
    links; the label lists and the metadata are written anew, and the labelled videos'
    ceilings left out of ceiling.json."""
    import pandas as pd

    from solution.layouts import detect_track

    want = {"source": source.name, "source_config": digest(json.loads((source / "synth_config.json").read_text())),
            "keep": keep, "seed": seed}
    marker = out / "subset.json"
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return out
    track = detect_track(source)
    meta_path = next(p for p in (source / "metadata.csv", source / "private" / "metadata.csv") if p.is_file())
    meta = pd.read_csv(meta_path, dtype=str)
    id_column = "Filename" if track == "emi" else "video"
    labelled = meta[meta.split.isin(["train", "valid"])]
    subjects = sorted(labelled.subject.unique())
    rng = np.random.default_rng([seed, 77])
    kept = set(np.array(subjects)[rng.permutation(len(subjects))[: max(3, round(keep * len(subjects)))]])
    dropped = set(labelled[id_column][~labelled.subject.isin(kept)])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=os.link,
                    ignore=lambda folder, names: [n for n in names if n in dropped or Path(n).stem in dropped])

    def rewrite_csv(path: Path, frame) -> None:  # a new file, so the hard link to the source is broken
        frame.to_csv(path.with_suffix(".new"), index=False)
        os.replace(path.with_suffix(".new"), path)

    rewrite_csv(tmp / meta_path.relative_to(source), meta[~meta[id_column].isin(dropped)])
    if track == "emi":
        for split in ("train", "valid"):
            labels = pd.read_csv(source / f"{split}_split.csv", dtype={"Filename": str})
            rewrite_csv(tmp / f"{split}_split.csv", labels[~labels.Filename.isin(dropped)])
    # The ceilings of the labelled videos are the source's: left out (labelled_ceiling computes
    # the EMI one again from the clean intensities; VA keeps no clean traces). The test's stays.
    # A release of several tracks (Aff-Wild2's VA, EXPR and AU) has such entries per track.
    ceiling = json.loads((source / "ceiling.json").read_text())
    from solution.tracks import track_names

    keyed = [name for name in track_names() if name in ceiling]
    for entries in ([ceiling[name] for name in keyed] if keyed else [ceiling]):
        for entry in ("labelled", "train", "valid"):
            entries.pop(entry, None)
    (tmp / "ceiling.json").unlink()
    (tmp / "ceiling.json").write_text(json.dumps(ceiling, indent=2))
    (tmp / "subset.json").write_text(json.dumps(want, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def run_release(data: Path, work: Path, models: str, baseline: str, folds: int, train_args: str, jobs: int,
                log: Path, feature_args: str = "", settings: dict | None = None) -> tuple[float, float]:
    """bash run_all.sh on the release, output to `log`, `settings` added to its environment:
    (wall seconds, CPU seconds of every process it ran: features, training, blend, report)."""
    from solution.layouts import detect_track

    env = {**os.environ, "TRACK": detect_track(data), "DATA_DIR": str(data), "WORK_DIR": str(work),
           "MODELS": models, "BASELINE": baseline,
           "FOLDS": str(folds), "JOBS": str(jobs), "TRAIN_ARGS": train_args, "FEATURE_ARGS": feature_args,
           "SUBMISSIONS_DIR": str(work / "submissions"), **(settings or {})}
    start, cpu = time.time(), cpu_seconds(children_only=True)
    with open(log, "w") as out:
        done = subprocess.run(["bash", str(ROOT / "run_all.sh")], env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"run_all.sh failed on {data} (log {log}):\n" + "\n".join(tail))
    return time.time() - start, cpu_seconds(children_only=True) - cpu


def reuse_folds(source: Path, target: Path, models: list[str]) -> list[str]:
    """Hard-link the finished runs of `models` from another tag's work folder of the same
    release into this one (where this one has none yet): run_all.sh then finds them finished
    when their settings are this invocation's, and refuses them, naming what differs, when
    not. Logs are copied, not linked (a later run appends to its folds' logs). The models linked."""
    linked = []
    for release_dir in sorted(source.glob("*-*/runs")):
        for model in models:
            src, dst = release_dir / model, target / release_dir.parent.name / "runs" / model
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst, copy_function=lambda a, b: shutil.copy2(a, b) if a.endswith(".log")
                                else os.link(a, b))
                linked.append(model)
            elif src.is_dir() and _same_files(src, dst):  # linked by an earlier, stopped invocation
                linked.append(model)
    return sorted(set(linked))


def _same_files(src: Path, dst: Path) -> bool:
    """Whether every fold's metrics.json under `dst` is the very file under `src` (a hard link)."""
    metrics = sorted(p.relative_to(src) for p in src.glob("fold*/metrics.json"))
    return bool(metrics) and all((dst / m).is_file() and os.path.samefile(src / m, dst / m) for m in metrics)


# ------------------------------------------------------------------ scores

def labelled_ceiling(data: Path, ceiling: dict, track) -> float | None:
    """The ceiling of the labelled videos pooled, as the out-of-fold score pools them: from
    ceiling.json's "labelled" entry (the track's, in a release of several tracks), or (releases
    written before it) computed again (EMI) or approximated by the train and valid ceilings
    weighted by size (Aff-Wild2)."""
    import pandas as pd

    from solution.layouts import open_release
    from solution.metrics import pearson_per_dim

    ceiling = track.ceiling_of(ceiling) or {}
    if "labelled" in ceiling:
        return ceiling["labelled"]["mean"]
    if track.name == "emi":
        release = open_release(track, data)
        keys = sorted(release.labelled_keys())
        clean = pd.read_csv(data / "private" / "clean_intensities.csv", dtype={"Filename": str})
        clean = clean.set_index(clean.Filename.str.zfill(5)).loc[keys].iloc[:, 1:].to_numpy()
        labels = np.stack([release.video_targets(k) for k in keys])
        return float(pearson_per_dim(clean, labels).mean())
    parts = [s for s in ("train", "valid") if s in ceiling]
    if not parts:  # a learning curve's VA subset: its labelled ceiling is not known
        return None
    return sum(ceiling[s]["mean"] * ceiling[s]["frames"] for s in parts) / sum(ceiling[s]["frames"] for s in parts)


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_provenance(metrics: list[dict], started: float | None) -> dict:
    """What a run's folds say of themselves (metrics.json): their training CPU, a digest of
    the settings they were trained with (equal digests: trained alike), and per fold its
    commit, whether its tree had changes, when it finished and its CPU. A fold that finished
    before `started` (this invocation's start) was not trained by it; one that does not say
    when it finished (written before folds recorded it) is "unknown"."""
    folds = []
    for m in metrics:
        at = m.get("at")
        if at is None or started is None:
            trained = "unknown"
        else:
            trained = "earlier" if calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) < started else "now"
        folds.append({"fold": m.get("fold"), "commit": (m.get("commit") or "")[:10] or None, "dirty": m.get("dirty"),
                      "at": at, "cpu": m.get("cpu_seconds"), "trained": trained})
    cpu = [f["cpu"] for f in folds]
    return {"cpu": round(sum(cpu), 1) if None not in cpu else None,
            "settings": digest([{k: v for k, v in m.get("settings", {}).items() if k != "fold"} for m in metrics]),
            "folds": folds}


def panel_metadata(data: Path, track):
    """The synthetic release's metadata.csv (an emi-features release hides it in private/, as
    the organizers' has none), indexed by video key; None without one."""
    import pandas as pd

    from solution.layouts import emi_key

    path = next((p for p in (data / "metadata.csv", data / "private" / "metadata.csv") if p.is_file()), None)
    if path is None:
        return None
    meta = pd.read_csv(path, dtype=str)
    if track.level == "video":
        return meta.set_index(pd.Index([emi_key(v) for v in meta.Filename]))
    return meta.set_index("video")


def subject_oracle(track, preds: dict, targets: dict, subject_of: dict) -> float:
    """The score if every subject's mean prediction were moved onto its mean label (an oracle
    that knows each subject's offset, per target): how much subject-level offsets (a person's
    rating bias, expressivity, an annotator's bias on a VA video) cost. VA: per video, over
    its annotated frames."""
    from solution.metrics import score_predictions

    adjusted = {}
    if track.level == "video":
        for subject in set(subject_of[k] for k in preds):
            keys = [k for k in preds if subject_of[k] == subject]
            shift = np.mean([targets[k] for k in keys], 0) - np.mean([preds[k] for k in keys], 0)
            adjusted.update({k: np.asarray(preds[k]) + shift for k in keys})
    else:
        for key, pred in preds.items():
            label = np.asarray(targets[key])
            keep = track.annotated(label)
            pred = np.asarray(pred, np.float64)[: len(label)]
            adjusted[key] = pred + (label[keep].mean(0) - pred[keep].mean(0) if keep.any() else 0.0)
    return score_predictions(track, adjusted, targets)["mean"]


def score_release(data: Path, work: Path, runs: list[str], started: float | None = None) -> list[dict]:
    """Per run, then the blend: the out-of-fold and held-back test scores and their ceiling
    shares, the way, its cost and provenance, its out-of-fold score by condition and with
    each subject's offset known (subject_oracle), on the synthetic metadata. Each run
    alone is scored as `MODELS=<run>` would submit it (solution.ensemble with one run: on VA
    its rescale and smoothing chosen out of fold, as the blend's are), so every column is
    made alike; the blend row reads what run_all.sh wrote."""
    from solution.ensemble import blend_runs
    from solution.inference import run_predictions
    from solution.layouts import detect_track, open_release
    from solution.metrics import score_predictions
    from solution.predictions import prediction_filename, read_predictions, write_predictions
    from solution.report import CONDITIONS, scores_by_condition
    from solution.runs import release_work
    from solution.tracks import get_track

    track = get_track(detect_track(data))
    rw = release_work(work, data, track)
    release = open_release(track, data)
    ceiling = json.loads((data / "ceiling.json").read_text())
    oof_ceiling = labelled_ceiling(data, ceiling, track)
    ceiling = track.ceiling_of(ceiling)
    hidden = data / track.hidden_test
    meta = panel_metadata(data, track)
    flags = None if meta is None else meta[[c for c in CONDITIONS if c in meta.columns]]
    subject_of = None if meta is None else (meta.subject.to_dict() if track.level == "video"
                                            else {k: k for k in meta.index})

    def test_score(pred_path: Path) -> float:
        return track.evaluate(pred_path, hidden)["mean"]

    # Which held-back test videos and labels these are: --compare pairs only records that share them.
    labels = [hidden] if hidden.is_file() else sorted(hidden.glob("*.txt"))
    test_digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in labels)).hexdigest()[:12]

    def oof_scores(oof: dict) -> dict:
        targets = {k: release.video_targets(k) for k in oof}
        out = {"oof": score_predictions(track, oof, targets)["mean"]}
        if flags is not None and len(flags.columns):
            out["by_condition"] = dict(zip(("oof", "videos"), scores_by_condition(track, flags, oof, targets)))
        if subject_of is not None:
            out["oof_subject_oracle"] = round(subject_oracle(track, oof, targets, subject_of), 4)
        return out

    def way_of(blend: dict) -> dict:
        scores = blend.get("scores", {})
        return {"way": scores.get("chosen"), "smooth": blend.get("smooth_seconds"),
                "way_by_fold": scores.get("nested", {}).get("way_by_part")}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / prediction_filename(track, "test")

        def scored(test: dict) -> float:
            write_predictions(path, track, test)
            return test_score(path)

        for run in runs:
            raw_oof, raw_test, metrics = run_predictions(rw, run)
            blend, oof, test, _ = blend_runs(data, rw, [run])
            row = {"run": run, **oof_scores(oof), "test": scored(test), **way_of(blend), **run_provenance(metrics, started)}
            if track.level == "frame":  # the run's own predictions, before the rescale and smoothing chosen for it
                row.update(oof_raw=round(blend["scores"]["single"][run], 4), test_raw=round(scored(raw_test), 4))
            rows.append(row)
    pred = rw.predictions
    blend = json.loads(rw.blend_json.read_text())
    costs = [r["cpu"] for r in rows if r["run"] in blend["runs"]]
    rows.append({"run": "blend", **oof_scores(read_predictions(pred / prediction_filename(track, "oof"), track)),
                 "test": test_score(pred / prediction_filename(track, "test")), **way_of(blend),
                 "weights": blend.get("weights"), "runs": blend["runs"],
                 # the chosen way's own honest estimate (the way chosen on every fold): before nesting, and
                 # on VA before the smoothing too
                 "oof_way": round(blend["scores"]["blends"][blend["scores"]["chosen"]]["honest"], 4),
                 "cpu": round(sum(costs), 1) if None not in costs and len(costs) == len(blend["runs"]) else None})
    for row in rows:
        row["test_digest"] = test_digest
        row["oof"], row["test"] = round(row["oof"], 4), round(row["test"], 4)
        row["oof_share"] = None if oof_ceiling is None else round(row["oof"] / oof_ceiling, 4)
        row["test_share"] = round(row["test"] / ceiling["test"]["mean"], 4)
    return rows


# ------------------------------------------------------------------ results files

MEANS = tuple(f"mean {kind}" for kind in KINDS + ("all",))


def read_records(path: Path) -> list[dict]:
    """The records of a results file, or none when it does not exist yet."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def earlier_records(path: Path, planned: set[str], panel: str, train_args: str, settings: dict | None = None) -> list[dict]:
    """The releases a tag measured in an earlier invocation with the same panel and settings and
    not measured again now: they stay in its results file and its means (`--kinds va` after
    `--quick` adds to the file, never wipes it). `settings`: the invocation's (main), matched
    by their digest; records written before they carried one match on panel and train_args."""
    def same(r):
        if "settings_digest" in r and settings is not None:
            return r["settings_digest"] == digest(settings)
        return r["panel"] == panel and r["train_args"] == train_args

    return [r for r in read_records(path) if r["release"] not in MEANS and r["release"] not in planned and same(r)]


def write_records(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def common_releases(records: list[dict], runs: list[str]) -> list[str]:
    """The releases (in file order) that hold a record of every one of `runs`: the only ones a
    mean over them may be taken on."""
    releases = list(dict.fromkeys(r["release"] for r in records if r["release"] not in MEANS))
    have = {(r["release"], r["run"]) for r in records}
    return [rel for rel in releases if all((rel, run) in have for run in runs)]


def means(records: list[dict], kinds: list[str], runs: list[str], panel: str, tag: str, train_args: str,
          machine: dict) -> list[dict]:
    """The mean rows per kind and over all, per run, over the releases that hold every run the
    records have (the blend included), with their count."""
    rows = []
    present = [run for run in runs + ["blend"] if any(r["run"] == run for r in records)]
    common = set(common_releases(records, present))
    for kind in kinds + ["all"]:  # emi-features' out-of-fold folds are not grouped by subject: kept apart
        for run in runs + ["blend"]:
            mine = [r for r in records if r["run"] == run and r["release"] in common and kind in ("all", r["kind"])]
            if mine:
                mean = {k: None if None in (v := [r[k] for r in mine]) else round(float(np.mean(v)), 4)
                        for k in ("oof", "test", "oof_share", "test_share")}
                cpu = [r.get("cpu") for r in mine]
                rows.append({"bench": "quality", "panel": panel, "tag": tag, "release": f"mean {kind}", "kind": kind,
                             "run": run, "releases": len(mine), **mean,
                             "cpu": round(float(np.mean(cpu)), 1) if None not in cpu else None,
                             "train_args": train_args, "machine": machine})
    return rows


def table(records: list[dict], runs: list[str]) -> str:
    releases = list(dict.fromkeys(r["release"] for r in records))
    head = "| release | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs)
    lines = [head]
    by = {(r["release"], r["run"]): r for r in records}
    for release in releases:
        cells = []
        for run in runs:
            r = by.get((release, run))
            cells.append("" if r is None else f"{r['test']:.3f} ({r['test_share']:.2f}) / {r['oof']:.3f}")
        count = next((r.get("releases") for r in records if r["release"] == release and r.get("releases")), None)
        name = f"**{release}** ({count})" if release in MEANS else release
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cpu = [f"{run} {np.mean(v) / 3600:.2f}" for run in runs
           if (v := [r["cpu"] for r in records if r["run"] == run and r["release"] not in MEANS and r.get("cpu")])]
    return "\n".join(lines) + ("\n\nEach cell: held-back test score (its share of the noise-free ceiling) / "
                               "out-of-fold score; EMI mean Pearson, VA mean CCC, EXPR macro F1, AU mean F1. "
                               "Means over the releases that hold every run (their count in brackets)."
                               + (f"\nTraining CPU-hours per release (mean): {', '.join(cpu)}." if cpu else ""))


def print_table(path: Path) -> int:
    """--table: the table of a results file as it stands (a panel stopped part way has no mean
    rows yet: they are computed from the releases it holds)."""
    if not path.is_file():
        print(f"error: {path}: no such results file", file=sys.stderr)
        return 1
    records = [r for r in read_records(path) if r["release"] not in MEANS]
    if not records:
        print(f"error: {path} holds no release yet", file=sys.stderr)
        return 1
    tags = list(dict.fromkeys(r["tag"] for r in records))
    for tag in tags:  # a reference file may hold several variants: one table each
        mine = [r for r in records if r["tag"] == tag]
        kinds = [k for k in KINDS if any(r["kind"] == k for r in mine)]
        runs = [r for r in dict.fromkeys(r["run"] for r in mine) if r != "blend"]
        first = mine[0]
        mine += means(mine, kinds, runs, first["panel"], tag, first["train_args"], first["machine"])
        if len(tags) > 1:
            print(f"\n{tag} ({first['panel']} panel{', ' + first['train_args'] if first['train_args'] else ''}):\n")
        print(table(mine, runs + ["blend"]))
    return 0


# ------------------------------------------------------------------ comparing two runs

def paired_interval(differences, level: float = 0.95) -> dict:
    """The mean of per-release differences with its two-sided t interval over releases: n,
    mean, sd, low, high, and the smallest mean difference an interval this wide would tell
    from zero (its half-width)."""
    from scipy import stats

    d = np.asarray(differences, np.float64)
    n = len(d)
    if n == 0:
        return {"n": 0}
    mean = float(d.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "low": None, "high": None, "half": None}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "half": half}


def verdict(interval: dict) -> str:
    if interval.get("low") is None:
        return "too few releases"
    if interval["low"] > 0:
        return "above zero"
    if interval["high"] < 0:
        return "below zero"
    return "within noise"


def resolve_side(text: str, quality_dir: Path) -> tuple[list[dict], str | None, str]:
    """A --compare side, SOURCE[@TAG][:RUN] -> (its release records, run or None, label).
    SOURCE is a tag of QUALITY_DIR (results-<tag>.jsonl) or a .jsonl path; @TAG picks one
    tag of a file that holds several (bench/reference/quality-tune.jsonl)."""
    name, _, run = text.partition(":")
    name, _, tag = name.partition("@")
    path = Path(name)
    if not (path.suffix == ".jsonl" or path.is_file()):
        path = quality_dir / f"results-{name}.jsonl"
    if not path.is_file():
        raise SystemExit(f"--compare {text}: no results file {path} (a tag of QUALITY_DIR, or a .jsonl path)")
    records = [r for r in read_records(path) if r["release"] not in MEANS]
    tags = list(dict.fromkeys(r["tag"] for r in records))
    if tag:
        records = [r for r in records if r["tag"] == tag]
        if not records:
            raise SystemExit(f"--compare {text}: {path} holds no tag {tag!r} (it holds {', '.join(tags)})")
    elif len(tags) > 1:
        raise SystemExit(f"--compare {text}: {path} holds several tags; name one with @TAG: {', '.join(tags)}")
    return records, run or None, text


def compare(a: str, b: str, quality_dir: Path, kinds: list[str] | None = None) -> tuple[str, list[dict]]:
    """B against A, paired per release over the releases both hold: per run (those both
    hold, or the one each side names), the difference B - A of the held-back test and of the
    out-of-fold score per release, their means with 95 % intervals over releases (per kind
    and over all), and the training CPU each side cost. Markdown text, and one record per
    run and scope."""
    rec_a, run_a, label_a = resolve_side(a, quality_dir)
    rec_b, run_b, label_b = resolve_side(b, quality_dir)
    if kinds:
        rec_a = [r for r in rec_a if r["kind"] in kinds]
        rec_b = [r for r in rec_b if r["kind"] in kinds]
    if (run_a is None) != (run_b is None):
        raise SystemExit("--compare: name a run on both sides (TAG:RUN TAG:RUN) or on neither")
    if run_a is None:
        runs_a = list(dict.fromkeys(r["run"] for r in rec_a))
        pairs = [(run, run) for run in runs_a if any(r["run"] == run for r in rec_b)]
    else:
        pairs = [(run_a, run_b)]
    if not pairs:
        raise SystemExit(f"--compare: {label_a} and {label_b} share no run")
    by_a = {(r["release"], r["run"]): r for r in rec_a}
    by_b = {(r["release"], r["run"]): r for r in rec_b}
    lines = [f"B = {label_b} against A = {label_a}: B - A per release (held-back test / out of fold), paired over the "
             "releases both hold; mean with its 95 % interval over releases.", ""]
    records = []
    for ra, rb in pairs:
        both = [rel for rel in dict.fromkeys(r["release"] for r in rec_a) if (rel, ra) in by_a and (rel, rb) in by_b]
        # A release of the same name is paired only when both were scored on the same held-back
        # test videos (a learning curve's or another size's release is not the panel's own).
        releases = [rel for rel in both if by_a[(rel, ra)].get("test_digest") == by_b[(rel, rb)].get("test_digest")]
        unpaired = sorted(set(both) - set(releases))
        if not releases:
            lines += [f"### {ra if ra == rb else f'{rb} - {ra}'}", "", "no release of both scored on the same held-back "
                      f"test videos (not paired: {', '.join(unpaired)})", ""]
            continue
        name = ra if ra == rb else f"{rb} - {ra}"
        lines += [f"### {name}", "", "| release | B - A test | B - A out of fold | A test | B test | A CPU h | B CPU h |",
                  "|---|---|---|---|---|---|---|"]
        for rel in releases:
            x, y = by_a[(rel, ra)], by_b[(rel, rb)]
            lines.append(f"| {rel} | {y['test'] - x['test']:+.4f} | {y['oof'] - x['oof']:+.4f} | {x['test']:.4f} | "
                         f"{y['test']:.4f} | {hours(x.get('cpu'))} | {hours(y.get('cpu'))} |")
        lines += ["", "| scope | releases | test: mean B - A [95 % interval] | verdict | out of fold: mean B - A [95 % interval] | "
                  "verdict | CPU h per release A / B | test score against CPU |", "|---|---|---|---|---|---|---|---|"]
        scopes = [k for k in KINDS if any(by_a[(rel, ra)]["kind"] == k for rel in releases)]
        for scope in scopes + ["all"]:
            mine = [rel for rel in releases if scope in ("all", by_a[(rel, ra)]["kind"])]
            if len(scopes) == 1 and scope == "all":
                continue
            record = {"bench": "quality-compare", "a": label_a, "b": label_b, "run": name, "scope": scope,
                      "releases": mine}
            cells = []
            for score in SCORES:
                interval = paired_interval([by_b[(rel, rb)][score] - by_a[(rel, ra)][score] for rel in mine])
                record[score] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in interval.items()}
                record[score]["verdict"] = verdict(interval)
                cells += [interval_text(interval), record[score]["verdict"]]
            cost_a = [by_a[(rel, ra)].get("cpu") for rel in mine]
            cost_b = [by_b[(rel, rb)].get("cpu") for rel in mine]
            per_hour = "–"
            if None not in cost_a + cost_b:
                record["cpu_a"], record["cpu_b"] = float(np.mean(cost_a)), float(np.mean(cost_b))
                extra = (record["cpu_b"] - record["cpu_a"]) / 3600
                if abs(extra) >= 0.005:
                    # the change in test score per change in CPU: positive when the dearer side scores higher
                    record["test_per_cpu_hour"] = record["test"]["mean"] / extra
                    per_hour = (f"{record['test']['mean']:+.4f} for {extra:+.2f} CPU-h: "
                                f"{abs(record['test_per_cpu_hour']):.3f} {'gained' if record['test']['mean'] > 0 else 'lost'}"
                                f" per CPU-h {'spent' if extra > 0 else 'saved'}")
                else:
                    per_hour = "same cost"
                costs = f"{record['cpu_a'] / 3600:.2f} / {record['cpu_b'] / 3600:.2f}"
            else:
                costs = "–"
            lines.append(f"| {scope} | {len(mine)} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {costs} | {per_hour} |")
            records.append(record)
        if unpaired:
            lines.append(f"Not paired (other held-back test videos): {', '.join(unpaired)}.")
        lines.append("")
    lines.append("An interval above zero: B is better on these releases; within noise: the panel cannot tell them apart "
                 "(its half-width is the smallest mean difference it could have seen). CPU: the training CPU of the "
                 "runs' folds (metrics.json; a blend's is its models'), wherever they were trained.")
    return "\n".join(lines), records


def hours(cpu) -> str:
    return "–" if cpu is None else f"{cpu / 3600:.2f}"


def interval_text(interval: dict) -> str:
    if interval.get("low") is None:
        return f"{interval.get('mean', float('nan')):+.4f}"
    return f"{interval['mean']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"


# ------------------------------------------------------------------ the command

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bash bench/quality.sh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--panel", choices=["tune", "report"], default=argparse.SUPPRESS,
                        help="which releases (required to run: no default, so an ablation never lands on the "
                             "report releases by accident)")
    parser.add_argument("--quick", action="store_true", help="only the first release of each kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of kinds to run (or to --compare)")
    parser.add_argument("--only", default="", metavar="RELEASES",
                        help="comma list of the panel's releases to run, e.g. emi-media-113,va-312 (default: all of --kinds)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="MODELS for run_all.sh (blended)")
    parser.add_argument("--baseline", default=BASELINE, help="BASELINE for run_all.sh (reported, not blended)")
    parser.add_argument("--train-args", default="", help="TRAIN_ARGS for run_all.sh (an ablation or a candidate default)")
    parser.add_argument("--feature-args", default="", help="FEATURE_ARGS for run_all.sh")
    parser.add_argument("--videos-scale", type=float, choices=[0.5, 1.0, 2.0], default=argparse.SUPPRESS,
                        help="a learning curve's point: the release drawn from the same world with twice the videos, "
                             "of whose labelled subjects this share / 2 is kept (the held-back test videos stay)")
    parser.add_argument("--latents", action="store_true",
                        help="releases that also hold the generator's clean latent streams (train on them with "
                             "--feature-args and --train-args, see bench/README.md)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a further run_all.sh setting, repeatable (e.g. LABEL_DELAY=pooled); recorded")
    parser.add_argument("--tag", default="default", help="names this variant's runs and results file")
    parser.add_argument("--reuse", default="", metavar="TAG:MODELS",
                        help="link the finished folds of MODELS (comma list) from tag TAG's work instead of training "
                             "them again; they must have been trained with this invocation's settings")
    parser.add_argument("--folds", type=int, default=3, help="FOLDS for run_all.sh")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="folds trained at once")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("QUALITY_DIR", ROOT / "work" / "quality")),
                        help="releases, work and results (QUALITY_DIR)")
    parser.add_argument("--table", type=Path, metavar="RESULTS", default=argparse.SUPPRESS,
                        help="only print the table of a results file (e.g. bench/reference/quality-report.jsonl)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=argparse.SUPPRESS,
                        help="only compare two results: each a tag of QUALITY_DIR or a .jsonl file, optionally "
                             ":RUN (e.g. base:dual_stage base:blend); paired per release with 95 %% intervals and cost")
    args = parser.parse_args(argv)
    if getattr(args, "table", None):
        return print_table(args.table)
    kinds = [k for k in args.kinds.split(",") if k]
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        parser.error(f"--kinds: unknown {bad}; choose from {KINDS}")
    if getattr(args, "compare", None):
        text, records = compare(*args.compare, args.dir, kinds if args.kinds != ",".join(KINDS) else None)
        for record in records:
            emit(record, sys.stderr)
        print(text)
        return 0
    args.panel, args.videos_scale = getattr(args, "panel", None), getattr(args, "videos_scale", None)
    if args.panel is None:
        parser.error("--panel tune or --panel report is required to run the panel (the report releases run once, "
                     "at the end of a change of quality; ablations and candidate defaults run on --panel tune)")
    releases_dir = args.dir / "releases"
    work = args.dir / f"work-{args.tag}"
    shared_features = args.dir / "features"
    shared_features.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    runs = models + ([args.baseline] if args.baseline else [])
    reuse_tag, _, reuse_models = args.reuse.partition(":")
    if args.reuse and not (reuse_tag and reuse_models):
        parser.error("--reuse TAG:MODELS, e.g. --reuse base:dual_stage,foalnet,linear")
    machine = machine_info(threads=None)
    code = stamp()
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    if len(env) != len(args.env):
        parser.error("--env takes NAME=VALUE")
    settings = {"panel": args.panel, "models": models, "baseline": args.baseline, "folds": args.folds,
                "train_args": args.train_args, "feature_args": args.feature_args, "videos_scale": args.videos_scale,
                "latents": args.latents, "env": env}
    records, results = [], args.dir / f"results-{args.tag}.jsonl"
    plan = [(kind, seed) for kind in kinds for seed in PANELS[args.panel][kind][: 1 if args.quick else None]]
    if args.only:
        only = [r for r in args.only.split(",") if r]
        unknown = sorted(set(only) - {f"{k}-{s}" for k in KINDS for s in PANELS[args.panel][k]})
        if unknown:
            parser.error(f"--only: {unknown} are not {args.panel} releases: " +
                         ", ".join(f"{k}-{s}" for k in KINDS for s in PANELS[args.panel][k]))
        plan = [(kind, seed) for kind, seed in plan if f"{kind}-{seed}" in only]
    kept = earlier_records(results, {f"{kind}-{seed}" for kind, seed in plan}, args.panel, args.train_args, settings)
    for i, (kind, seed) in enumerate(plan):
        name = f"{kind}-{seed}"
        progress(f"[{i + 1}/{len(plan)}] {name}: writing the release (cached)")
        # Every stage (this process's and run_all.sh's) reads the release as the kind's track:
        # an expr or au release also holds VA's annotations (solution.tracks.detect_track).
        os.environ["TRACK"] = KIND_TRACK[kind]
        data = make_release(kind, seed, releases_dir, args.videos_scale, args.latents)
        # One work folder per release and settings: a release written again with other
        # settings never meets the runs of the earlier one. (8 hex digits of its bytes: the
        # folder names of the committed runs.)
        subset = data / "subset.json"
        release_digest = hashlib.sha256((data / "synth_config.json").read_bytes()
                                        + (subset.read_bytes() if subset.is_file() else b"")).hexdigest()[:8]
        release_work_dir = work / f"{name}-{release_digest}"
        release_work_dir.mkdir(exist_ok=True)
        if not (release_work_dir / "features").exists():  # one features cache for every tag and release
            (release_work_dir / "features").symlink_to(shared_features.resolve(), target_is_directory=True)
        reused = []
        if args.reuse:
            source = args.dir / f"work-{reuse_tag}" / release_work_dir.name
            reused = reuse_folds(source, release_work_dir, [m for m in reuse_models.split(",") if m])
            progress(f"{name}: linked {reused or 'no'} finished runs from tag {reuse_tag}")
        progress(f"[{i + 1}/{len(plan)}] {name}: bash run_all.sh (log {work / (name + '.log')})")
        started = time.time()
        seconds, cpu = run_release(data, release_work_dir, ",".join(models), args.baseline, args.folds,
                                   args.train_args, args.jobs, work / f"{name}.log", args.feature_args, env)
        for row in score_release(data, release_work_dir, runs, started):
            if row["run"] in reused or (row["run"] == "blend" and set(models) & set(reused)):
                row["reused_from"] = reuse_tag if row["run"] != "blend" else {reuse_tag: sorted(set(models) & set(reused))}
            record = {"bench": "quality", "panel": args.panel, "tag": args.tag, "release": name, "kind": kind,
                      "seconds": round(seconds), "cpu_release": round(cpu), "train_args": args.train_args,
                      **{k: settings[k] for k in ("feature_args", "videos_scale", "latents", "env") if settings[k]}, **row,
                      "code": code, "settings_digest": digest(settings), "release_digest": release_digest,
                      "machine": machine}
            records.append(record)
            emit(record)
        write_records(results, kept + records)  # after every release: a stopped panel keeps what it measured
        progress(f"{name}: " + ", ".join(f"{r['run']} {r['test']:.3f}" for r in records if r["release"] == name))
    records = kept + records
    measured_kinds = [k for k in KINDS if any(r["kind"] == k for r in records)]
    for record in means(records, measured_kinds, runs, args.panel, args.tag, args.train_args, machine):
        records.append(record)
        emit(record)
    write_records(results, records)
    print()
    print(table(records, runs + ["blend"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
