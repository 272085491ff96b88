"""Build the same image trees several ways in one run and print images/s and the ratios.

Ours: `inception-data build` (default settings, --duplicates off, --verify decode). Baseline:
original_style_build.py (the original scripts' way). The floor: floor_build.py, the least work
any converter must do (read, find the JPEG size, serialize, frame, write; nothing else). Both
run as whole processes (start-up included) on two tree sizes built from the real ImageNet
samples in ../shared/data (hard links under new names; outputs go to RAM, /dev/shm, by default
so that the disk's write speed does not cap both sides at the same rate), so the steady-state
rate - (N2 - N1) / (t2 - t1), which cancels start-up - and the whole-process rate at the larger
size are both reported.

`--photos small` builds the trees from the real 10 KB photos of imagenette-small instead (per-file
costs dominate there), and adds the default build forced to one process and to one per core:
the check of the local process-count rule (pipelines/launch.py: local_workers).

Usage: python benchmarks/bench_build.py [--sizes 12000 50000] [--workdir /tmp/bench-build]
                                        [--output-root /dev/shm/bench-build] [--previous DIR]
                                        [--photos imagenet|small]
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

import checkouts

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
SAMPLES = SHARED / "imagenet-samples"
SMALL_PHOTOS = SHARED / "imagenette-small"


def make_tree(root: pathlib.Path, size: int, classes: int = 100,
              samples_dir: pathlib.Path = SAMPLES) -> None:
    """`size` files in `classes` class directories, real JPEGs hard-linked under new names."""
    if root.exists():
        return
    samples = sorted(p for p in samples_dir.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    for i in range(size):
        source = samples[i % len(samples)]
        target = root / f"class{i % classes:03d}" / f"{i:07d}_{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)


def timed(command, **kwargs) -> float:
    start = time.perf_counter()
    kwargs.setdefault("env", dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   **kwargs)
    return time.perf_counter() - start


def run_all(sizes, workdir: pathlib.Path, output_root: pathlib.Path, cores: int,
            previous: pathlib.Path | None = None, samples_dir: pathlib.Path = SAMPLES):
    tool, tool_kwargs = checkouts.command()
    tool = tool[0]
    variants = {
        FLOOR: lambda tree, out, n: [sys.executable, str(HERE / "floor_build.py"), str(tree),
                                     str(out), str(max(1, n // 1024)), str(cores)],
        "original-style": lambda tree, out, n: [sys.executable,
                                                str(HERE / "original_style_build.py"),
                                                str(tree), str(out), str(max(1, n // 1024)),
                                                str(cores)],
        "ours (default)": lambda tree, out, n: [tool, "build", "--no-progress", "--train-dir",
                                                str(tree), "--output-dir", str(out),
                                                "--overwrite"],
        "ours --duplicates off": lambda tree, out, n: [tool, "build", "--no-progress",
                                                       "--duplicates", "off", "--train-dir",
                                                       str(tree), "--output-dir", str(out),
                                                       "--overwrite"],
        "ours --verify decode": lambda tree, out, n: [tool, "build", "--no-progress",
                                                      "--verify", "decode", "--train-dir",
                                                      str(tree), "--output-dir", str(out),
                                                      "--overwrite"],
    }
    if samples_dir != SAMPLES:
        for workers in (1, cores):
            variants[f"ours --workers {workers}"] = (
                lambda tree, out, n, w=workers: [tool, "build", "--no-progress", "--workers",
                                                 str(w), "--train-dir", str(tree),
                                                 "--output-dir", str(out), "--overwrite"])
    kwargs = {name: tool_kwargs for name in variants}
    if previous:
        prefix, kwargs[PREVIOUS] = checkouts.command(previous)
        variants[PREVIOUS] = lambda tree, out, n: [*prefix, "build", "--no-progress",
                                                   "--train-dir", str(tree), "--output-dir",
                                                   str(out), "--overwrite"]
    seconds = {}
    for size in sizes:
        tree = workdir / f"tree-{size}"
        make_tree(tree, size, samples_dir=samples_dir)
        for name, command in variants.items():
            out = output_root / f"out-{size}"
            shutil.rmtree(out, ignore_errors=True)
            seconds[name, size] = timed(command(tree, out, size), **kwargs[name])
            shutil.rmtree(out, ignore_errors=True)
            print(f"{name:22s} {size:7d} images {seconds[name, size]:7.1f} s "
                  f"{size / seconds[name, size]:8.1f} images/s", flush=True)
    return seconds


PREVIOUS = "previous (default)"
FLOOR = "floor (least work)"
NAMES = (FLOOR, "original-style", "ours (default)", "ours --duplicates off",
         "ours --verify decode", PREVIOUS)


def report(seconds, sizes):
    small, large = sizes
    base = "original-style"

    def steady(name):
        return (large - small) / (seconds[name, large] - seconds[name, small])

    print(f"\nsteady state (images {small}->{large}) and whole process at {large}; x: against "
          f"the original-style converter, /floor: how many times slower than the floor:")
    for name in [n for n in NAMES if (n, large) in seconds] + sorted(
            n for n, size in seconds if size == large and n.startswith("ours --workers")):
        print(f"{name:22s} steady {steady(name):8.1f} images/s (x{steady(name) / steady(base):.2f},"
              f" /floor {steady(FLOOR) / steady(name):.2f})   whole "
              f"{large / seconds[name, large]:8.1f} images/s "
              f"(x{seconds[base, large] / seconds[name, large]:.2f}, /floor "
              f"{seconds[name, large] / seconds[FLOOR, large]:.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[12000, 50000])
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/bench-build"))
    parser.add_argument("--output-root", type=pathlib.Path,
                        default=pathlib.Path("/dev/shm/bench-build" if os.path.isdir("/dev/shm")
                                             else "/tmp/bench-build/out"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--photos", choices=["imagenet", "small"], default="imagenet",
                        help="small: trees of imagenette-small's 10 KB photos")
    parser.add_argument("--previous", type=pathlib.Path,
                        help="Also time the default build of another checkout (see checkouts.py)")
    args = parser.parse_args()
    if not SAMPLES.exists():
        sys.exit(f"needs the real samples in {SAMPLES}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.output_root.mkdir(parents=True, exist_ok=True)
    samples_dir = SMALL_PHOTOS if args.photos == "small" else SAMPLES
    workdir = args.workdir / args.photos
    workdir.mkdir(parents=True, exist_ok=True)
    report(run_all(args.sizes, workdir, args.output_root, args.cores, args.previous,
                   samples_dir), args.sizes)


if __name__ == "__main__":
    main()
