"""The `inception-data` command. Thin: parses options, then calls pipelines / the library.

Options this command does not know (e.g. `--runner DataflowRunner --project P`) are passed to
Beam untouched.
"""

from __future__ import annotations

import logging
import os
import sys

import click

import inception_data

# TensorFlow's C++ start-up chatter buries the messages that matter; set before TensorFlow is
# imported here or in any worker process (they inherit the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_BEAM = {"ignore_unknown_options": True, "allow_extra_args": True}


class ShardCount(click.ParamType):
    """A positive integer or `auto` (about 1024 images per shard)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or str(value).lower() == "auto":
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not a positive integer or 'auto'", param, ctx)
        return number


def _read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        return handle.read().decode()


def _warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


@click.group()
@click.version_option(inception_data.__version__)
def main():
    """Turn image folders into sharded TFRecords for Inception, and inspect them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


@main.command(context_settings=_BEAM)
@click.option("--train-dir", required=True, help="DIR/<label>/<image> tree (local or gs://).")
@click.option("--validation-dir", help="Validation tree with the same labels.")
@click.option("--output-dir", required=True, help="Where shards, labels.txt, manifest go.")
@click.option("--labels-file", help="One label per line, line i = label i. Default: sorted "
                                    "sub-directory names of --train-dir.")
@click.option("--shards", type=ShardCount(), default="auto", show_default=True,
              help="Training shards, or auto (about 1024 images per shard).")
