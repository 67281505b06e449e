"""The report's PNG plots, one function per plot; each takes plain data and the path to write.

Headless (the Agg backend): run_all.sh runs on machines without a display. Every file is
written atomically. Missing values (NaN scores, a run without fusion weights) leave a gap
in the plot rather than failing it, so one odd run never costs the report its figures.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from solution import fileio  # noqa: E402

DPI = 100
COLOURS = plt.get_cmap("tab10").colors


def colour(i: int):
    return COLOURS[i % len(COLOURS)]


def palette(names) -> dict:
    """{name: colour}: the report passes one palette to every figure, so a run keeps its
    colour across plots."""
    return {name: colour(i) for i, name in enumerate(dict.fromkeys(names))}


def save(fig, path, top: float = 1.0) -> None:
    """`top`: the share of the height the panels may fill, the rest kept for a figure legend."""
    fig.tight_layout(rect=(0, 0, 1, top))
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def grid(panels: int, columns: int, width: float = 4.0, height: float = 3.2):
    """A figure with at least `panels` axes, `columns` wide; the unused ones hidden."""
    columns = max(1, min(columns, panels))
    rows = max(1, math.ceil(panels / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def fmt(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def pred_vs_true(path, truth: np.ndarray, pred: np.ndarray, targets, scores: dict, metric: str,
                 low: float, high: float, title: str) -> None:
    """One scatter per target: predicted against true, with the identity line. `scores`
    ({target: value}) are computed on every row, so a subsample plotted scores the same."""
    fig, axes = grid(len(targets), 3, width=3.6, height=3.6)
    # Many points (VA frames) overplot: fainter dots keep the density visible.
    alpha = float(np.clip(300.0 / max(len(truth), 1), 0.05, 0.8))
    for j, (ax, target) in enumerate(zip(axes, targets)):
        ax.scatter(truth[:, j], pred[:, j], s=6, alpha=alpha, color=colour(0), edgecolors="none", rasterized=True)
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(f"{target}: {metric} {fmt(scores.get(target))}", fontsize=10)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    fig.suptitle(title, fontsize=11)
    save(fig, path)


def fold_scores(path, folds: dict, oof: dict, metric: str, ceiling: float | None = None,
                colours: dict | None = None) -> None:
    """Per run: a dot per fold's held-out score and a bar at the pooled out-of-fold score."""
    runs = list(folds)
    colours = colours or palette(runs)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(runs) + 2), 3.8))
    for i, run in enumerate(runs):
        scores = np.asarray(folds[run], dtype=float)
        offsets = np.linspace(-0.2, 0.2, len(scores)) if len(scores) > 1 else np.zeros(1)
        ax.scatter(i + offsets, scores, color=colours[run], s=28, zorder=3, label="fold" if i == 0 else None)
        for x, value, fold in zip(i + offsets, scores, range(len(scores))):
            if np.isfinite(value):
                ax.annotate(str(fold), (x, value), xytext=(3, 2), textcoords="offset points", fontsize=7, color="dimgrey")
        value = oof.get(run)
        if value is not None and np.isfinite(value):
            ax.hlines(value, i - 0.32, i + 0.32, color="black", lw=2, zorder=4, label="out-of-fold" if i == 0 else None)
    if ceiling is not None and np.isfinite(ceiling):
        ax.axhline(ceiling, color="grey", ls="--", lw=1, label=f"ceiling {ceiling:.3f}")
    ax.set_xticks(range(len(runs)), runs, rotation=20 if len(runs) > 4 else 0)
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title("each fold (numbered dots), pooled out-of-fold (bar)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save(fig, path)


def training_curves(path, logs: dict, metric: str, colours: dict | None = None) -> None:
    """Rows: runs. Columns: the train loss of each phase (losses of different phases are on
    different scales), then the inner score of the phases that choose the epoch. `logs` is
    {run: [log table with phase, epoch, train_loss, inner_score]}, one per fold and seed."""
    colours = colours or palette(logs)
    phases = {run: list(dict.fromkeys(p for log in entries for p in log["phase"])) for run, entries in logs.items()}
    columns = max(len(p) for p in phases.values()) + 1
    fig, axes = plt.subplots(len(logs), columns, figsize=(3.6 * columns, 2.8 * len(logs)), squeeze=False)
    for r, (run, entries) in enumerate(logs.items()):
        inner_ax, scored = axes[r, len(phases[run])], []
        for log in entries:
            for c, phase in enumerate(phases[run]):
                rows = log[log["phase"] == phase]
                # A phase of an epoch or two is a dot or two, not an invisible line.
                style = dict(lw=0.8, alpha=0.7, color=colours[run], marker="o" if len(rows) <= 3 else None, ms=3)
                axes[r, c].plot(rows["epoch"], rows["train_loss"], **style)
                inner = floats(rows["inner_score"])
                if np.isfinite(inner).any():
                    scored.append(phase)
                    inner_ax.plot(rows["epoch"], inner, **style)
        for c, phase in enumerate(phases[run]):
            axes[r, c].set_title(f"{run}: {phase} train loss", fontsize=9)
        inner_ax.set_title(f"{run}: inner {metric} ({', '.join(dict.fromkeys(scored)) or 'none logged'})", fontsize=9)
        last = {phase: max(log.loc[log["phase"] == phase, "epoch"].max() for log in entries if (log["phase"] == phase).any())
                for phase in phases[run]}
        for c, ax in enumerate(axes[r]):
            ax.set_visible(c <= len(phases[run]))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            if c < len(phases[run]):
                ax.set_xlim(0.5, last[phases[run][c]] + 0.5)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    fig.suptitle("training curves, one thin line per fold and seed", fontsize=11)
    save(fig, path)


def floats(column) -> np.ndarray:
    """A log column as floats; an empty cell (no inner score that epoch) is NaN."""
    return np.asarray(column, dtype=float)


def blend_weights(path, weights: dict, targets, mode: str, colours: dict | None = None) -> None:
    """The blend's weight of each run: one bar each when shared, grouped by target otherwise."""
    runs = list(weights)
    colours = colours or palette(runs)
    matrix = np.array([weights[run] for run in runs], dtype=float)  # (runs, targets)
    if mode != "per_target" or matrix.shape[1] == 1:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(runs) + 2), 3.4))
        bars = ax.bar(range(len(runs)), matrix[:, 0], color=[colours[run] for run in runs])
        ax.set_xticks(range(len(runs)), runs)
        ax.set_title("blend weights (shared by every target)", fontsize=10)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(targets) * len(runs) + 3), 3.6))
        width = 0.8 / len(runs)
        x = np.arange(len(targets))
        for i, run in enumerate(runs):
            bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, matrix[i], width, color=colours[run], label=run)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, targets, rotation=20 if len(targets) > 3 else 0)
        ax.legend(fontsize=8)
        ax.set_title("blend weights per target", fontsize=10)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("weight")
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def score_by_condition(path, scores: dict, videos: dict, metric: str, colours: dict | None = None) -> None:
    """One panel per corruption flag (face, audio, transcript): each run's out-of-fold score
    on the videos of each value of that flag, "ok" (clean) first, so what a corruption costs
    each run, and what the quality-guided fusion saves, reads off side by side.
    `scores` is {run: {"flag=value": score}}; `videos` {"flag=value": videos}, every
    condition the release has, scored or not (too few videos leave a gap)."""
    flags: dict[str, list] = {}
    for condition in videos:
        flag, value = condition.split("=", 1)
        flags.setdefault(flag, []).append(value)
    for values in flags.values():
        values.sort(key=lambda v: (v != "ok", v))
    runs = list(scores)
    colours = colours or palette(runs)
    widest = max(len(v) for v in flags.values())
    fig, axes = grid(len(flags), 3, width=max(3.2, 0.28 * len(runs) * widest + 1.4), height=3.4)
    width = 0.8 / max(len(runs), 1)
    for ax, (flag, values) in zip(axes, flags.items()):
        x = np.arange(len(values))
        for i, run in enumerate(runs):
            heights = [scores[run].get(f"{flag}={v}", np.nan) for v in values]
            ax.bar(x + (i - (len(runs) - 1) / 2) * width, heights, width, color=colours[run], label=run)
        ax.set_xticks(x, [f"{v}\n({videos[f'{flag}={v}']} videos)" for v in values], fontsize=8)
        ax.set_title(f"by {flag}", fontsize=10)
        ax.set_ylabel(f"out-of-fold {metric}")
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncols=min(len(runs), 6))
    fig.suptitle("score by condition (ok = clean; no bar: too few videos to score)", fontsize=11, x=0.02,
                 ha="left")
    save(fig, path, top=0.9)


