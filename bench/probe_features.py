"""How much each cached feature set knows: a linear probe on held-out subjects.

    python bench/probe_features.py [--data work/demo-emi] [--work work]

For each EMI feature stream in the cache that covers this release's labelled videos (entries
found by the identity of each video's source files, see solution/cache.py; streams extracted
for another release are skipped), pooled statistics (mean, max, std over frames; zeros and a
flag when the modality is missing) feed a ridge regressor, scored by mean Pearson in 5 folds
grouped by subject (the synthetic metadata's subject ids; one group per video when the
release names no subjects), at the best of a few ridge strengths. Prints one row per stream
and one for all of them together.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, missing_data  # noqa: E402

sys.path.insert(0, str(ROOT))

from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from solution import cache  # noqa: E402
from solution.layouts import EmiRelease, VideoSources, emi_key, release_videos  # noqa: E402
from solution.metrics import pearson_per_dim  # noqa: E402
from solution.tracks import EMI_TARGETS  # noqa: E402


def pooled(folder: Path, src: VideoSources, key: str, dim: int) -> np.ndarray | None:
    """Mean, max and std over frames and a present flag; zeros for a missing modality; None
    when the stream has no entry for this video's current source files (source key `key`)."""
    if cache.status(folder, src.vid, key) is None:
        return None
    entry = cache.read_entry(folder, src.vid, key, dim)
    if not entry.has_rows:
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


def main(argv=None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "demo-emi",
                        help="the EMI release (default work/demo-emi, the demo run_all.sh makes)")
    parser.add_argument("--work", type=Path, default=ROOT / "work",
                        help="the work folder whose features/ cache was extracted from --data (default work)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(missing_data(args.data, "emi"))
    root = cache.features_root(args.work)
    if not root.is_dir():
        sys.exit(f"{root}: no features cache; run python -m solution.features --data {args.data} --work {args.work}")
    release = EmiRelease(args.data)
    labels = release.labelled()
    sources = {s.vid: s for s in release_videos("emi", args.data)}
    labelled = [sources[emi_key(v)] for v in labels.index]
    meta = release.metadata()
    if meta is not None and "subject" in meta.columns:
        groups, grouping = meta.loc[labels.index, "subject"].to_numpy(), "subject"
    else:
        groups, grouping = labels.index.to_numpy(), "video"
    y = labels[list(EMI_TARGETS)].to_numpy()
    blocks = {}
    for folder in sorted(p for p in root.iterdir() if (p / "spec.json").is_file() and (p / "manifest.json").is_file()):
        stream = json.loads((folder / "spec.json").read_text())
        dim = cache.read_manifest(folder).get("dim")
        if not dim:
            print(f"skipped {folder.name}: no feature width in its manifest (no entry with frames)")
            continue
        keys = [cache.stream_source_key(stream, src) for src in labelled]
        if not any(cache.status(folder, src.vid, key) == "ok" for src, key in zip(labelled, keys)):
            continue  # a stream of another release (or only failures: the input, e.g. transcripts, is absent here)
        rows = [pooled(folder, src, key, dim) for src, key in zip(labelled, keys)]
        absent = sum(r is None for r in rows)
        if absent:
            print(f"{stream['extractor']}: no entry for {absent} of {len(rows)} videos (run solution.features again); "
                  "read as missing")
        name = stream["extractor"] if stream["extractor"] not in blocks else folder.name
        blocks[name] = np.stack([np.zeros(3 * dim + 1) if r is None else r for r in rows])
    if not blocks:
        sys.exit(f"{root}: no cached stream covers {args.data}; run python -m solution.features "
                 f"--data {args.data} --work {args.work}")
    ceiling = args.data / "ceiling.json"
    print(f"{len(labels)} labelled videos, 5 folds grouped by {grouping}"
          + (f"; ceiling {ceiling}" if ceiling.is_file() else ""))
    print(f"{'features':<22}{'mean Pearson':>14}{'ridge alpha':>13}")
    for name, X in list(blocks.items()) + [("all", np.hstack(list(blocks.values())))]:
        score, alpha = probe(X, y, groups)
        print(f"{name:<22}{score:>14.3f}{alpha:>13g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
