"""`inspect` and `benchmark-input`: looking at finished shards."""

from __future__ import annotations

import collections
import os
import sys

import click

from inception_data_cli.messages import fail


@click.command()
@click.argument("patterns", nargs=-1, required=True)
@click.option("--verify", is_flag=True, help="Decode every image as training would (TensorFlow's "
                                            "decoder, on every core) and check it against its "
                                            "record; names each bad record.")
@click.option("--save-verdict", is_flag=True,
              help="With --verify: write decode-check.json beside the shards, so that "
                   "input_fn and train.py know them checked (and which records to skip).")
@click.option("--samples", type=int, default=2, show_default=True, help="Records to print.")
@click.option("--max-size", type=click.IntRange(min=1), default=512, show_default=True,
              metavar="PIXELS", help="When the images are large: the `build --max-size` whose "
                                     "saving is estimated.")
@click.option("--contact-sheet", "sheet_path", metavar="PNG",
              help="Write a picture of the dataset: sample tiles per class and the counts.")
@click.option("--per-class", type=click.IntRange(1, 50), default=4, show_default=True,
              help="Tiles per class on the contact sheet.")
@click.option("--tile", type=click.IntRange(16, 512), default=96, show_default=True,
              help="Tile size of the contact sheet, pixels.")
@click.option("--classes", "max_classes", type=click.IntRange(min=1), default=100,
              show_default=True, help="At most this many classes (the first, in label order) "
                                      "on the contact sheet.")
@click.option("--augmented", is_flag=True,
              help="Contact sheet tiles are training examples from input_fn (random crops, "
                   "flips, colour), what the model sees, instead of the stored images.")
def inspect(patterns, verify, save_verdict, samples, max_size, sheet_path, per_class, tile,
            max_classes, augmented):
    """Counts per shard and per class of TFRecord shards, a few samples, the sizes of the
    stored images, checks, and optionally a contact sheet."""
    import concurrent.futures

    from inception_data.quiet_start import import_tensorflow

    import_tensorflow()  # without the C++ start-up notices (an E-line on machines without GPU)
    from inception_data import (
        contact_sheet,
        inspection,
        reader,
        shard_index,
        shard_set,
        split_check,
    )

    try:
        files = reader.list_files(list(patterns))
    except FileNotFoundError as err:
        fail(str(err))
    totals: collections.Counter = collections.Counter()
    problems = []
    sizes = inspection.SizeReport(max_size=max_size)
    # with --augmented the tiles come from input_fn: collect counts and texts only (no
    # thumbnails decoded for nothing)
    sheet = contact_sheet.Samples(0 if augmented else per_class, tile) if sheet_path else None
    if save_verdict and not verify:
        fail("--save-verdict records what --verify found: pass both")
    try:
        shards = shard_set.ShardSet.read(files)
        offset = shards.label_offset()
    except ValueError as err:
        fail(str(err))
    # the set against its names, manifest, index files and sizes (no pass over the data)
    spans = shard_index.read(files, scan=False)  # (None for a shard without an index file)
    problems += [problem.line for problem in split_check.problems(shards, spans)]
    reports = []
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for path in files:
            shard = inspection.inspect_shard(path, verify=verify, samples=samples, sizes=sizes,
                                             label_offset=offset, sheet=sheet, pool=pool)
            reports.append(shard)
            samples = max(0, samples - len(shard.samples))
            click.echo(f"{path}: {shard.records} records")
            for sample in shard.samples:
                click.echo(f"  sample: {sample}")
            totals.update(shard.per_class)
            problems += [f"{path}: {p}" for p in shard.problems]
            counted = shards.shard_records(path)
            if not shard.problems and counted is not None and counted != shard.records:
                problems.append(f"{path} holds {shard.records} records, its manifest counts "
                                f"{counted}")
    click.echo(f"{sum(totals.values())} records in {len(files)} file(s); per class:")
    for (label, text), count in sorted(totals.items()):
        click.echo(f"  {label:5d} {text}: {count}")
    _echo_sizes(sizes)
    if sheet is not None:
        problems += _write_sheet(sheet, files, sheet_path, per_class, tile, max_classes,
                                 augmented)
    for problem in problems:
        click.secho(f"problem: {problem}", fg="red", err=True)
    if verify:
        undecodable = sum(len(r.undecodable) for r in reports)
        click.echo(f"verify: {len(problems)} problem(s), {undecodable} record(s) that do not "
                   f"decode in TensorFlow")
    if save_verdict:
        import tensorflow as tf

        for written in shard_set.save_verdicts(reports, f"tensorflow {tf.__version__}"):
            click.echo(f"verdict: {written} (input_fn and train.py read it)")
    sys.exit(1 if problems else 0)


def _write_sheet(sheet, files, path, per_class, tile, max_classes, augmented) -> list[str]:
    """Writes the contact sheet; returns the problem when there is nothing to show (a sheet of
    empty rows would look like a build of blank images)."""
    import tensorflow as tf

    from inception_data import contact_sheet

    labels = sorted(sheet.counts)[:max_classes]
    tiles = sheet.tiles
    if augmented:
        tiles = contact_sheet.augmented_tiles(files, labels, per_class, tile)
    if not any(tiles.get(label) for label in labels):
        return [f"contact sheet {path} not written: none of the "
                f"{sum(sheet.counts.values())} record(s) holds an image that decodes"]
    total = sum(sheet.counts.values())
    title = (f"{total} records, {len(sheet.counts)} classes"
             + (f" (the first {len(labels)} shown)" if len(labels) < len(sheet.counts) else "")
             + (": training examples from input_fn" if augmented else ": stored images"))
    image = contact_sheet.render(tiles, sheet.texts, sheet.counts, labels, per_class, tile,
                                 title)
    with tf.io.gfile.GFile(path, "wb") as handle:
        image.save(handle, "PNG")
    click.echo(f"contact sheet: {path} ({image.width}x{image.height}, {len(labels)} classes, "
               f"up to {per_class} tiles each)")
    return []


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1e6 else f"{count / 1e3:,.1f} KB"


