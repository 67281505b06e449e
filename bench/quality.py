"""The quality panel: the default models and the baseline on many synthetic releases, each
drawn from its own world, scored out of fold and on its held-back test labels.

    bash bench/quality.sh                 # the report releases (the README's results table)
    bash bench/quality.sh --panel tune    # the tune releases (defaults and ablations are decided there)
    bash bench/quality.sh --quick         # one report release of each kind, about 15 minutes
    bash bench/quality.sh --panel tune --tag no_crop --train-args "--set crop_seconds=0" --models dual_stage
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
tag has its own runs. A stopped panel resumes: releases, features and finished folds are reused. Per release and run: the out-of-fold score (the blend's honest one),
the held-back test score, and each as a share of the release's noise-free ceiling (ceiling.json:
the score of the clean intensities against the labels). Then the mean over the releases.

Writes JSON lines (one per release and run, and one per run for the mean) to stdout and to
QUALITY_DIR/results-<tag>.jsonl (releases of this tag measured by an earlier invocation with the
same panel and settings are kept there), then a Markdown table. QUALITY_DIR defaults to work/quality.
Tune and report releases have disjoint seeds; nothing is tuned on the report releases.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import ROOT, emit, machine_info, progress  # noqa: E402

KINDS = ("emi-media", "emi-features", "va")
# Seeds per kind and panel: tune and report never share one.
PANELS = {"tune": {"emi-media": [101, 102, 111, 112, 113], "emi-features": [201, 202, 211, 212, 213],
                   "va": [301, 302, 311, 312, 313]},
          "report": {"emi-media": [121, 122, 123], "emi-features": [221, 222, 223], "va": [321, 322, 323]}}
DEFAULT_MODELS, BASELINE = "dual_stage,foalnet,rcma", "linear"


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


def make_release(kind: str, seed: int, releases: Path) -> Path:
    """Write (or reuse) the release; an emi-features one loses metadata.csv, as the organizers' has none."""
    from solution import synth

    out = releases / f"{kind}-{seed}"
    world = draw_world(kind, seed)
    track = "va" if kind == "va" else "emi"
    synth.generate(track, out, seed=seed, overwrite=True, **world)  # our folder: a half-written one is redone
    if kind == "emi-features":
        hidden = out / "private" / "metadata.csv"
        if (out / "metadata.csv").is_file():
            hidden.parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / "metadata.csv", hidden)
    return out


def run_release(data: Path, work: Path, models: str, baseline: str, folds: int, train_args: str, jobs: int,
                log: Path) -> float:
    """bash run_all.sh on the release, output to `log`; seconds taken."""
    from solution.layouts import detect_track

    env = {**os.environ, "TRACK": detect_track(data), "DATA_DIR": str(data), "WORK_DIR": str(work),
           "MODELS": models, "BASELINE": baseline,
           "FOLDS": str(folds), "JOBS": str(jobs), "TRAIN_ARGS": train_args,
           "SUBMISSIONS_DIR": str(work / "submissions")}
    start = time.time()
    with open(log, "w") as out:
        done = subprocess.run(["bash", str(ROOT / "run_all.sh")], env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"run_all.sh failed on {data} (log {log}):\n" + "\n".join(tail))
    return time.time() - start


def labelled_ceiling(data: Path, ceiling: dict, track) -> float:
    """The ceiling of the labelled videos pooled, as the out-of-fold score pools them: from
    ceiling.json's "labelled" entry, or (releases written before it) computed again (EMI) or
    approximated by the train and valid ceilings weighted by size (VA)."""
    import pandas as pd

    from solution.layouts import open_release
    from solution.metrics import pearson_per_dim

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
    return sum(ceiling[s]["mean"] * ceiling[s]["frames"] for s in parts) / sum(ceiling[s]["frames"] for s in parts)


def score_release(data: Path, work: Path, runs: list[str]) -> list[dict]:
    """Per run (and the blend): out-of-fold and held-back test scores and their ceiling shares."""
    from solution.evaluate import evaluate_emi, evaluate_va
    from solution.inference import run_predictions
    from solution.layouts import detect_track, open_release
    from solution.metrics import score_predictions
    from solution.predictions import prediction_filename, read_predictions, write_predictions
    from solution.runs import release_work
    from solution.tracks import get_track

    track = get_track(detect_track(data))
    rw = release_work(work, data, track)
    release = open_release(track, data)
    ceiling = json.loads((data / "ceiling.json").read_text())
    oof_ceiling = labelled_ceiling(data, ceiling, track)
    hidden = data / "private" / ("test_labels.csv" if track.name == "emi" else "VA_Estimation_Challenge/Test_Set")

    def test_score(pred_path: Path) -> float:
        return (evaluate_emi if track.name == "emi" else evaluate_va)(pred_path, hidden)["mean"]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            oof, test, _ = run_predictions(rw, run)
            targets = {k: release.video_targets(k) for k in oof}
            path = Path(tmp) / prediction_filename(track, "test")
            write_predictions(path, track, test)
            rows.append({"run": run, "oof": score_predictions(track, oof, targets)["mean"], "test": test_score(path)})
    pred = rw.predictions
    oof = read_predictions(pred / prediction_filename(track, "oof"), track)
    blend = json.loads(rw.blend_json.read_text())
    rows.append({"run": "blend", "oof": score_predictions(track, oof, {k: release.video_targets(k) for k in oof})["mean"],
                 "test": test_score(pred / prediction_filename(track, "test")),
                 "weights": blend.get("weights"), "way": blend.get("mode") or blend.get("way")})
    for row in rows:
        row["oof"], row["test"] = round(row["oof"], 4), round(row["test"], 4)
        row["oof_share"] = round(row["oof"] / oof_ceiling, 4)
        row["test_share"] = round(row["test"] / ceiling["test"]["mean"], 4)
    return rows


