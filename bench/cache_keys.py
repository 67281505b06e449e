"""What the features cache's source keys cost on a release of the real size, where the work
folder keeps them from one run to the next.

    python bench/cache_keys.py [--videos 12700] [--dir work/bench-cache-keys] [--keep]

Writes a release-shaped tree (per video: raw/<id>.mp4, audio/<id>.mp3, vit/ and wav2vec2/
pickles, 200-300 KB each, and a transcript; random bytes),
then times the keys every stage computes for every video (cache.source_key for the visual,
audio, text and both organizer streams): cold (page cache dropped, when root may), warm
(a second process, files in the page cache), within one process (remembered), and in a
later stage that takes up what the features stage recorded (WORK/features/identities.json). Beside
them, what a stat-only key costs (the path, size and mtime keys that could not survive a
move). One JSON line per measurement, then a table. The tree is removed unless --keep
(about 0.9 MB a video: 11 GB at 12,700; check `df` first, or pass fewer --videos).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, machine_info, markdown_table, progress  # noqa: E402

sys.path.insert(0, str(ROOT))
# Past 128 KiB a file's size does not change what a key reads (its first and last 64 KiB).
SIZES = {"raw/{}.mp4": 300_000, "audio/{}.mp3": 200_000, "vit/{}.pkl": 200_000, "wav2vec2/{}.pkl": 200_000,
         "transcripts/{}.txt": 400}

TIMER = r"""
import sys, time, os
from pathlib import Path
sys.path.insert(0, {root!r})
from solution import cache
from solution.layouts import VideoSources
base, n, how = Path({base!r}), {n}, {how!r}
if how == "recorded":
    cache.load_identities(base.parent / "work")
ids = [f"{{i:05d}}" for i in range(n)]
srcs = [VideoSources(v, "train", base / f"raw/{{v}}.mp4", base / f"audio/{{v}}.mp3", base / f"transcripts/{{v}}.txt",
                     None, {{"vit": base / f"vit/{{v}}.pkl", "wav2vec2": base / f"wav2vec2/{{v}}.pkl"}}) for v in ids]
def stat_key(src):
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in
            (src.video, src.audio, src.transcript, src.organizer["vit"], src.organizer["wav2vec2"])]
start = time.perf_counter()
for repeat in range(2 if how == "remembered" else 1):
    if repeat:
        start = time.perf_counter()
    for src in srcs:
        if how == "stat":
            stat_key(src)
        else:
            [cache.source_key(src, m) for m in ("visual", "audio", "text")]
            [cache.source_key(src, "organizer", k) for k in ("vit", "wav2vec2")]
print(time.perf_counter() - start)
if how == "content":
    cache.save_identities(base.parent / "work")
"""


def write_tree(base: Path, n: int) -> None:
    block = os.urandom(1 << 20)
    for pattern in SIZES:
        (base / pattern).parent.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i % 1000 == 0:
            progress(f"writing video {i}/{n}")
        for pattern, size in SIZES.items():
            path = base / pattern.format(f"{i:05d}")
            if path.is_file() and path.stat().st_size == size:
                continue
            offset = (i * 7919) % (len(block) - 1)
            data = (block[offset:] + block)[:size] if size <= len(block) else (block * (size // len(block) + 1))[:size]
            path.write_bytes(data)


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def timed(base: Path, n: int, how: str) -> float:
    code = TIMER.format(root=str(ROOT), base=str(base), n=n, how=how)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/cache_keys.py", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--videos", type=int, default=12_700, help="videos in the written release (default: 12700)")
    parser.add_argument("--dir", type=Path, default=ROOT / "work" / "bench-cache-keys",
                        help="where the release is written (default: work/bench-cache-keys)")
    parser.add_argument("--keep", action="store_true", help="leave the tree for another run")
    args = parser.parse_args(argv)
    base = args.dir / "release"
    write_tree(base, args.videos)
    machine, rows = machine_info(), []
    for how, label in (("stat", "stat-only keys (path, size, mtime), cold"), ("content", "content keys, cold"),
                       ("content", "content keys, warm (page cache)"), ("remembered", "content keys, within one process"),
                       ("recorded", "content keys, as recorded by the features stage, cold")):
        cold = "cold" in label and drop_page_cache()
        if "cold" in label and not cold:
            label = label.replace("cold", "page cache not dropped (not root)")
        seconds = timed(base, args.videos, how)
        record = {"bench": "cache_keys", "machine": machine, "keys": label, "videos": args.videos,
                  "seconds": round(seconds, 2), "ms_per_video": round(1000 * seconds / args.videos, 3)}
        emit(record)
        rows.append([label, args.videos, f"{seconds:.1f}", f"{1000 * seconds / args.videos:.2f}"])
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(markdown_table(["keys of every stream", "videos", "seconds", "ms a video"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
