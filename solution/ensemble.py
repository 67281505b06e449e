"""python -m solution.ensemble: one blend of trained runs, fit out of fold, and its predictions.

    python -m solution.ensemble --data DIR --work WORK --runs dual_stage,foalnet,rcma
        [--ways fitted|equal|all] [--equal] [--no-rescale] [--out DIR] [--zip NAME [--zip-dir DIR]]

Per run: its out-of-fold predictions (every labelled video once, from the fold that held it
out) and its test predictions averaged over the folds. The runs are blended with
non-negative weights that sum to one, fit on the out-of-fold predictions to maximise the
track's metric as the leaderboard computes it (EMI: mean Pearson over videos; VA: mean CCC
over every annotated frame), either one weight vector for every target ("shared") or one
per target ("per_target"). On CCC tracks an affine rescale per target may follow the blend:
averaging shrinks the predictions' spread, CCC punishes that, and the map that matches the
labels' mean and spread undoes it (solution/blend.py says why this map is the best one).
For Pearson an affine map changes nothing, so none is fit.

Weights fit on the rows they are scored on flatter themselves, so every way of blending is
also estimated honestly: each fold's videos are blended with weights (and rescale) fit on
the other folds only, and all folds are scored together. The table shows each run alone,
equal weights, and both fitted modes, in-sample and honest (with and without the rescale on
CCC tracks). The blend used is the fitted mode, with or without the rescale, whose honest
estimate is best (--ways equal, or --equal: equal weights; --ways all: every way competes;
by default equal weights are shown, never chosen, see docs/training.md); no test label is ever read. Its weights are then fit on every
out-of-fold row. With one run the blend is that run, weight 1. Frame-level tracks (VA): the
blend is then smoothed over time per video, by the width that scores best on the chosen
way's honest blend (the table lists every width's score; `smooth_seconds` in blend.json).

The best of several honest estimates is itself optimistic, so the score reported for the
blend is that of the whole procedure, nested: for each fold, the way is chosen by a
cross-fit over the other folds only, fit on them, applied to the fold, and (VA) smoothed by
the width that scores best on what the same procedure predicts for the other folds. No
choice that shapes a fold's predictions has seen its labels. On VA each run alone is scored
the same way (its rescale and smoothing chosen out of fold), so the table compares a run
and the blend as each would be submitted.

Writes to WORK/<track>-<fingerprint>/predictions/ (or --out): blend.json (solution/blend.py
gives the format; solution.predict applies it to new data), test predictions (the blend of
the fold-averaged test predictions), and oof predictions, the procedure's own out-of-fold
predictions (each fold blended as the procedure does without its labels), so scoring them
gives the nested estimate; oof.csv/test.csv for EMI, oof.txt/test.txt for VA. --zip NAME also writes the
submission zip through solution.submission and validates it.

The test predictions average the folds' models, so their spread is somewhat smaller than
that of the out-of-fold predictions the rescale was fit on; the rescale does not undo that.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solution import submission
from solution.blend import (WAYS, Fit, Nested, apply_blend, best_width, checked_decision, choose, compare_blends,
                            holdout_parts, nest, nested_decisions, nested_predictions, nested_smoothing, part_blend,
                            part_learnables, single_scores, smooth_over_time, smoothing_scores, stack_predictions,
                            to_blend, write_blend)
from solution.decisions import describe_decision
from solution.errors import DataError
from solution.inference import run_predictions
from solution.listing import add_test_listing_option
from solution.metrics import score_predictions
from solution.predictions import prediction_filename, write_predictions
from solution.runs import ReleaseWork, read_folds, release_work
from solution.tracks import Track, open_release


def load_runs(rw: ReleaseWork, runs: list[str]) -> tuple[dict, dict]:
    """{run: out-of-fold predictions}, {run: fold-averaged test predictions}; every run must
    predict the same videos, with finite values."""
    oof_by_run, test_by_run = {}, {}
    for run in runs:
        oof_by_run[run], test_by_run[run], _ = run_predictions(rw, run)
    for what, table in (("out-of-fold", oof_by_run), ("test", test_by_run)):
        for run in runs[1:]:
            differ = sorted(set(table[run]) ^ set(table[runs[0]]))
            if differ:
                raise DataError(f"runs {runs[0]} and {run} predict different {what} videos "
                                f"({len(differ)}, e.g. {differ[:5]}); were they trained on the same release and folds?")
        for run, preds in table.items():
            bad = [k for k, v in preds.items() if not np.isfinite(v).all()]
            if bad:
                raise DataError(f"{rw.run(run)}: NaN or inf in the {what} predictions of {len(bad)} video(s), e.g. {bad[:5]}")
    return oof_by_run, test_by_run


def holdout_of(rw: ReleaseWork, keys) -> dict:
    """{video: the part it is held out in for the honest estimate}, from the release's folds.csv."""
    table, _ = read_folds(rw)
    held = table[table.fold >= 0]
    fold_of = dict(zip(held.id, held.fold.astype(int)))
    stray = sorted(set(keys) - set(fold_of))
    if stray:
        raise DataError(f"{rw.folds_csv}: {len(stray)} video(s) with out-of-fold predictions are held out in no fold, "
                        f"e.g. {stray[:5]}; were the folds remade after training?")
    unpredicted = sorted(set(fold_of) - set(keys))
    if unpredicted:
        raise DataError(f"{rw.folds_csv}: no out-of-fold prediction for {len(unpredicted)} held-out video(s), "
                        f"e.g. {unpredicted[:5]}")
    return holdout_parts(fold_of, dict(zip(held.id, held.group)))


