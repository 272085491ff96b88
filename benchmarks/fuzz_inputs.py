"""Fuzz the converter's parsers with mutated real data and print what happened.

Mutations (flipped, cut, spliced and inserted bytes) of real ImageNet samples and odd images
from ../shared/data go through `images.normalise` in both verify modes; every image a mode
accepts is then decoded with TensorFlow. Mutations of the real ILSVRC annotation XMLs (one
re-declared as GB2312) go through `boxes.parse`. Anything but a reject is a crash and stops the
run with its traceback. The tests run a small seeded version of this (tests/test_hostile.py).

With `--shard PATH --images N`, it instead writes a shard of N fuzzed JPEG records that
`--verify fast` keeps, as a build would store them, and prints the indexes of those TensorFlow
cannot decode whole: input for input_fn's on_error and `inspect --verify` (tests/
test_decode_check.py makes a small one).

Usage: python benchmarks/fuzz_inputs.py [--images 20000] [--xml 5000] [--seed 0]
       python benchmarks/fuzz_inputs.py --shard out/train-00000-of-00001 --images 2000
"""

import argparse
import os
import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from inception_data import boxes  # noqa: E402
from tests import fabricate  # noqa: E402


def fuzz_xml(count: int, seed: int) -> dict:
    bbox = fabricate.shared_data("bbox")
    real = [(bbox / "train" / "n01440764" / "n01440764_96.xml").read_bytes(),
            (bbox / "val" / "ILSVRC2012_val_00000001.xml").read_bytes()]
    real.append(real[0].replace(b"<annotation>", b'<?xml version="1.0" encoding="GB2312"?>'
                                                 b"<annotation>", 1))
    rng = random.Random(seed)
    outcomes = {"parsed": 0, "reported": 0}
    for _ in range(count):
        try:
            boxes.parse(fabricate.mutate(rng.choice(real), rng), "x.xml")
            outcomes["parsed"] += 1
        except boxes.AnnotationError:
            outcomes["reported"] += 1
    return outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--xml", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard", type=pathlib.Path, help="write a shard of fuzzed records")
    args = parser.parse_args()
    if args.shard:
        records, bad = fabricate.fuzzed_shard(args.shard, args.images, args.seed)
        print(f"{args.shard}: {records} records that --verify fast keeps; {len(bad)} do not "
              f"decode in TensorFlow: records {bad}")
        return
    start = time.perf_counter()
    found = fabricate.fuzz_normalise(args.images, args.seed)
    print(f"{args.images} image mutations in {time.perf_counter() - start:.0f} s, 0 crashes:")
    for verify, (accepted, rejected, undecodable) in found.items():
        print(f"  verify={verify}: {accepted} accepted, {rejected} rejected; of the accepted, "
              f"{undecodable} do not decode in TensorFlow")
    start = time.perf_counter()
    xml = fuzz_xml(args.xml, args.seed)
    print(f"{args.xml} XML mutations in {time.perf_counter() - start:.0f} s, 0 crashes: "
          f"{xml['parsed']} parsed, {xml['reported']} reported")


if __name__ == "__main__":
    main()
