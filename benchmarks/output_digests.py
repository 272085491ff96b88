"""sha256 of every output file of four reference builds: the record of "byte-identical".

Run it before a refactor (`--save before.json`) and after (`--compare before.json`): the second
run exits 1 and names every file whose bytes changed. The builds, all through the installed
`inception-data` command:

- `example`: the bundled example (README's first command);
- `samples`: the 1000 real ImageNet samples in ../shared/data as `<synset>/<file>` (4 shards),
  once locally on two workers and once through the distributed design (per-image GroupByKey);
- `tars`: the same samples as ILSVRC-2012 archives (a training tar of per-synset tars, two
  images each, and a flat validation tar of 50 `ILSVRC2012_val_*.JPEG`) with a boxes CSV,
  locally and through the distributed design.

The manifest's `tool_version` is blanked (a version bump is not a change of output).

Usage: python benchmarks/output_digests.py [--save FILE | --compare FILE] [--workdir DIR]
                                          [--tool COMMAND]
"""

import argparse
import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent
SAMPLES = PROJECT.parent / "shared" / "data" / "imagenet-samples"
DISTRIBUTED = ["--runner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner"]


TOOL = [shutil.which("inception-data") or str(pathlib.Path(sys.executable).parent /
                                             "inception-data")]


def run(*args) -> None:
    subprocess.run([*TOOL, *map(str, args), "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def digests(out: pathlib.Path) -> dict[str, str]:
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):  # index/ included
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            manifest["tool_version"] = ""
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        found[str(path.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return found


def make_inputs(work: pathlib.Path) -> None:
    samples = sorted(SAMPLES.iterdir())
    tree = work / "samples"
    for path in samples:
        target = tree / path.name.split("_")[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
    with tarfile.open(work / "train.tar", "w", format=tarfile.GNU_FORMAT) as outer:
        for path in samples:
            synset = path.name.split("_")[0]
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as inner:
                data = path.read_bytes()
                for n in (1, 2):  # addfile: add() would store the second as a hard link
                    member = tarfile.TarInfo(f"{synset}_{n}.JPEG")
                    member.size = len(data)
                    inner.addfile(member, io.BytesIO(data))
            info = tarfile.TarInfo(f"{synset}.tar")
            info.size = buffer.tell()
            buffer.seek(0)
            outer.addfile(info, buffer)
    with tarfile.open(work / "val.tar", "w", format=tarfile.GNU_FORMAT) as flat:
        for i, path in enumerate(samples[:50], start=1):
            flat.add(path, arcname=f"ILSVRC2012_val_{i:08d}.JPEG")
    rows = []
    for i, path in enumerate(samples):
        if i % 7 == 0:
            synset = path.name.split("_")[0]
            rows.append(f"{synset}_1.JPEG,0.1000,0.2000,0.{i % 9 + 1}000,0.9000")
            rows.append(f"{synset}_1.JPEG,0.0500,0.0500,0.5000,0.5000")
    rows += [f"ILSVRC2012_val_{i:08d}.JPEG,0.2500,0.2500,0.7500,0.7500" for i in range(1, 51, 3)]
    (work / "boxes.csv").write_text("".join(row + "\n" for row in sorted(rows)))


def builds(work: pathlib.Path) -> dict[str, dict[str, str]]:
    example = PROJECT / "examples" / "tiny"
    out = {}
    run("build", "--train-dir", example / "train", "--validation-dir", example / "validation",
        "--labels-file", example / "labels.txt", "--output-dir", work / "out-example")
    out["example"] = digests(work / "out-example")
    for name, extra in (("samples-local", ["--workers", "2"]), ("samples-distributed",
                                                                 DISTRIBUTED)):
        run("build", "--train-dir", work / "samples", "--shards", "4",
            "--output-dir", work / f"out-{name}", *extra)
        out[name] = digests(work / f"out-{name}")
    for name, extra in (("tars-local", ["--workers", "2"]), ("tars-distributed", DISTRIBUTED)):
        run("imagenet", "--train-tar", work / "train.tar", "--validation-tar", work / "val.tar",
            "--bounding-boxes", work / "boxes.csv", "--train-shards", "8",
            "--validation-shards", "2", "--output-dir", work / f"out-{name}", *extra)
        out[name] = digests(work / f"out-{name}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save")
    parser.add_argument("--compare")
    parser.add_argument("--workdir", default="/tmp/output-digests")
    parser.add_argument("--tool", help="The command to build with, e.g. an older checkout's: "
                                       "'env PYTHONPATH=OLD python -P -m inception_data_cli'")
    args = parser.parse_args()
    if args.tool:
        TOOL[:] = shlex.split(args.tool)
    if not SAMPLES.exists():
        sys.exit(f"needs the real samples in {SAMPLES}")
    work = pathlib.Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_inputs(work)
    found = builds(work)
    for build, files in found.items():
        print(f"{build}: {len(files)} files")
        for name, digest in files.items():
            print(f"  {digest}  {name}")
    if args.save:
        pathlib.Path(args.save).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(pathlib.Path(args.compare).read_text())
        changed = [f"{build}/{name}" for build in sorted(set(before) | set(found))
                   for name in sorted(set(before.get(build, {})) | set(found.get(build, {})))
                   if before.get(build, {}).get(name) != found.get(build, {}).get(name)]
        total = sum(len(files) for files in found.values())
        print(f"compared with {args.compare}: {total - len(changed)} of {total} files "
              f"identical; changed: {changed or 'none'}")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