MEANS = tuple(f"mean {kind}" for kind in KINDS + ("all",))


def read_records(path: Path) -> list[dict]:
    """The records of a results file, or none when it does not exist yet."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def earlier_records(path: Path, planned: set[str], panel: str, train_args: str) -> list[dict]:
    """The releases a tag measured in an earlier invocation with the same panel and settings and
    not measured again now: they stay in its results file and its means (`--kinds va` after
    `--quick` adds to the file, never wipes it)."""
    return [r for r in read_records(path) if r["release"] not in MEANS and r["release"] not in planned
            and r["panel"] == panel and r["train_args"] == train_args]


def write_records(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


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
        name = f"**{release}**" if release in MEANS else release
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nEach cell: held-back test score (its share of the noise-free ceiling) / "
                               "out-of-fold score; EMI mean Pearson, VA mean CCC.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bash bench/quality.sh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--panel", choices=["tune", "report"], default="report", help="which releases")
    parser.add_argument("--quick", action="store_true", help="only the first release of each kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of kinds to run")
    parser.add_argument("--only", default="", metavar="RELEASES",
                        help="comma list of the panel's releases to run, e.g. emi-media-113,va-312 (default: all of --kinds)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="MODELS for run_all.sh (blended)")
    parser.add_argument("--baseline", default=BASELINE, help="BASELINE for run_all.sh (reported, not blended)")
    parser.add_argument("--train-args", default="", help="TRAIN_ARGS for run_all.sh (an ablation or a candidate default)")
    parser.add_argument("--tag", default="default", help="names this variant's runs and results file")
    parser.add_argument("--folds", type=int, default=3, help="FOLDS for run_all.sh")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="folds trained at once")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("QUALITY_DIR", ROOT / "work" / "quality")),
                        help="releases, work and results (QUALITY_DIR)")
    parser.add_argument("--table", type=Path, metavar="RESULTS",
                        default=argparse.SUPPRESS,
                        help="only print the table of a results file (e.g. bench/reference/quality-report.jsonl)")
    args = parser.parse_args(argv)
    if getattr(args, "table", None):
        return print_table(args.table)
    kinds = [k for k in args.kinds.split(",") if k]
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        parser.error(f"--kinds: unknown {bad}; choose from {KINDS}")
    releases_dir = args.dir / "releases"
    work = args.dir / f"work-{args.tag}"
    shared_features = args.dir / "features"
    shared_features.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    runs = models + ([args.baseline] if args.baseline else [])
    machine = machine_info(threads=None)
    records, results = [], args.dir / f"results-{args.tag}.jsonl"
    plan = [(kind, seed) for kind in kinds for seed in PANELS[args.panel][kind][: 1 if args.quick else None]]
    if args.only:
        only = [r for r in args.only.split(",") if r]
        unknown = sorted(set(only) - {f"{k}-{s}" for k in KINDS for s in PANELS[args.panel][k]})
        if unknown:
            parser.error(f"--only: {unknown} are not {args.panel} releases: " +
                         ", ".join(f"{k}-{s}" for k in KINDS for s in PANELS[args.panel][k]))
        plan = [(kind, seed) for kind, seed in plan if f"{kind}-{seed}" in only]
    kept = earlier_records(results, {f"{kind}-{seed}" for kind, seed in plan}, args.panel, args.train_args)
    for i, (kind, seed) in enumerate(plan):
        name = f"{kind}-{seed}"
        progress(f"[{i + 1}/{len(plan)}] {name}: writing the release (cached)")
        data = make_release(kind, seed, releases_dir)
        progress(f"[{i + 1}/{len(plan)}] {name}: bash run_all.sh (log {work / (name + '.log')})")
        # One work folder per release and settings: a release written again with other
        # settings never meets the runs of the earlier one.
        digest = hashlib.sha256((data / "synth_config.json").read_bytes()).hexdigest()[:8]
        release_work_dir = work / f"{name}-{digest}"
        release_work_dir.mkdir(exist_ok=True)
        if not (release_work_dir / "features").exists():  # one features cache for every tag and release
            (release_work_dir / "features").symlink_to(shared_features.resolve(), target_is_directory=True)
        seconds = run_release(data, release_work_dir, ",".join(models), args.baseline, args.folds, args.train_args,
                              args.jobs, work / f"{name}.log")
        for row in score_release(data, release_work_dir, runs):
            record = {"bench": "quality", "panel": args.panel, "tag": args.tag, "release": name, "kind": kind,
                      "seconds": round(seconds), "train_args": args.train_args, **row, "machine": machine}
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


def means(records: list[dict], kinds: list[str], runs: list[str], panel: str, tag: str, train_args: str,
          machine: dict) -> list[dict]:
    """The mean rows: per kind and over all releases, per run."""
    rows = []
    for kind in kinds + ["all"]:  # emi-features' out-of-fold folds are not grouped by subject: kept apart
        for run in runs + ["blend"]:
            mine = [r for r in records if r["run"] == run and r["release"] not in MEANS and kind in ("all", r["kind"])]
            if mine:
                mean = {k: round(float(np.mean([r[k] for r in mine])), 4) for k in ("oof", "test", "oof_share", "test_share")}
                rows.append({"bench": "quality", "panel": panel, "tag": tag, "release": f"mean {kind}", "kind": kind,
                             "run": run, "releases": len(mine), **mean, "train_args": train_args, "machine": machine})
    return rows


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


if __name__ == "__main__":
    sys.exit(main())
