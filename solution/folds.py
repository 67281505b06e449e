"""python -m solution.folds: the one fold assignment every model of a dataset shares.

    python -m solution.folds --data DIR --work WORK [--k 5] [--scheme grouped|official] [--seed 0]

`grouped` (default): K folds over train+valid merged. Videos of one subject stay in one
fold when the release says who the subjects are (metadata.csv's `subject`, as the
synthetic release writes; a real release without it gets one group per video, which the
file records). Groups are dealt to folds in a snake order of their mean label intensity,
so every fold sees the same spread of labels. `official`: one fold, trained on the train
split and validated on the valid split.

Writes WORK/folds.csv (id, split, group, fold) and WORK/folds.json (scheme, k, seed and a
fingerprint of the dataset's labelled ids, checked by every training run).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from solution import fileio
from solution.layouts import DataError, EmiRelease, emi_key
from solution.tracks import EMI_TARGETS


def fingerprint(ids) -> str:
    return hashlib.sha256(",".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def assign_folds(groups: pd.Series, intensity: pd.Series, k: int, seed: int) -> pd.Series:
    """Group -> fold, balanced on label intensity and on size: groups sorted by mean
    intensity are taken k at a time, and within each block the largest group goes to the
    fold that holds the fewest videos so far."""
    per_group = intensity.groupby(groups).mean()
    sizes = groups.value_counts()
    rng = np.random.default_rng(seed)
    # Shuffle first so ties break differently per seed.
    order = per_group.index[rng.permutation(len(per_group))]
    order = per_group.loc[order].sort_values(kind="stable").index
    counts = np.zeros(k, int)
    fold_of_group = {}
    for start in range(0, len(order), k):
        block = sorted(order[start:start + k], key=lambda g: -sizes[g])
        for group, fold in zip(block, np.argsort(counts, kind="stable")):
            fold_of_group[group] = int(fold)
            counts[fold] += sizes[group]
    return groups.map(fold_of_group)


def make_folds(data, k: int = 5, scheme: str = "grouped", seed: int = 0) -> tuple[pd.DataFrame, dict]:
    release = EmiRelease(data)
    labels = release.labelled()
    meta = release.metadata()
    if meta is not None and "subject" in meta.columns:
        missing = labels.index.difference(meta.index)
        if len(missing):
            raise DataError(f"{release.root / 'metadata.csv'}: no subject for video(s) {missing[:5].tolist()}")
        groups, grouping = meta.loc[labels.index, "subject"].astype(str), "subject"
    else:
        groups, grouping = pd.Series([emi_key(v) for v in labels.index], index=labels.index), "video"
    if scheme == "official":
        folds = (labels["split"] == "valid").astype(int).replace({1: 0, 0: -1})
        k = 1
    else:
        if groups.nunique() < k:
            raise DataError(f"{data}: only {groups.nunique()} {grouping} group(s) for {k} folds")
        folds = assign_folds(groups, labels[list(EMI_TARGETS)].mean(axis=1), k, seed)
    table = pd.DataFrame({"id": [emi_key(v) for v in labels.index], "split": labels["split"].to_numpy(),
                          "group": groups.to_numpy(), "fold": folds.to_numpy()})
    info = {"track": "emi", "scheme": scheme, "k": k, "seed": seed, "grouping": grouping,
            "fingerprint": fingerprint(table["id"]), "videos": len(table)}
    return table, info


def write_folds(work, table: pd.DataFrame, info: dict) -> None:
    fileio.write_csv(Path(work) / "folds.csv", table)
    fileio.write_json(Path(work) / "folds.json", info)


def read_folds(work, data=None) -> tuple[pd.DataFrame, dict]:
    """The fold file, checked against the dataset in `data` when given."""
    work = Path(work)
    path, info_path = work / "folds.csv", work / "folds.json"
    if not path.is_file() or not info_path.is_file():
        raise DataError(f"{work}: no fold file (folds.csv/folds.json); run python -m solution.folds "
                        f"--data DATA --work {work}")
    table = pd.read_csv(path, dtype={"id": str, "group": str})
    info = json.loads(info_path.read_text())
    if fingerprint(table["id"]) != info.get("fingerprint"):
        raise DataError(f"{path}: does not match its folds.json (edited by hand?); make the folds again")
    if data is not None:
        current = [emi_key(v) for v in EmiRelease(data).labelled().index]
        if fingerprint(current) != info["fingerprint"]:
            raise DataError(f"{path} was made for another dataset ({info['videos']} videos) than {data} "
                            f"({len(current)} labelled videos); make the folds again with --overwrite")
    return table, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solution.folds", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--scheme", choices=["grouped", "official"], default="grouped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing fold file")
    args = parser.parse_args(argv)
    try:
        table, info = make_folds(args.data, args.k, args.scheme, args.seed)
        if (args.work / "folds.json").is_file() and not args.overwrite:
            old = json.loads((args.work / "folds.json").read_text())
            if {k: old.get(k) for k in info} == info:
                print(f"[folds] {args.work / 'folds.csv'} is up to date")
                return 0
            raise DataError(f"{args.work / 'folds.json'} exists with other settings or data ({old}); "
                            "pass --overwrite (models trained on the old folds can no longer be blended)")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_folds(args.work, table, info)
    held = table[table.fold >= 0].groupby("fold")
    print(f"[folds] {info['scheme']} scheme, {info['k']} fold(s) grouped by {info['grouping']}: "
          + ", ".join(f"fold {f}: {len(g)} videos" for f, g in held))
    return 0


if __name__ == "__main__":
    sys.exit(main())
