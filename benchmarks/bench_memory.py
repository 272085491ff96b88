"""Peak memory of a local build (all processes) for growing datasets: it must stay flat.

Builds trees of 1,000, 10,000 and 50,000 images - half synthetic small JPEGs generated here,
half the real samples in ../shared/data hard-linked under new names - and runs
`inception-data build` on each with the same worker count, sampling the resident memory of the
whole process tree (launcher and Beam worker processes) every 20 ms. Run by hand:

    python benchmarks/bench_memory.py [--sizes 1000 10000 50000] [--workers 2] [--previous DIR]
"""

import argparse
import io
import os
import pathlib
import shutil
import subprocess
import time

import checkouts
import numpy as np
from PIL import Image

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def make_tree(root: pathlib.Path, size: int, classes: int = 100) -> None:
    if root.exists():
        return
    samples = sorted(SAMPLES.iterdir())
    rng = np.random.default_rng(0)
    for i in range(size):
        target = root / f"class{i % classes:03d}" / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            os.link(samples[i % len(samples)], target)
        else:
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((64, 48), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            target.write_bytes(buffer.getvalue())


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack += children.get(current, [])
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def peak_rss(command, **kwargs) -> tuple[int, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               **kwargs)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.02)
    if process.returncode:
        raise SystemExit(f"{command} failed with {process.returncode}")
    return peak, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/bench-memory"))
    parser.add_argument("--output-root", type=pathlib.Path,
                        default=pathlib.Path("/dev/shm/bench-memory" if os.path.isdir("/dev/shm")
                                             else "/tmp/bench-mem-out"))
    parser.add_argument("--previous", type=pathlib.Path,
                        help="Also measure another checkout (see checkouts.py)")
    args = parser.parse_args()
    versions = {"ours": checkouts.command()}
    if args.previous:
        versions["previous"] = checkouts.command(args.previous)
    rows = {name: [] for name in versions}
    for size in args.sizes:
        tree = args.workdir / f"tree-{size}"
        make_tree(tree, size)
        out = args.output_root / f"out-{size}"
        for name, (prefix, kwargs) in versions.items():
            shutil.rmtree(out, ignore_errors=True)
            peak, seconds = peak_rss([*prefix, "build", "--no-progress", "--workers",
                                      str(args.workers), "--train-dir", str(tree),
                                      "--output-dir", str(out)], **kwargs)
            shutil.rmtree(out, ignore_errors=True)
            rows[name].append((size, peak))
            print(f"{name:8s} {size:7d} images: peak RSS {peak / 2**20:7.1f} MiB (all "
                  f"processes), {seconds:6.1f} s", flush=True)
    for name, found in rows.items():
        smallest = found[0][1]
        for size, peak in found[1:]:
            print(f"{name:8s} {size:7d} vs {found[0][0]}: x{peak / smallest:.2f} memory for "
                  f"x{size / found[0][0]:.0f} images")


if __name__ == "__main__":
    main()