def _echo_sizes(sizes) -> None:
    """The size distribution, and when the images are large, what --max-size would save."""
    from inception_data import inspection

    if not sizes.records:
        return
    click.echo(f"image sizes: median {sizes.median_megapixels:.2f} MP, "
               f"{_megabytes(sizes.encoded_bytes // sizes.records)} per image, "
               f"{sizes.progressive} progressive JPEG(s); stored megapixels:")
    for label, count in sizes.megapixels.items():
        click.echo(f"  {label:>9} MP: {count}")
    if not sizes.images_are_large:
        return
    saving = inspection.estimate_saving(sizes)
    click.echo(
        f"{sizes.large} of {sizes.records} images store more than "
        f"{inspection.LARGE_MEGAPIXELS:g} MP: decoding them sets the read speed. "
        f"`build --max-size {sizes.max_size}` would scale {sizes.over_max_size} images down; "
        f"measured on {saving['sampled']} of them, one core decodes one in "
        f"{saving['decode_ms_after']:.1f} ms instead of {saving['decode_ms_before']:.1f} ms "
        f"({saving['decode_speedup']:.1f}x faster, an upper bound for reading), and the shards "
        f"would take about {_megabytes(saving['bytes_after'])} instead of "
        f"{_megabytes(saving['bytes_before'])} "
        f"({saving['bytes_before'] / max(1, saving['bytes_after']):.1f}x smaller).")


@click.command("benchmark-input")
@click.argument("pattern")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--image-size", type=int, default=299, show_default=True)
@click.option("--distortions", type=click.Choice(["fast", "inception", "none"]), default="fast",
              show_default=True)
@click.option("--eval", "evaluation", is_flag=True, help="Measure the evaluation pipeline.")
@click.option("--batches", type=int, default=50, show_default=True)
def benchmark_input(pattern, batch_size, image_size, distortions, evaluation, batches):
    """Images/s of input_fn on your shards: will your input pipeline keep accelerators fed?"""
    from inception_data.quiet_start import import_tensorflow

    import_tensorflow()
    from inception_data import reader, throughput

    try:
        dataset = reader.input_fn(pattern, is_training=not evaluation, batch_size=batch_size,
                                  image_size=image_size, options=reader.ReadOptions(
                                      repeat=True, distortions=None if distortions == "none"
                                      else distortions))
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    timing = throughput.time_batches(dataset, batches=batches)
    rate, cores = timing.images_per_second, os.cpu_count() or 1
    mode = "eval" if evaluation else f"train, distortions={distortions}"
    click.echo(f"{rate:.1f} images/s ({rate / cores:.1f} per core, {cores} cores) over "
               f"{timing.images} images; {mode}, batch {batch_size}, image size {image_size}")
    click.echo(f"batch time: median {timing.median * 1e3:.1f} ms, p99 {timing.p99 * 1e3:.1f} "
               f"ms, slowest {timing.slowest * 1e3:.1f} ms")
    _decode_bound_hint(reader.list_files(pattern), rate / cores)


@click.command("index")
@click.argument("patterns", nargs=-1, required=True)
@click.option("--overwrite", is_flag=True, help="Write index files that exist already again.")
def index(patterns, overwrite):
    """Write index/<shard>.idx for shards that lack one (another tool's, or copied without the
    index folder), from their record headers: what input_fn's training order reads by, and
    what DALI's and PyTorch's TFRecord readers take."""
    from inception_data.quiet_start import import_tensorflow

    import_tensorflow()
    from inception_data import reader, shard_index, tfrecord

    try:
        files = reader.list_files(list(patterns))
    except FileNotFoundError as err:
        fail(str(err))
    written = 0
    for path in files:
        try:
            done = shard_index.write_index(path, overwrite=overwrite)
        except tfrecord.CorruptRecord as err:
            fail(str(err))
        if done:
            written += 1
            click.echo(f"{done[0]}: {done[1]} records")
    click.echo(f"wrote {written} index file(s); {len(files) - written} shard(s) had one "
               f"already{'' if overwrite else ' (--overwrite writes them again)'}")


# The pipeline counts as decode-bound when one whole decode of each image takes at least this
# share of each core's time at the measured rate (training decodes each image's crop once).
DECODE_BOUND_SHARE = 0.3


def _decode_bound_hint(files, rate_per_core: float) -> None:
    """Says when large stored images make the pipeline decode-bound, and what to do."""
    from inception_data import inspection

    sizes = inspection.sample_sizes(files)
    if not sizes.images_are_large or not sizes.sample:
        return
    seconds = inspection.decode_seconds(sizes.sample, repeats=1)
    share = rate_per_core * seconds
    if share < DECODE_BOUND_SHARE:
        return
    click.echo(
        f"decode-bound: the sampled images are a median {sizes.median_megapixels:.1f} MP "
        f"({sizes.progressive} of {sizes.records} progressive); decoding one whole takes "
        f"{seconds * 1e3:.1f} ms on a core, and each core spent {1e3 / rate_per_core:.1f} ms "
        f"per image here. "
        f"Rebuild with `inception-data build --max-size {sizes.max_size}`; `inception-data "
        f"inspect` measures what it would save on your shards (docs/building.md: \"Real photo "
        f"collections\").")
