"""python -m solution.folds: the one fold assignment every model of a release shares.

    python -m solution.folds --data DIR --work WORK [--k 5] [--scheme grouped|official] [--groups FILE.csv]

`grouped` (default): K folds over train+valid merged. Videos of one group stay in one fold.
Groups are, in order: the `--groups` file (`Filename,group` for EMI ids, `video,group` for
VA videos: e.g. speakers you know), the subjects the release names (the synthetic
metadata.csv), else one group per video (EMI; the real release names no subjects) or per
recording (VA: a video's `_left`/`_right` annotations share one). Groups are dealt to folds
in a snake order of their mean label, so every fold sees the same spread of labels, and
fold sizes (videos, or annotated frames for VA) are balanced. `official`: one fold, trained
on the train split and validated on the valid split.

VA: a video with no annotated frame (every line -5,-5) is left out of the folds, and so of
training, with a note naming it (as is one whose annotation does not fit its video, with
VA_ANNOTATION_FIT=drop); folds.json lists them under `left_out`, and the annotations
fitted to their video (VA_ANNOTATION_FIT=fit) under `fitted`. No fold is left with fewer
than 2 annotated frames to score, or to train on: that is an error naming the fold and its
videos (fewer folds, --k, is the way out).

Writes WORK/<track>-<fingerprint>/folds.csv (id, split, group, fold) and folds.json
(scheme, k, seed, grouping, and a fingerprint of the labelled videos, checked by every
training run). Another release in the same WORK gets its own folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.config import apply_stage_config
from solution.errors import DataError
from solution.listing import add_test_listing_option, export_listing
from solution.readers import read_csv
from solution.runs import fingerprint, release_work, write_folds
from solution.tracks import detect_track, open_release


def assign_folds(groups: pd.Series, intensity: pd.Series, sizes: pd.Series, k: int, seed: int) -> pd.Series:
    """Group -> fold, balanced on label intensity and on size: groups sorted by mean
    intensity are taken k at a time, and within each block the largest group goes to the
    fold that holds the least so far."""
    per_group = intensity.groupby(groups).mean()
    group_size = sizes.groupby(groups).sum()
    rng = np.random.default_rng(seed)
    # Shuffle first so ties break differently per seed.
    order = per_group.index[rng.permutation(len(per_group))]
    order = per_group.loc[order].sort_values(kind="stable").index
    counts = np.zeros(k)
    fold_of_group = {}
    for start in range(0, len(order), k):
        block = sorted(order[start:start + k], key=lambda g: -group_size[g])
        for group, fold in zip(block, np.argsort(counts, kind="stable")):
            fold_of_group[group] = int(fold)
            counts[fold] += group_size[group]
    return groups.map(fold_of_group)


def read_groups(path: Path, release, keys) -> dict[str, str]:
    """A user's grouping file -> {video key: group}; every labelled video must have one."""
    frame = read_csv(Path(path), "groups")
    id_column = release.key_column
    if id_column not in frame.columns or "group" not in frame.columns:
        raise DataError(f"{path}: groups file needs columns {id_column},group; found {list(frame.columns)}")
    ids = frame[id_column].map(release.key_of)
    if ids.isna().any():
        line = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 2
        raise DataError(f"{path}: line {line}: {frame[id_column].iloc[line - 2]!r} is not a video id")
    frame[id_column] = ids.tolist()
    duplicated = frame[id_column][frame[id_column].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: video(s) {duplicated.tolist()[:5]} listed twice")
    if (frame["group"].str.strip() == "").any():
        raise DataError(f"{path}: empty group on line {int(np.flatnonzero(frame['group'].str.strip() == '')[0]) + 2}")
    table = dict(zip(frame[id_column], frame["group"].str.strip()))
    missing = [k for k in keys if k not in table]
    if missing:
        raise DataError(f"{path}: no group for {len(missing)} labelled video(s), e.g. {missing[:5]}")
    return {k: table[k] for k in keys}


def make_folds(data, k: int = 5, scheme: str = "grouped", seed: int = 0, groups_file: Path | None = None,
               track=None) -> tuple[pd.DataFrame, dict]:
    release = open_release(track or detect_track(data), data)
    track = release.track
    split_of = release.labelled_keys()
    keys = sorted(split_of)
    left_out = release.left_out()
    if not keys:
        raise DataError(f"{data}: no labelled video to make folds of"
                        + (f" ({len(left_out)} left out: {'; '.join(list(left_out.values())[:3])})" if left_out else ""))
    if groups_file is not None:
        group_of, grouping = read_groups(groups_file, release, keys), f"file {Path(groups_file).name}"
    elif (subjects := release.subjects()) is not None:
        missing = [k for k in keys if k not in subjects]
        if missing:
            raise DataError(f"{release.root / 'metadata.csv'}: no subject for video(s) {missing[:5]}")
        group_of, grouping = {k: subjects[k] for k in keys}, "subject"
    else:  # each video its own group, or as the release groups them (Aff-Wild2: a recording's _left/_right)
        group_of, grouping = {k: release.group_of(k) for k in keys}, release.grouping
    groups = pd.Series(group_of).loc[keys]
    if scheme == "official":
        folds = pd.Series({key: 0 if split_of[key] == "valid" else -1 for key in keys})
        k = 1
    else:
        if groups.nunique() < k:
            raise DataError(f"{data}: only {groups.nunique()} group(s) ({grouping}) for {k} folds")
        intensity, sizes = {}, {}
        for key in keys:
            target = release.video_targets(key)
            if target.ndim == 2:
                target = target[track.annotated(target)]
                sizes[key] = len(target)
                intensity[key] = float(target.mean()) if len(target) else 0.0
            else:
                sizes[key], intensity[key] = 1, float(target.mean())
        folds = assign_folds(groups, pd.Series(intensity).loc[keys], pd.Series(sizes).loc[keys], k, seed)
    table = pd.DataFrame({"id": keys, "split": [split_of[key] for key in keys], "group": groups.to_numpy(),
                          "fold": folds.loc[keys].to_numpy()})
    if track.level == "frame":  # the grouped scheme's sizes are the annotated frames already
        check_fold_frames(table, sizes if scheme != "official" else
                          {key: int(track.annotated(release.video_targets(key)).sum()) for key in keys}, k,
                          "the official scheme scores the valid split" if scheme == "official" else "use fewer folds (--k)")
    info = {"track": track.name, "scheme": scheme, "k": k, "seed": seed, "grouping": grouping,
            "fingerprint": fingerprint(table["id"]), "videos": len(table)}
    if left_out:  # recorded only when there are some, so fold files made before still match
        info["left_out"] = dict(sorted(left_out.items()))
    fitted = release.fitted()
    if fitted:  # likewise: annotations fitted to their video (VA_ANNOTATION_FIT=fit)
        info["fitted"] = dict(sorted(fitted.items()))
    return table, info


def check_fold_frames(table: pd.DataFrame, frames: dict[str, int], k: int, hint: str) -> None:
    """Frame-level tracks: every fold holds at least 2 annotated frames to score, and leaves at
    least 2 to train on; else a DataError naming the fold, its videos and their frames."""
    def named(keys) -> str:
        keys = list(keys)
        shown = ", ".join(f"{k} ({frames[k]})" for k in keys[:8])
        return shown + (f" and {len(keys) - 8} more" if len(keys) > 8 else "") if keys else "no video"

    for fold in range(k):
        held, rest = table.id[table.fold == fold], table.id[table.fold != fold]
        n_held, n_rest = sum(frames[k] for k in held), sum(frames[k] for k in rest)
        if n_held < 2:
            raise DataError(f"fold {fold} would hold {n_held} annotated frame(s) to score, in {len(held)} video(s) "
                            f"(annotated frames in brackets): {named(held)}; a correlation needs at least 2; {hint}")
        if n_rest < 2:
            raise DataError(f"fold {fold} would leave {n_rest} annotated frame(s) to train on, in {len(rest)} "
                            f"video(s): {named(rest)}; training needs at least 2; {hint}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.folds", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True, help="the release folder")
    parser.add_argument("--work", type=Path, required=True, help="work folder; the folds go to WORK/<track>-<fingerprint>/")
    parser.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--scheme", choices=["grouped", "official"], default="grouped",
                        help="grouped K folds over train+valid (default), or the official train/valid split as one fold")
    parser.add_argument("--groups", type=Path, help="CSV Filename,group (VA: video,group): keep each group in one fold")
    parser.add_argument("--seed", type=int, default=0, help="breaks ties in the fold assignment (default 0)")
    parser.add_argument("--config", type=Path, help="TOML file; its [folds] table gives defaults for these options")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing fold file with other settings")
    add_test_listing_option(parser)
    args = apply_stage_config(parser, argv, "folds")
    export_listing(args)
    try:
        if args.k < 1:
            raise DataError(f"--k must be at least 1, got {args.k}")
        table, info = make_folds(args.data, args.k, args.scheme, args.seed, args.groups)
        rw = release_work(args.work, args.data, info["track"])
        if rw.folds_json.is_file() and not args.overwrite:
            old = fileio.read_json(rw.folds_json, "fold file", "run python -m solution.folds again with --overwrite")
            if {k: old.get(k) for k in info} == info:
                print(f"[folds] {rw.folds_csv} is up to date")
                return 0
            changed = sorted(k for k in info if old.get(k) != info[k])
            raise DataError(f"{rw.folds_json} exists with other settings ({', '.join(f'{k}: {old.get(k)} -> {info[k]}' for k in changed)}); "
                            "pass --overwrite (runs trained on the old folds will refuse to be reused)")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_folds(rw, table, info)
    held = table[table.fold >= 0].groupby("fold")
    print(f"[folds] {info['scheme']} scheme, {info['k']} fold(s) grouped by {info['grouping']} -> {rw.folds_csv}: "
          + ", ".join(f"fold {f}: {len(g)} videos" for f, g in held))
    return 0


if __name__ == "__main__":
    sys.exit(main())
