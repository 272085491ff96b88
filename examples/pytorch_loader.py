"""Training data for PyTorch from inception-data shards, through the `tfrecord` package and
the index files every build writes (index/<shard>.idx).

    pip install torch tfrecord pillow numpy      # not TensorFlow: see README, "Other readers"
    python examples/pytorch_loader.py out/ [--batches 3]

The crop here is a plain resize to keep the example short; put your torchvision transforms in
`decode`. Labels follow the build's convention (manifest.json: label_offset).
"""

import argparse
import io
import json
import pathlib

import numpy as np
import torch
from PIL import Image
from tfrecord.torch.dataset import MultiTFRecordDataset

FEATURES = {"image/encoded": "byte", "image/class/label": "int"}


def decode(record, size=224):
    image = Image.open(io.BytesIO(record["image/encoded"])).convert("RGB").resize((size, size))
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # uint8 [3, H, W]
    return pixels.float() / 127.5 - 1.0, int(record["image/class/label"][0])


def loader(out_dir: str, split: str = "train", batch_size: int = 32):
    out = pathlib.Path(out_dir)
    shards = {path.name: 1.0 for path in sorted(out.glob(f"{split}-*-of-*"))}
    dataset = MultiTFRecordDataset(f"{out}/{{}}", f"{out}/index/{{}}.idx", shards,
                                   description=FEATURES, transform=decode, infinite=False,
                                   shuffle_queue_size=256)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    manifest = json.loads((pathlib.Path(args.out_dir) / "manifest.json").read_text())
    print(f"{manifest['splits']['train']['written']} training images, labels from "
          f"{manifest['label_offset']}")
    for number, (images, labels) in enumerate(loader(args.out_dir)):
        print(f"batch {number}: images {tuple(images.shape)} {images.dtype}, labels "
              f"{labels.tolist()}")
        if number + 1 >= args.batches:
            break


if __name__ == "__main__":
    main()
