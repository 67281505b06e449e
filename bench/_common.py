"""Shared by the bench/ scripts: machine info, child processes with their peak memory, JSON
lines out, Markdown tables. Not a benchmark itself.

Conventions of every bench script: numbers on stdout (one JSON object per line, each with a
`bench` kind and a `machine` dict; a Markdown table after them unless --json), progress on
stderr, paths relative to the repository root (found from this file).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 2 ** 20
DEMO_HINT = {"emi": "python -m solution.synth --track emi --out work/demo-emi",
             "va": "python -m solution.synth --track va --out work/demo-va"}


# ------------------------------------------------------------------ machine

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_version() -> str | None:
    """The installed torch's version without importing it (importing takes seconds)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None = None, device: str = "cpu") -> dict:
    """What every JSON line carries: CPU model, cores, torch, threads, device, and the load
    average when measured (other processes on the cores lower every time measured here)."""
    try:
        cores_usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores_usable = os.cpu_count()
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "cores_usable": cores_usable,
            "python": platform.python_version(), "torch": torch_version(), "threads": threads, "device": device}
    if device.startswith("cuda"):
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        except Exception:  # noqa: BLE001 - informative only
            info["gpu"] = None
    try:
        info["load1"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


# ------------------------------------------------------------------ output

def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def emit(record: dict, stream=None) -> None:
    print(json.dumps(record), file=stream or sys.stdout, flush=True)


def json_lines(text: str) -> list[dict]:
    """The JSON objects among `text`'s lines (others, e.g. a table, are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def missing_data(path: Path, track: str = "emi", flag: str = "--data") -> str:
    """The error for a release that is not there, saying how to make one."""
    return (f"{rel(path)} not found: make the demo release with `{DEMO_HINT[track]}` "
            f"(or run `bash run_all.sh`{'' if track == 'emi' else ' with TRACK=va'}, which makes it), "
            f"or pass {flag}")


def rel(path: Path) -> str:
    """A path as shown in output: relative to the repository root when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ child processes

def rss_mb(pid: int | str = "self") -> float | None:
    """A process's resident memory now (VmRSS), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_child(args: list[str], verbose: bool = False, label: str = "", sample: bool = True,
              echo=None) -> dict:
    """Run `python ...args` from the repository root; its wall time, peak RSS (wait4's
    ru_maxrss: the largest of the child's and its reaped descendants' peaks, not their sum),
    a sampled RSS timeline, and its output lines (stdout and stderr merged). Raises
    RuntimeError with the last lines when it fails. `echo(line)` sees each line as it comes."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sampler():
        while not done.is_set():
            rss = rss_mb(child.pid)
            if rss is not None:
                samples.append((time.perf_counter() - started, rss))
            done.wait(0.2)

    thread = threading.Thread(target=sampler, daemon=True)
    if sample:
        thread.start()
    lines: list[str] = []
    for raw in child.stdout:
        for line in raw.replace("\r", "\n").splitlines():
            if not line.strip():
                continue
            lines.append(line)
            if echo is not None:
                echo(line)
            if verbose:
                rss = rss_mb(child.pid)
                print(f"  [{label} {time.perf_counter() - started:7.1f}s rss {rss or 0:7.0f} MB] {line}",
                      file=sys.stderr, flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    if sample:
        thread.join()
    child.stdout.close()
    if child.returncode != 0:
        raise RuntimeError(f"{label or 'child'} failed (exit {child.returncode}): python {' '.join(args)}\n"
                           + "\n".join(lines[-30:]))
    peak_at = max(samples, key=lambda s: s[1])[0] if samples else None
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_at_s": None if peak_at is None else round(peak_at, 1), "samples": samples, "lines": lines}


# ------------------------------------------------------------------ tables

def markdown_table(headers: list[str], rows: list[list], align: str = "") -> str:
    """A Markdown table; `align` one letter per column (l or r; default: first l, rest r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _machine_line(records: list[dict]) -> str:
    machines = [r["machine"] for r in records if r.get("machine")]
    if not machines:
        return ""
    m = machines[0]
    loads = [x.get("load1") for x in machines if x.get("load1") is not None]
    load = f"; load average {min(loads):.1f}-{max(loads):.1f} while measured" if loads else ""
    return (f"_{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, python {m.get('python')}"
            f"{load}._")


def render(records: list[dict]) -> str:
    """Markdown tables of whatever bench records are given (train, sweep, features, end_to_end)."""
    parts = []
    train = [r for r in records if r.get("bench") == "train" and "error" not in r]
    if train:
        first = train[0]
        shape = ", ".join(f"{m} {s[0]}x{s[1]}" for m, s in first.get("shape", {}).items())
        rows = []
        for r in train:
            rate = r.get("videos_per_s", r.get("frames_per_s"))
            rows.append([r["model"], _num(rate), _num(r["ms_per_step"]), _num(r.get("peak_rss_mb")),
                         _num(r.get("parameters"))])
        unit = "videos/s" if "videos_per_s" in first else "frames/s"
        parts.append(f"Training throughput at batch {first['batch']} ({shape}), forward + backward + AdamW, "
                     f"{first.get('threads')} threads, {first.get('device', 'cpu')}; peak MB is the whole process "
                     f"(ru_maxrss, {_num(first.get('rss_base_mb'))} MB of it before the model is built):\n\n"
                     + markdown_table(["model", unit, "ms/step", "peak MB", "parameters"], rows))
    sweep = [r for r in records if r.get("bench") == "sweep" and "error" not in r]
    for axis, other in (("length", "batch"), ("batch", "length")):
        points = [r for r in sweep if r.get("axis") == axis]
        if not points:
            continue
        values = sorted({r[axis] for r in points})
        models = list(dict.fromkeys(r["model"] for r in points))
        rows = []
        for model in models:
            cell = {r[axis]: r for r in points if r["model"] == model}
            rows.append([model] + [f"{_num(cell[v]['ms_per_step'])} ms / {_num(cell[v].get('peak_rss_mb'))} MB"
                                   if v in cell else "–" for v in values])
        fixed = points[0][other]
        what = "visual steps (audio steps scale with them)" if axis == "length" else "videos per batch"
        parts.append(f"Step time and peak memory against {what}, at {other} {fixed}:\n\n"
                     + markdown_table(["model"] + [f"{axis} {v}" for v in values], rows))
    feats = [r for r in records if r.get("bench") == "features" and "extractor" in r]
    if feats:
        first = feats[0]
        rows = [[r["extractor"], r.get("modality", ""), _num(r.get("throughput")), r.get("unit", ""),
                 _num(r.get("load_s"), 2) if r.get("load_s") is not None else "–"]
                if "error" not in r else [r["extractor"], r.get("modality", ""), "error", r["error"][:60], ""]
                for r in feats]
        parts.append(f"Feature extraction on {first.get('videos')} videos of {first.get('data')}, "
                     f"{first.get('machine', {}).get('threads')} thread(s), {first.get('machine', {}).get('device')} "
                     f"(model loading excluded, shown apart):\n\n"
                     + markdown_table(["extractor", "modality", "throughput", "unit", "load s"], rows, "llrlr"))
    for r in [r for r in records if r.get("bench") == "end_to_end"]:
        rows = [[s.get("stage", ""), s.get("name", ""), _num(s.get("seconds"))] for s in r.get("stages", [])]
        rows.append(["", "**all stages**", _num(r.get("total_s"))])
        note = "" if r.get("exit", 0) == 0 else f" — FAILED (exit {r.get('exit')})"
        parts.append(f"End-to-end `bash run_all.sh` ({r.get('mode', 'default')} settings{note}; wall time "
                     f"{_num(r.get('wall_s'))} s with start-up, peak process {_num(r.get('peak_rss_mb'))} MB):\n\n"
                     + markdown_table(["stage", "what", "seconds"], rows, "llr"))
    errors = [r for r in records if "error" in r and not (r.get("bench") == "features" and "extractor" in r)]
    if errors:
        parts.append("Failed measurements:\n\n" + "\n".join(
            "- " + " ".join(str(r[k]) for k in ("bench", "model", "axis") if r.get(k))
            + f": {(r['error'].splitlines() or [''])[0][:200]}"
            for r in errors))
    line = _machine_line(records)
    if parts and line:
        parts.append(line)
    return "\n\n".join(parts)


def main(argv=None) -> int:
    """`python bench/_common.py`: this machine as the bench scripts record it, one JSON line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python bench/_common.py", description=(__doc__ or "").split("\n\n")[0],
                                     epilog="Run alone, it prints the machine dict every bench JSON line carries.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads to record (default: not set)")
    parser.add_argument("--device", default="cpu", help="device to record (default cpu)")
    args = parser.parse_args(argv)
    emit(machine_info(args.threads, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
