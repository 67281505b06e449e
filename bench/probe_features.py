"""How much each cached feature set knows: a linear probe on held-out subjects.

    python bench/probe_features.py [--data work/demo-emi] [--work work]

For each EMI extractor in the cache, pooled statistics (mean, max, std over frames; zeros
and a flag when the modality is missing) feed a ridge regressor, scored by mean Pearson in
5 folds grouped by subject (the synthetic metadata's subject ids), at the best of a few
ridge strengths. Prints one row per extractor and one for all of them together.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from solution import cache  # noqa: E402
from solution.layouts import EmiRelease, emi_key  # noqa: E402
from solution.metrics import pearson_per_dim  # noqa: E402
from solution.tracks import EMI_TARGETS  # noqa: E402


def pooled(folder: Path, vid: str, dim: int) -> np.ndarray:
    entry = cache.read_entry(folder, vid, dim)
    if entry.missing or not len(entry.features):
        return np.zeros(3 * dim + 1)
    f = entry.features
    return np.concatenate([f.mean(0), f.max(0), f.std(0), [1.0]])


def probe(X, y, groups) -> tuple[float, float]:
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    best = (-1.0, 0.0)
    for alpha in (10, 100, 1000, 10000):
        oof = np.zeros_like(y)
        for train, held in GroupKFold(5).split(X, y, groups):
            oof[held] = Ridge(alpha=alpha).fit(X[train], y[train]).predict(X[held])
        best = max(best, (float(pearson_per_dim(oof, y).mean()), alpha))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("work/demo-emi"))
    parser.add_argument("--work", type=Path, default=Path("work"))
    args = parser.parse_args()
    release = EmiRelease(args.data)
    labels = release.labelled()
    meta = release.metadata()
    if meta is None:
        sys.exit(f"{args.data}: no metadata.csv with subject ids (made by solution.synth)")
    groups = meta.loc[labels.index, "subject"].to_numpy()
    y = labels[list(EMI_TARGETS)].to_numpy()
    blocks = {}
    for folder in sorted(p for p in cache.features_root(args.work).iterdir() if (p / "manifest.json").is_file()):
        manifest = cache.read_manifest(folder)
        blocks[manifest["extractor"]] = np.stack([pooled(folder, emi_key(v), manifest["dim"]) for v in labels.index])
    print(f"{len(labels)} labelled videos, 5 subject-grouped folds; ceiling {args.data / 'ceiling.json'}")
    print(f"{'features':<22}{'mean Pearson':>14}{'ridge alpha':>13}")
    for name, X in list(blocks.items()) + [("all", np.hstack(list(blocks.values())))]:
        score, alpha = probe(X, y, groups)
        print(f"{name:<22}{score:>14.3f}{alpha:>13g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