def label(fit: Fit) -> str:
    name = {"fitted": f"fitted {fit.mode.replace('_', ' ')}", "equal": "equal weights", "single": "one run, weight 1"}
    return name[fit.method] + (" + rescale" if fit.rescale is not None else "")


@dataclass
class Procedure:
    """One blend made as solution.ensemble makes it, and its honest estimate."""
    blend: dict        # the saved form (blend.json), without the test predictions
    oof: dict          # {key: the procedure's prediction made without the key's part}
    fits: list         # every way, fit on every part, with its own honest estimate
    chosen: Fit        # the way used on the test set
    nested: Nested     # the way each part got from the procedure run without it
    singles: dict      # {run: its score alone, as trained}
    score: dict        # the score of `oof`: the whole procedure's honest estimate


def blend_procedure(track: Track, oof_by_run: dict, targets: dict, part_of: dict, fps_of: dict | None = None,
                    ways: str = "fitted", rescale: bool = True) -> Procedure:
    """Choose the way (and on frame-level tracks the smoothing) on the out-of-fold predictions,
    fit it on every part; and the same procedure run without each part in turn, applied to
    that part (blend.nest, blend.nested_smoothing), so its score is the honest estimate of
    everything chosen here."""
    runs = list(oof_by_run)
    stack = stack_predictions(track, oof_by_run, targets, part_of)
    parts = part_learnables(stack, track)
    fits = compare_blends(track, stack, rescale=rescale, parts=parts)
    chosen = choose(fits, ways)
    nested = nest(track, stack, fits, ways, parts)
    singles = single_scores(track, stack)
    blend = to_blend(track, runs, chosen, fits, singles, len(chosen.by_part))
    blend["scores"]["ways"] = ways
    oof, inner = nested_predictions(blend, nested, oof_by_run, part_of, track)
    scores = blend["scores"]
    scores["nested"] = {"way_by_part": {str(p): f.name for p, f in nested.way_of.items()},
                        "inner_scores": {str(p): {w: round(v, 6) for w, v in ways.items()}
                                         for p, ways in nested.inner_scores.items()}}
    # What the test set gets is chosen on the chosen way's honest blend: the smoothing width, then
    # (class tracks) the decision rule; each part's own on what the procedure without it
    # predicts for the other parts.
    if track.level == "frame" or track.kind != "regression":
        honest = {}
        for part in chosen.by_part:
            held = [k for k in targets if part_of[k] == part]
            honest.update(apply_blend(part_blend(blend, chosen, part), {r: {k: oof_by_run[r][k] for k in held} for r in runs},
                                      track.low, track.high))
    if track.level == "frame":
        by_width = smoothing_scores(track, honest, targets, fps_of)
        blend["smooth_seconds"] = best_width(by_width)
        oof, widths = nested_smoothing(track, oof, inner, targets, part_of, fps_of)
        scores["smoothing"] = {"by_sigma": {f"{w:g}": round(v, 6) for w, v in by_width.items()},
                               "by_part": {str(p): w for p, w in widths.items()}}
        honest = {k: smooth_over_time(v, blend["smooth_seconds"] * fps_of[k]) for k, v in honest.items()}
        inner = {p: {k: smooth_over_time(v, widths[p] * fps_of[k]) for k, v in preds.items()} for p, preds in inner.items()}
    if track.kind != "regression":
        before = score_predictions(track, oof, targets)["mean"]
        blend["decision"] = checked_decision(track, honest, targets, part_of)
        oof, rules = nested_decisions(track, oof, inner, targets, part_of)
        scores["decision"] = {"rule": blend["decision"], "by_part": {str(p): r for p, r in rules.items()},
                              "before": round(before, 6)}
    score = score_predictions(track, oof, targets)
    scores["nested"].update(score=round(score["mean"], 6), per_target={k: round(v, 6) for k, v in score["per_dim"].items()})
    return Procedure(blend, oof, fits, chosen, nested, {r: s["mean"] for r, s in singles.items()}, score)