def fusion_by_condition(path, tables: dict) -> None:
    """Per run with fusion weights: the mean weight of each modality per condition, stacked
    (they sum to one), so a modality's weight falling where it is corrupted is visible.
    `tables` is {run: [{"condition": ..., "videos": n, "w_<modality>": mean weight}]}."""
    fig, axes = grid(len(tables), 2, width=5.5, height=0.4 * max(len(t) for t in tables.values()) + 1.6)
    for ax, (run, rows) in zip(axes, tables.items()):
        modalities = [c for c in rows[0] if c.startswith("w_")]
        labels = [f"{row['condition']} ({row['videos']})" for row in rows]
        left = np.zeros(len(rows))
        for m, modality in enumerate(modalities):
            values = np.nan_to_num(np.array([row.get(modality, np.nan) for row in rows], dtype=float))
            ax.barh(range(len(rows)), values, left=left, color=colour(m + 5), label=modality[2:])
            left += values
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("mean fusion weight (videos)")
        ax.set_title(run, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=len(modalities))
    fig.suptitle("fusion weights by condition (out-of-fold videos)", fontsize=11)
    save(fig, path)


def va_timeseries(path, videos: list, targets, metric: str, time_label: str, title: str) -> None:
    """Rows: videos; columns: targets; the true and predicted values over time. `videos` is
    a list of (name, time (frames,), truth (frames, targets) with NaN where unannotated,
    prediction (frames, targets), {target: score})."""
    fig, axes = plt.subplots(len(videos), len(targets), figsize=(6.0 * len(targets), 2.4 * len(videos)),
                             squeeze=False)
    for r, (name, time, truth, pred, scores) in enumerate(videos):
        for c, target in enumerate(targets):
            ax = axes[r, c]
            ax.plot(time, truth[:, c], color="black", lw=1.0, label="true")
            ax.plot(time, pred[:, c], color=colour(c), lw=1.0, label="predicted")
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{name}: {target}, {metric} {fmt(scores.get(target))}", fontsize=9)
            ax.grid(alpha=0.3)
            if r == len(videos) - 1:
                ax.set_xlabel(time_label)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=11)
    save(fig, path)


