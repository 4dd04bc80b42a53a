"""Core budgets, measured as ratios against a baseline taken in the same run (issue #2).

    python bench/bench_core.py [--images 10000] [--repeat 5]

1. Scanning a 10,000-image project with captions vs. a bare ``os.scandir`` plus reading every
   caption file (budget: ≤ 2×).
2. Renaming a tag across 10,000 captions, journaled and atomic (budget: ≤ 1 s on 2 cores), with
   a baseline of plain in-place rewrites of the same files for scale.
Also reported: header sizing of all images and the steps math, for information.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path

from lora_tui.core import bulk, project, scan, steps
from lora_tui.core.journal import Journal


def tiny_png(w: int, h: int, seed: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    raw = b"".join(b"\x00" + bytes([seed % 256, 0, 0]) * w for _ in range(h))
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def build(root: Path, n: int) -> None:
    folder = root / "data" / "big"
    folder.mkdir(parents=True)
    sizes = [(8, 8), (8, 12), (12, 8)]
    for i in range(n):
        w, h = sizes[i % 3]
        (folder / f"img{i:05d}.png").write_bytes(tiny_png(w, h, i))
        (folder / f"img{i:05d}.txt").write_text(f"sks person, red shirt, tag{i % 97}, smile, outdoors\n")
    (root / "lora-tui.toml").write_text(
        '[project]\nname = "bench"\n[general]\ncaption_extension = ".txt"\n'
        '[[datasets]]\nresolution = 512\nbatch_size = 4\nenable_bucket = true\n'
        '[[datasets.subsets]]\nimage_dir = "data/big"\nnum_repeats = 1\n'
        '[training]\nnetwork_module = "networks.lora"\nmax_train_epochs = 10\n')


def baseline_scan(folder: Path) -> int:
    total = 0
    with os.scandir(folder) as it:
        names = [e.name for e in it]
    for name in names:
        if name.endswith(".txt"):
            with open(folder / name, "rb") as f:
                total += len(f.read())
    return total


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        build(root, args.images)
        os.sync()  # the user's files exist long before an edit: don't bill their writeback to us
        folder = root / "data" / "big"
        proj = project.load(root)
        base = timed(lambda: baseline_scan(folder), args.repeat)
        ours = timed(lambda: scan.scan_project(proj), args.repeat)
        print(f"scan {args.images} images+captions: baseline {base * 1000:.1f} ms, lora-tui {ours * 1000:.1f} ms, "
              f"ratio {ours / base:.2f}x (budget <= 2x)")
        scans = scan.scan_project(proj)
        t0 = time.perf_counter()
        scan.fill_sizes(scans[0].records)
        print(f"header sizes for {args.images} images: {(time.perf_counter() - t0) * 1000:.1f} ms")
        t0 = time.perf_counter()
        report = steps.compute(proj, scans)
        print(f"steps math (sizes cached): {(time.perf_counter() - t0) * 1000:.1f} ms -> {report.summary_line()}")

        targets = bulk.select_targets(scan.scan_project(proj))
        journal = Journal(root)
        os.sync()
        t0 = time.perf_counter()
        preview = bulk.rename_tag(targets, "red shirt", "crimson shirt")
        t1 = time.perf_counter()
        preview.apply(journal)
        t2 = time.perf_counter()
        ours = t2 - t0
        print(f"rename tag across {len(preview)} captions: preview {(t1 - t0) * 1000:.0f} ms + journaled atomic "
              f"apply {(t2 - t1) * 1000:.0f} ms = {ours:.3f} s (budget <= 1 s)")
        # Baselines on the same files, same run: the floor of any write-temp-then-rename edit (no
        # checks, no flush, no journal), and a plain in-place rewrite (not atomic at all).
        os.sync()
        t0 = time.perf_counter()
        for change in preview.changes:
            tmp = change.path.with_name("." + change.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, (change.before or "").encode())
            os.close(fd)
            os.replace(tmp, change.path)
        bare = time.perf_counter() - t0
        os.sync()
        t0 = time.perf_counter()
        for change in preview.changes:
            with open(change.path, "w", encoding="utf-8") as f:
                f.write(change.after or "")
        plain = time.perf_counter() - t0
        print(f"  baseline bare temp+rename loop {bare:.3f} s -> ratio {ours / bare:.2f}x; "
              f"plain in-place rewrite {plain:.3f} s")


if __name__ == "__main__":
    main()