def format_table(track: Track, procedure: Procedure, alone: dict | None = None) -> str:
    """The ways, their scores and the chosen weights; `alone` ({run: Procedure of that run
    alone}) adds each run as it would be submitted alone (rescale and smoothing chosen out of
    fold, as for the blend)."""
    runs, fits, chosen, blend = procedure.blend["runs"], procedure.fits, procedure.chosen, procedure.blend
    short = [t[:9] for t in track.targets]
    lines = [f"{'blend (' + track.metric + ')':<30}{'in-sample':>10}{'honest':>10}  honest per target",
             f"{'':<50}" + "".join(f"{t:>10}" for t in short)]
    for run, score in procedure.singles.items():
        per_dim = blend["scores"]["single_per_target"][run]
        lines.append(f"{run + ' alone':<30}{score:>10.4f}{score:>10.4f}" + "".join(f"{v:>10.4f}" for v in per_dim))
    for fit in fits:
        mark = " *" if fit is chosen else "  "
        lines.append(f"{label(fit) + mark:<30}{fit.in_sample['mean']:>10.4f}{fit.honest['mean']:>10.4f}"
                     + "".join(f"{v:>10.4f}" for v in fit.honest["per_dim"].values()))
    among = ("(the only way)" if chosen.method == "single" else
             {"equal": "among the equal-weight ways (--ways equal)", "fitted": "among the fitted ways",
              "all": "among every way (--ways all)"}[blend["scores"]["ways"]])
    lines.append(f"* chosen by the honest estimate {among}: {label(chosen)}")
    if track.kind != "regression":
        lines.append("  (probabilities are blended as they are; the decision rule below makes the labels)")
    elif not track.rescalable:
        lines.append(f"  ({track.metric.capitalize()} track: an affine rescale would change nothing, so none is fit)")
    lines.append(f"{'weights':<30}" + "".join(f"{t:>10}" for t in short))
    for i, run in enumerate(runs):
        lines.append(f"{run:<30}" + "".join(f"{w:>10.3f}" for w in chosen.weights[i]))
    if chosen.rescale is not None:
        lines.append(f"{'rescale: scale':<30}" + "".join(f"{a:>10.3f}" for a in chosen.rescale[0]))
        lines.append(f"{'         shift':<30}" + "".join(f"{b:>10.3f}" for b in chosen.rescale[1]))
    smoothing = blend["scores"].get("smoothing")
    if smoothing:
        lines.append("smoothing over time (Gaussian sigma, s; the chosen way's honest blend): "
                     + ", ".join(f"{w} {v:.4f}" for w, v in smoothing["by_sigma"].items())
                     + f"\n* chosen: sigma {blend['smooth_seconds']:g} s")
    decided = blend["scores"].get("decision")
    if decided:
        lines.append(f"decision rule, chosen out of fold on the chosen way's honest blend: "
                     f"{describe_decision(blend.get('decision'), track.targets)}\n"
                     f"  the whole procedure without the rule {decided['before']:.4f}; each part's rule is chosen without it")
    ways = ", ".join(f"{p}: {w}" for p, w in blend["scores"]["nested"]["way_by_part"].items())
    widths = ("; smoothing " + ", ".join(f"{p}: {w:g} s" for p, w in smoothing["by_part"].items())) if smoothing else ""
    lines.append(f"the whole procedure, honest (each part blended by what it chooses without that part: {ways}{widths}): "
                 f"{track.metric} {procedure.score['mean']:.4f}")
    for run, alone_run in (alone or {}).items():
        lines.append(f"  {run} alone as submitted alone (its rescale, smoothing and decision chosen the same way): "
                     f"{track.metric} {alone_run.score['mean']:.4f}")
    return "\n".join(lines)


