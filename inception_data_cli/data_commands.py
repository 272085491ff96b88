"""`download` (flowers, MNIST, CIFAR-10, ImageNet) and `relabel-validation`: getting data into
the class-per-directory layout `build` reads."""

from __future__ import annotations

import os
import sys

import click

from inception_data_cli.messages import fail


def _build_downloaded(out_dir: str, progress: bool) -> None:
    """OUT/train + OUT/validation + OUT/labels.txt -> shards in OUT/tfrecords."""
    from inception_data.build_options import BuildOptions
    from inception_data_cli.build_commands import build_tree

    build_tree(os.path.join(out_dir, "train"), os.path.join(out_dir, "tfrecords"),
               validation_dir=os.path.join(out_dir, "validation"),
               labels_file=os.path.join(out_dir, "labels.txt"),
               options=BuildOptions(overwrite=True, progress=progress))


@click.command("relabel-validation")
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

    try:
        synsets = labels_lib.load_validation_labels(labels_file)
    except labels_lib.LabelError as err:
        fail(str(err))
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
        fail(str(err))
    click.echo(f"placed {done} file(s)")


@click.group()
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
            fail(str(err))
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
            fail(str(err))
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
    from inception_data import mnist_cifar

    _classic("MNIST", mnist_cifar.mnist, out_dir, url, md5, then_build, progress)


@download.command("cifar10")
@_classic_options
def download_cifar10(out_dir, url, md5, then_build, progress):
    """Download CIFAR-10 (python tarball) into OUT_DIR/train|validation/<class>/<index>.png."""
    from inception_data import mnist_cifar

    _classic("CIFAR-10", mnist_cifar.cifar10, out_dir, url, md5, then_build, progress)


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
