"""`build`, `imagenet` and `boxes`: the Beam pipelines' commands."""

from __future__ import annotations

import click

from inception_data.build_options import BuildOptions
from inception_data_cli.messages import fail, warn
from inception_data_cli.options import (
    BEAM_ARGS,
    ShardCount,
    beam_args,
    build_options,
    build_options_of,
)
from inception_data_cli.processes import run_and_report


def build_tree(train_dir: str, output_dir: str, *, validation_dir: str | None = None,
               labels_file: str | None = None, beam_args=(), shards: int | None = None,
               validation_shards: int | None = None,
               options: BuildOptions = BuildOptions()) -> None:
    """`build` as a function of its options: what `download --build` calls too."""
    from inception_data import labels as labels_lib
    from pipelines import image_folder

    roots, split_shards = {"train": train_dir}, {"train": shards}
    if validation_dir:
        roots["validation"], split_shards["validation"] = validation_dir, validation_shards

    def run():
        config = image_folder.BuildConfig(
            output_dir=output_dir.rstrip("/"), roots=roots, shards=split_shards,
            label_map=labels_lib.load_labels(labels_file) if labels_file else None,
            options=options)
        return image_folder.run_build(config, beam_args, warn=warn)

    run_and_report(run, output_dir)


@click.command(context_settings=BEAM_ARGS)
@click.option("--train-dir", required=True, help="DIR/<label>/<image> tree (local or gs://).")
@click.option("--validation-dir", help="Validation tree with the same labels.")
@click.option("--output-dir", required=True, help="Where shards, labels.txt, manifest go.")
@click.option("--labels-file", help="One label per line, line i = label i. Default: sorted "
                                    "sub-directory names of --train-dir.")
@click.option("--shards", type=ShardCount(), default="auto", show_default=True,
              help="Training shards, or auto (about 1024 images per shard).")
@click.option("--validation-shards", type=ShardCount(), default="auto", show_default=True)
@build_options
@click.pass_context
def build(ctx, train_dir, output_dir, validation_dir, labels_file, shards, validation_shards,
          **options):
    """Convert class-per-directory image trees into sharded tf.Example TFRecords."""
    build_tree(train_dir, output_dir, validation_dir=validation_dir, labels_file=labels_file,
               beam_args=beam_args(ctx), shards=shards, validation_shards=validation_shards,
               options=build_options_of(options))


@click.command(context_settings=BEAM_ARGS)
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
@build_options
@click.pass_context
def imagenet(ctx, train_dir, train_tar, validation_dir, validation_tar, bounding_boxes,
             output_dir, train_shards, validation_shards, synsets_file, metadata_file,
             validation_labels_file, **options):
    """Build ImageNet TFRecords (synsets, human text, boxes) from trees or the original tars."""
    from inception_data import labels as labels_lib
    from pipelines import builder
    from pipelines import imagenet as imagenet_lib

    extra = beam_args(ctx)
    if train_dir and train_tar or validation_dir and validation_tar:
        fail("give either --train-dir or --train-tar (and either --validation-dir or "
             "--validation-tar), not both")
    train, validation = train_dir or train_tar, validation_dir or validation_tar
    if not train and not validation:
        fail("nothing to build: give --train-dir/--train-tar and/or "
             "--validation-dir/--validation-tar")

    def run():
        roots = {s: r for s, r in (("train", train), ("validation", validation)) if r}
        shards = {"train": train_shards, "validation": validation_shards}
        config = builder.BuildConfig(
            output_dir=output_dir.rstrip("/"), roots=roots, shards={s: shards[s] for s in roots},
            label_map=labels_lib.load_labels(synsets_file), options=build_options_of(options))
        if validation:
            differs = labels_lib.validation_labels_differ(validation_labels_file)
            if differs:
                warn(differs)
        inputs = imagenet_lib.ImagenetInputs(train, bool(train_tar), validation,
                                             bool(validation_tar), bounding_boxes)
        return imagenet_lib.run_imagenet(
            config, inputs, labels_lib.load_metadata(metadata_file),
            labels_lib.load_validation_labels(validation_labels_file), extra, warn=warn)

    run_and_report(run, output_dir)


@click.command(context_settings=BEAM_ARGS)
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

    synsets = None if synsets_file == "all" else labels_lib.load_labels(synsets_file).names
    summary = bounding_boxes.run(annotations_dir, output, synsets, beam_args(ctx), workers)
    click.echo(f"{summary['xml_files']} XML files: wrote {summary['boxes']} boxes for "
               f"{summary['images_with_boxes']} images to {output}; dropped "
               f"{summary['dropped_boxes']} boxes, {summary['unreadable_files']} unreadable "
               f"files (see {bounding_boxes.report_path(output)})")
