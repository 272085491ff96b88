"""inception-data shards in NVIDIA DALI, through the index files every build writes
(index/<shard>.idx, DALI's tfrecord2idx format). Runs on the CPU when no GPU is given.

    pip install nvidia-dali-cuda120
    python examples/dali_reader.py out/ [--gpu 0]

Prints how many records one epoch read and the first labels; with a GPU the JPEGs are decoded
by nvJPEG ("mixed"), which wants baseline JPEGs: build with --progressive baseline.
"""

import argparse
import glob

import nvidia.dali.tfrecord as tfrec
from nvidia.dali import fn, pipeline_def, types


def make_pipeline(out_dir: str, batch_size: int, gpu: int | None):
    shards = sorted(glob.glob(f"{out_dir}/train-*-of-*"))
    indexes = [f"{out_dir}/index/{shard.rsplit('/', 1)[1]}.idx" for shard in shards]

    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=gpu)
    def pipeline():
        records = fn.readers.tfrecord(
            path=shards, index_path=indexes, name="reader", random_shuffle=True,
            features={"image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
                      "image/class/label": tfrec.FixedLenFeature([1], tfrec.int64, -1)})
        images = fn.decoders.image(records["image/encoded"], output_type=types.RGB,
                                   device="cpu" if gpu is None else "mixed")
        images = fn.resize(images, resize_x=224, resize_y=224)
        return images, records["image/class/label"]

    return pipeline()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--gpu", type=int, help="CUDA device; default: CPU only")
    args = parser.parse_args()
    pipeline = make_pipeline(args.out_dir, args.batch_size, args.gpu)
    pipeline.build()
    epoch = pipeline.epoch_size("reader")
    read, first = 0, None
    while read < epoch:
        images, labels = pipeline.run()
        read += len(labels)
        first = first or [int(labels.at(i)[0]) for i in range(min(8, len(labels)))]
    print(f"{epoch} records in the shards, {read} read in one epoch; first labels {first}")


if __name__ == "__main__":
    main()