def confusion(path, truth: np.ndarray, guess: np.ndarray, classes, title: str) -> None:
    """A multi-class track's confusion matrix: rows the true class, each row's shares (and
    counts) of the predicted classes; the diagonal is each class's recall."""
    k = len(classes)
    counts = np.bincount(np.asarray(truth) * k + np.asarray(guess), minlength=k * k).reshape(k, k)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * k + 2.5, 0.9 * k + 1.8))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{shares[i, j]:.2f}\n{counts[i, j]}", ha="center", verticalalignment="center", fontsize=7,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [f"{c} ({n})" for c, n in zip(classes, counts.sum(1))], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (frames)")
    ax.set_title(title, fontsize=10)
    save(fig, path)


def class_scores(path, per_class: dict, classes, metric: str, colours: dict | None = None) -> None:
    """Per class (or unit): each run's F1 as a bar, runs side by side."""
    runs = list(per_class)
    colours = colours or palette(runs)
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(classes) * max(1, len(runs)) / 2), 3.6))
    for i, run in enumerate(runs):
        values = [per_class[run].get(c, np.nan) for c in classes]
        ax.bar(np.arange(len(classes)) + (i - (len(runs) - 1) / 2) * width, values, width, label=run,
               color=colours.get(run, colour(i)))
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"out-of-fold F1 per {'class' if metric == 'macro_f1' else 'unit'} ({metric} is their mean)",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(runs), 5))
    save(fig, path)


def class_timeseries(path, videos: list, classes, multilabel: bool, time_label: str, title: str) -> None:
    """A row per video: the true and the predicted label over time (multi-class: the class
    index; multi-label: a strip per unit, true above predicted). `videos` as va_timeseries'
    (name, time, truth with NaN rows where unannotated, prediction, {class: score})."""
    fig, axes = plt.subplots(len(videos), 1, figsize=(11.0, (3.4 if multilabel else 2.4) * len(videos)), squeeze=False)
    for ax, (name, time, truth, pred, scores) in zip(axes[:, 0], videos):
        if multilabel:
            strips = np.full((2 * len(classes), len(time)), np.nan)
            strips[0::2] = truth.T
            strips[1::2] = (pred > 0.5).T
            ax.imshow(strips, aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1,
                      extent=(time[0], time[-1], 2 * len(classes) - 0.5, -0.5))
            ax.set_yticks(np.arange(0, 2 * len(classes), 2) + 0.5, classes, fontsize=7)
        else:
            annotated = ~np.isnan(truth).any(1)
            ax.step(time, np.where(annotated, np.nan_to_num(truth).argmax(1), np.nan), where="post", color="black",
                    lw=1.2, label="true")
            ax.step(time, pred.argmax(1), where="post", color=colour(1), lw=1.0, alpha=0.8, label="predicted")
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
            ax.legend(fontsize=7, loc="upper right")
        mean = np.mean([v for v in scores.values()]) if scores else np.nan
        ax.set_title(f"{name}: F1 of its frames {fmt(mean)}" + (" (each unit: true above, predicted below)"
                                                                if multilabel else ""), fontsize=9)
        ax.set_xlabel(time_label)
    fig.suptitle(title, fontsize=11)
    save(fig, path)
