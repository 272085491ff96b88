"""`inspect` and `benchmark-input`: looking at finished shards."""

from __future__ import annotations

import os
import sys

import click

from inception_data_cli.main import fail, main


@main.command()
@click.argument("patterns", nargs=-1, required=True)
@click.option("--verify", is_flag=True, help="Decode every image and check it against its record.")
@click.option("--samples", type=int, default=2, show_default=True, help="Records to print.")
def inspect(patterns, verify, samples):
    """Counts per shard and per class of TFRecord shards, a few samples, and checks."""
    from inception_data import inspection, reader

    try:
        files = reader.list_files(list(patterns))
    except FileNotFoundError as err:
        fail(str(err))
    totals: dict = {}
    problems = []
    for path in files:
        shard = inspection.inspect_shard(path, verify=verify, samples=samples)
        samples = max(0, samples - len(shard.samples))
        click.echo(f"{path}: {shard.records} records")
        for sample in shard.samples:
            click.echo(f"  sample: {sample}")
        for key, count in shard.per_class.items():
            totals[key] = totals.get(key, 0) + count
        problems += [f"{path}: {p}" for p in shard.problems]
    click.echo(f"{sum(totals.values())} records in {len(files)} file(s); per class:")
    for (label, text), count in sorted(totals.items()):
        click.echo(f"  {label:5d} {text}: {count}")
    for problem in problems:
        click.secho(f"problem: {problem}", fg="red", err=True)
    if verify:
        click.echo(f"verify: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


@main.command("benchmark-input")
@click.argument("pattern")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--image-size", type=int, default=299, show_default=True)
@click.option("--distortions", type=click.Choice(["fast", "inception", "none"]), default="fast",
              show_default=True)
@click.option("--eval", "evaluation", is_flag=True, help="Measure the evaluation pipeline.")
@click.option("--batches", type=int, default=50, show_default=True)
def benchmark_input(pattern, batch_size, image_size, distortions, evaluation, batches):
    """Images/s of input_fn on your shards: will your input pipeline keep accelerators fed?"""
    from inception_data import reader, throughput

    try:
        dataset = reader.input_fn(pattern, is_training=not evaluation, batch_size=batch_size,
                                  image_size=image_size, repeat=True,
                                  distortions=None if distortions == "none" else distortions)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    rate, images = throughput.images_per_second(dataset, batches=batches)
    cores = os.cpu_count() or 1
    mode = "eval" if evaluation else f"train, distortions={distortions}"
    click.echo(f"{rate:.1f} images/s ({rate / cores:.1f} per core, {cores} cores) over {images} "
               f"images; {mode}, batch {batch_size}, image size {image_size}")