@click.option("--validation-shards", type=ShardCount(), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle.")
@click.option("--verify", type=click.Choice(["fast", "decode"]), default="fast",
              show_default=True, help="fast: header + end-of-image marker; decode: full decode.")
@click.option("--exif-orientation", type=click.Choice(["apply", "ignore"]), default="apply",
              show_default=True, help="Rotate JPEGs with an EXIF orientation upright.")
@click.option("--max-rejects", type=float, help="Fail when more files are rejected per split: "
                                               "a count (>= 1) or a fraction (< 1).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier build in --output-dir.")
@click.option("--resume", is_flag=True, help="Finish an interrupted build: keep its committed "
                                             "shards, write the missing ones.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--workers", type=int, help="Local worker processes (default: one process below "
                                          "~1 GB of input, one per core above).")
@click.pass_context
def build(ctx, train_dir, validation_dir, output_dir, labels_file, shards, validation_shards,
          seed, verify, exif_orientation, max_rejects, overwrite, progress, workers,
          resume=False):
    """Convert class-per-directory image trees into sharded tf.Example TFRecords."""
    _run_build(train_dir, validation_dir, output_dir, labels_file, ctx.args, shards=shards,
               validation_shards=validation_shards, seed=seed, verify=verify,
               exif_orientation=exif_orientation, max_rejects=max_rejects, overwrite=overwrite,
               progress=progress, workers=workers, resume=resume)


def _run_build(train_dir, validation_dir, output_dir, labels_file, beam_args, *, shards=None,
               validation_shards=None, seed=0, verify="fast", exif_orientation="apply",
               max_rejects=None, overwrite=False, progress=True, workers=None, resume=False):
    """`build` with the defaults of its options: also what `download ... --build` runs."""
    from inception_data import labels as labels_lib
    from pipelines import image_folder, launch, report

    roots = {"train": train_dir}
    split_shards = {"train": shards}
    if validation_dir:
        roots["validation"] = validation_dir
        split_shards["validation"] = validation_shards
    try:
        listed = {}  # a tree listed here for its labels is not listed again
        if labels_file:
            label_map = labels_lib.parse_labels(_read_text(labels_file), labels_file)
        else:
            listed["train"] = image_folder.class_directories(train_dir)
            label_map = labels_lib.from_directories(listed["train"])
        config = image_folder.BuildConfig(
            output_dir=output_dir.rstrip("/"), roots=roots, label_map=label_map,
            shards=split_shards, seed=seed, verify=verify, exif=exif_orientation,
            max_rejects=max_rejects, resume=resume)
        manifest = image_folder.run_build(config, beam_args, overwrite=overwrite,
                                          progress=progress, workers=workers, warn=_warn,
                                          listed=listed)
    except (labels_lib.LabelError, launch.LaunchError, report.TooManyRejects,
            FileNotFoundError) as err:
        _fail(str(err))
    _print_summary(manifest, output_dir)


def _build_downloaded(out_dir: str, progress: bool) -> None:
    """OUT/train + OUT/validation + OUT/labels.txt -> shards in OUT/tfrecords."""
    _run_build(os.path.join(out_dir, "train"), os.path.join(out_dir, "validation"),
               os.path.join(out_dir, "tfrecords"), os.path.join(out_dir, "labels.txt"), [],
               overwrite=True, progress=progress)


def _print_summary(manifest: dict | None, output_dir: str) -> None:
    from pipelines import launch

    if manifest is None:
        click.echo(f"the runner returned before the build finished (a template, or a job that "
                   f"runs on); {output_dir}/manifest.json appears when it is done")
        return
    for split, summary in manifest["splits"].items():
        click.echo(f"{split}: {summary['written']} written to {summary['num_shards']} shard(s), "
                   f"{summary['rejected']} rejected (see {output_dir}/{summary['rejects_file']})")
    click.echo(launch.summary_line(manifest))


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
        _fail(str(err))
    totals: dict = {}
    problems = []
    for path in files:
        report = inspection.inspect_shard(path, verify=verify, samples=samples)
        samples = max(0, samples - len(report.samples))
        click.echo(f"{path}: {report.records} records")
        for sample in report.samples:
            click.echo(f"  sample: {sample}")
        for key, count in report.per_class.items():
            totals[key] = totals.get(key, 0) + count
        problems += [f"{path}: {p}" for p in report.problems]
    click.echo(f"{sum(totals.values())} records in {len(files)} file(s); per class:")
    for (label, text), count in sorted(totals.items()):
        click.echo(f"  {label:5d} {text}: {count}")
    for problem in problems:
        click.secho(f"problem: {problem}", fg="red", err=True)
    if verify:
        click.echo(f"verify: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


@main.command(context_settings=_BEAM)
@click.argument("annotations_dir")
@click.option("--output", required=True, help="The CSV to write (local or gs://).")
@click.option("--synsets", "synsets_file", default=None,
              help="Keep only boxes of these synsets (default: the packaged 1000 ILSVRC-2012 "
                   "synsets; pass 'all' to keep every synset).")
@click.option("--workers", type=int, help="Local worker processes (default: one per core).")
@click.pass_context
def boxes(ctx, annotations_dir, output, synsets_file, workers):
    """ILSVRC XML annotations -> `name,xmin,ymin,xmax,ymax` CSV of normalised boxes."""
    from inception_data import labels as labels_lib
    from pipelines import bounding_boxes

    if synsets_file == "all":
        synsets = None
    else:
        text = (_read_text(synsets_file) if synsets_file
                else labels_lib.packaged_file(labels_lib.SYNSETS_FILE))
        synsets = labels_lib.parse_labels(text, synsets_file or labels_lib.SYNSETS_FILE).names
    summary = bounding_boxes.run(annotations_dir, output, synsets, ctx.args, workers)
    click.echo(f"{summary['xml_files']} XML files: wrote {summary['boxes']} boxes for "
               f"{summary['images_with_boxes']} images to {output}; dropped "
               f"{summary['dropped_boxes']} boxes, {summary['unreadable_files']} unreadable "
               f"files (see {bounding_boxes.report_path(output)})")


@main.command("relabel-validation")
@click.argument("val_dir")
@click.option("--labels", "labels_file", default=None,
              help="Validation labels, line i = synset of ILSVRC2012_val_%08d.JPEG (default: "
                   "the packaged ILSVRC-2012 file).")
@click.option("--mode", type=click.Choice(["move", "copy", "link"]), default="move",
              show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
def relabel_validation(val_dir, labels_file, mode, dry_run):
    """Sort a flat ImageNet validation folder into synset sub-folders (idempotent)."""
    from inception_data import labels as labels_lib
    from inception_data import relabel

    text = _read_text(labels_file) if labels_file else labels_lib.packaged_file(
        labels_lib.VALIDATION_FILE)
    synsets = [line.strip() for line in text.splitlines() if line.strip()]
    plan = relabel.plan(val_dir, synsets)
    for name in plan.missing[:10]:
        click.secho(f"missing: {name}", fg="yellow", err=True)
    for path in plan.unexpected[:10]:
        click.secho(f"unexpected (left alone): {path}", fg="yellow", err=True)
    click.echo(f"{len(synsets)} labelled images: {plan.in_place} already in place, "
               f"{len(plan.actions)} to {mode} ({plan.misplaced} in a wrong folder), "
               f"{len(plan.missing)} missing; {len(plan.unexpected)} unexpected file(s)")
    if not plan.actions:
        click.echo("nothing to do")
        return
    if dry_run:
        for source, destination in plan.actions[:20]:
            click.echo(f"would {mode} {source} -> {destination}")
        click.echo("dry run: nothing changed")
        return
    try:
        done = relabel.apply(plan.actions, mode, val_dir)
    except (FileExistsError, ValueError) as err:
        _fail(str(err))
    click.echo(f"placed {done} file(s)")


@main.command(context_settings=_BEAM)
@click.option("--train-dir", help="ILSVRC train/<synset>/*.JPEG tree.")
@click.option("--train-tar", help="ILSVRC2012_img_train.tar (a tar of per-synset tars), read "
                                  "without extracting.")
@click.option("--validation-dir", help="Flat folder of ILSVRC2012_val_*.JPEG or synset "
                                       "sub-folders (detected).")
@click.option("--validation-tar", help="ILSVRC2012_img_val.tar, read without extracting.")
@click.option("--bounding-boxes", help="CSV written by `inception-data boxes`.")
@click.option("--output-dir", required=True)
@click.option("--train-shards", type=ShardCount(), default="1024", show_default=True)
@click.option("--validation-shards", type=ShardCount(), default="128", show_default=True)
@click.option("--synsets-file", help="Default: the packaged 1000 ILSVRC-2012 synsets.")
@click.option("--metadata-file", help="synset<TAB>text; default: the packaged file.")
@click.option("--validation-labels-file", help="Default: the packaged ILSVRC-2012 file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--verify", type=click.Choice(["fast", "decode"]), default="fast",
              show_default=True)
@click.option("--exif-orientation", type=click.Choice(["apply", "ignore"]), default="apply",
              show_default=True)
@click.option("--max-rejects", type=float)
@click.option("--overwrite", is_flag=True)
@click.option("--resume", is_flag=True, help="Finish an interrupted build.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--workers", type=int)
@click.pass_context
def imagenet(ctx, train_dir, train_tar, validation_dir, validation_tar, bounding_boxes,
             output_dir, train_shards, validation_shards, synsets_file, metadata_file,
             validation_labels_file, seed, verify, exif_orientation, max_rejects, overwrite,
             resume, progress, workers):
    """Build ImageNet TFRecords (synsets, human text, boxes) from trees or the original tars."""
    from inception_data import labels as labels_lib
    from pipelines import image_folder, imagenet as imagenet_lib, launch, report

    if train_dir and train_tar or validation_dir and validation_tar:
        _fail("give either --train-dir or --train-tar (and either --validation-dir or "
              "--validation-tar), not both")
    train, validation = train_dir or train_tar, validation_dir or validation_tar
    if not train and not validation:
        _fail("nothing to build: give --train-dir/--train-tar and/or "
              "--validation-dir/--validation-tar")

    def text_of(path, packaged):
        return _read_text(path) if path else labels_lib.packaged_file(packaged)

    try:
        label_map = labels_lib.parse_labels(text_of(synsets_file, labels_lib.SYNSETS_FILE),
                                            synsets_file or labels_lib.SYNSETS_FILE)
        texts = imagenet_lib.parse_metadata(text_of(metadata_file, labels_lib.METADATA_FILE))
        val_synsets = text_of(validation_labels_file, labels_lib.VALIDATION_FILE).split()
        roots = {s: r for s, r in (("train", train), ("validation", validation)) if r}
        shards = {"train": train_shards, "validation": validation_shards}
        config = image_folder.BuildConfig(
            output_dir=output_dir.rstrip("/"), roots=roots, label_map=label_map,
            shards={s: shards[s] for s in roots}, seed=seed, verify=verify,
            exif=exif_orientation, max_rejects=max_rejects, resume=resume)
        inputs = imagenet_lib.ImagenetInputs(train, bool(train_tar), validation,
                                             bool(validation_tar), bounding_boxes)
        manifest = imagenet_lib.run_imagenet(
            config, inputs, texts, val_synsets, ctx.args, overwrite=overwrite,
            progress=progress, workers=workers, warn=_warn)
    except (labels_lib.LabelError, launch.LaunchError, report.TooManyRejects,
            FileNotFoundError) as err:
        _fail(str(err))
    _print_summary(manifest, output_dir)


@main.group()
def download():
    """Fetch flowers, MNIST or CIFAR-10, or check the ILSVRC-2012 archives you downloaded."""


@download.command("flowers")
@click.argument("out_dir")
@click.option("--url", default=None, help="Default: the flower_photos.tgz the original used.")
@click.option("--sha256", help="Also check the archive against this digest.")
@click.option("--validation-per-class", type=int, default=100, show_default=True)
@click.option("--build", "then_build", is_flag=True,
              help="Then build shards into OUT_DIR/tfrecords.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def download_flowers(out_dir, url, sha256, validation_per_class, then_build, progress):
    """Download the flower photos and split them into train/ and validation/."""
    from inception_data import download as download_lib

    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(os.path.join(out_dir, "labels.txt")):
        click.echo(f"{out_dir} already holds the split flowers (labels.txt exists)")
    else:
        archive = os.path.join(out_dir, "flower_photos.tgz")
        try:
            download_lib.fetch(url or download_lib.FLOWERS_URL, archive, sha256=sha256,
                               expected_size=None if url else download_lib.FLOWERS_SIZE,
                               progress=progress)
            extracted = download_lib.extract(archive, out_dir)
            counts = download_lib.split_classes(extracted, out_dir, validation_per_class)
        except download_lib.DownloadError as err:
            _fail(str(err))
        import shutil

        shutil.rmtree(extracted)
        for name, (train, val) in counts.items():
            click.echo(f"  {name}: {train} train, {val} validation")
        click.echo(f"{sum(t for t, _ in counts.values())} train and "
                   f"{sum(v for _, v in counts.values())} validation images in {out_dir}")
    if then_build:
        _build_downloaded(out_dir, progress)


def _classic(name: str, convert, out_dir: str, url: str | None, md5: bool, then_build: bool,
             progress: bool) -> None:
    from inception_data import download as download_lib

    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(os.path.join(out_dir, "labels.txt")):  # written last: the tree is complete
        click.echo(f"{out_dir} already holds the {name} tree (labels.txt exists)")
    else:
        try:
            counts = convert(out_dir, check_md5=md5, progress=progress,
                             **({"url": url} if url else {}))
        except download_lib.DownloadError as err:
            _fail(str(err))
        click.echo(f"{counts['train']} train and {counts['validation']} validation (the "
                   f"official test set) {name} images in {out_dir}")
    if then_build:
        _build_downloaded(out_dir, progress)


_CLASSIC_OPTIONS = [
    click.argument("out_dir"),
    click.option("--url", default=None, help="Another location of the original files."),
    click.option("--md5/--no-md5", default=True, show_default=True,
                 help="Check the published MD5 digests (--no-md5: for a mirror of other files)."),
    click.option("--build", "then_build", is_flag=True,
                 help="Then build shards into OUT_DIR/tfrecords."),
    click.option("--progress/--no-progress", default=True, show_default=True),
]


def _classic_options(command):
    for option in reversed(_CLASSIC_OPTIONS):
        command = option(command)
    return command


@download.command("mnist")
@_classic_options
def download_mnist(out_dir, url, md5, then_build, progress):
    """Download MNIST (idx files) into OUT_DIR/train|validation/<digit>/<index>.png."""
    from inception_data import classic

    _classic("MNIST", classic.mnist, out_dir, url, md5, then_build, progress)


@download.command("cifar10")
@_classic_options
def download_cifar10(out_dir, url, md5, then_build, progress):
    """Download CIFAR-10 (python tarball) into OUT_DIR/train|validation/<class>/<index>.png."""
    from inception_data import classic

    _classic("CIFAR-10", classic.cifar10, out_dir, url, md5, then_build, progress)


@download.command("imagenet")
@click.argument("folder", required=False)
@click.option("--md5/--no-md5", default=True, show_default=True,
              help="Check MD5 digests (minutes for the 138 GB training tar).")
def download_imagenet(folder, md5):
    """Say which ILSVRC-2012 archives to get, and check the ones in FOLDER."""
    from inception_data import download as download_lib

    click.echo("ImageNet needs a registered account: sign in at image-net.org, accept the terms, "
               "and download these ILSVRC-2012 archives (do not extract them):")
    for archive in download_lib.IMAGENET_ARCHIVES:
        digest = f"md5 {archive.md5}" if archive.md5 else "md5 not published here"
        click.echo(f"  {archive.name:34s} {archive.what} ({digest})")
    click.echo("then: inception-data imagenet --train-tar ILSVRC2012_img_train.tar "
               "--validation-tar ILSVRC2012_img_val.tar --output-dir OUT")
    if not folder:
        return
    bad = 0
    for archive, status in download_lib.check_imagenet(folder, md5):
        bad += status.startswith("BAD")
        click.echo(f"{archive.name}: {status}")
    if bad:
        sys.exit(1)


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
        _fail(str(err))
    rate, images = throughput.images_per_second(dataset, batches=batches)
    cores = os.cpu_count() or 1
    mode = "eval" if evaluation else f"train, distortions={distortions}"
    click.echo(f"{rate:.1f} images/s ({rate / cores:.1f} per core, {cores} cores) over {images} "
               f"images; {mode}, batch {batch_size}, image size {image_size}")


if __name__ == "__main__":
    main()