def blend_runs(data, rw: ReleaseWork, runs: list[str], ways: str = "fitted", rescale: bool = True):
    """Fit, choose and apply the blend: (blend dict, its honest oof predictions, test
    predictions, table text)."""
    if len(set(runs)) != len(runs):
        raise DataError(f"a run is named twice in {runs}")
    track = rw.track
    oof_by_run, test_by_run = load_runs(rw, runs)
    keys = sorted(oof_by_run[runs[0]])
    part_of = holdout_of(rw, keys)
    release = open_release(track, data)
    targets = {k: release.video_targets(k) for k in keys}
    fps_of = None
    if track.level == "frame":
        fps_of = {k: release.video_fps(k) for k in sorted(set(keys) | set(test_by_run[runs[0]]))}
    procedure = blend_procedure(track, oof_by_run, targets, part_of, fps_of, ways, rescale)
    # Frame-level runs alone get their rescale and smoothing chosen as the blend's are, so a
    # run and the blend are compared as each would be submitted.
    alone = ({run: blend_procedure(track, {run: oof_by_run[run]}, targets, part_of, fps_of, rescale=rescale)
              for run in runs} if track.level == "frame" and len(runs) > 1 else None)
    blend = procedure.blend
    if alone:
        blend["scores"]["alone_nested"] = {run: round(p.score["mean"], 6) for run, p in alone.items()}
    test = apply_blend(blend, test_by_run, track.low, track.high, fps_of)
    return blend, procedure.oof, test, format_table(track, procedure, alone)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.ensemble", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release the runs were trained on")
    parser.add_argument("--work", type=Path, required=True, help="the work folder given to train_fold")
    parser.add_argument("--runs", required=True, help="comma list of run names (models) to blend")
    parser.add_argument("--ways", choices=WAYS, default="fitted",
                        help="the ways the blend is chosen among: fitted weights (default), equal weights, or all of them")
    parser.add_argument("--equal", action="store_true", help="blend with equal weights instead of fitted ones (--ways equal)")
    parser.add_argument("--no-rescale", action="store_true",
                        help="CCC tracks: never rescale the blend (by default the honest estimate decides)")
    parser.add_argument("--out", type=Path, help="output folder (default: WORK/<track>-<fingerprint>/predictions)")
    parser.add_argument("--zip", metavar="NAME", help="also write and validate the submission zip NAME.zip")
    parser.add_argument("--zip-dir", type=Path, default=submission.DEFAULT_OUT_DIR,
                        help="where --zip writes (default: submissions/ in the repository)")
    add_test_listing_option(parser)
    args = parser.parse_args(argv)
    try:
        rw = release_work(args.work, args.data)
        runs = [r for r in args.runs.split(",") if r]
        if not runs:
            raise DataError("--runs names no run")
        blend, oof, test, table = blend_runs(args.data, rw, runs, "equal" if args.equal else args.ways,
                                             not args.no_rescale)
        out = args.out or rw.predictions
        write_blend(out / "blend.json", blend)
        write_predictions(out / prediction_filename(rw.track, "oof"), rw.track, oof)
        write_predictions(out / prediction_filename(rw.track, "test"), rw.track, test)
        print(table)
        print(f"[ensemble] {','.join(runs)}: wrote {out / 'blend.json'}, {out / prediction_filename(rw.track, 'oof')} "
              f"({len(oof)} videos, out of fold) and {out / prediction_filename(rw.track, 'test')} ({len(test)} videos)")
        if args.zip:
            path = submission.make_submission(rw.track.name, out / prediction_filename(rw.track, "test"), args.data,
                                          args.zip_dir, args.zip)
            print(f"[ensemble] wrote {path} (validated against the test listing of {args.data})")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
