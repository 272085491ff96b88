"""ILSVRC annotation XMLs -> the boxes CSV, as a Beam pipeline (544,546 files on the full set).

In: an annotations directory in the training layout (`<synset>/<image>.xml`) or the validation
layout (`ILSVRC2012_val_*.xml`, flat), local or gs://. Out: the CSV (`name,xmin,ymin,xmax,ymax`,
sorted by image name, boxes of an image in file order) and, next to it,
`<csv>.rejects.jsonl` listing every unreadable XML and every dropped box with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from inception_data import boxes, paths
from pipelines import atomic_files, runner

REPORT = "report"
_SYNSET = re.compile(r"^n\d{8}$")


_FILES = beam.metrics.Metrics.counter("boxes", "xml_files")


def _parse_file(readable, synsets):
    _FILES.inc()
    path = readable.metadata.path
    parent = path.rsplit("/", 2)[-2] if path.count("/") >= 1 else ""
    expected = parent if _SYNSET.match(parent) else None
    try:
        annotation = boxes.parse(readable.read(), path, synsets, expected)
    except boxes.AnnotationError as err:
        yield beam.pvalue.TaggedOutput(REPORT, {"path": path, "kind": "unreadable xml",
                                                "reason": str(err)})
        return
    for reason in annotation.dropped:
        yield beam.pvalue.TaggedOutput(REPORT, {"path": path, "kind": "dropped box",
                                                "reason": reason})
    for index, row in enumerate(boxes.csv_rows(annotation)):
        yield annotation.image, index, row


def _write_csv(rows, path):
    atomic_files.write_text(path, "".join(row + "\n" for _, _, row in sorted(rows)))
    return len(rows)


def _write_report(entries, path):
    rows = sorted(entries, key=lambda e: (e["path"], e["reason"]))
    atomic_files.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return len(rows)


def build(pipeline, annotations_dir: str, output: str, synsets: Sequence[str] | None) -> None:
    root = paths.glob_escape(annotations_dir.rstrip("/"))  # the folder itself, literally
    parsed = (pipeline
              | "Patterns" >> beam.Create([f"{root}/*.xml", f"{root}/*/*.xml"])
              | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)  # FileMetadata
              | "Spread" >> beam.Reshuffle()
              | "Read" >> fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED)
              | "Parse" >> beam.FlatMap(_parse_file, list(synsets) if synsets else None
                                        ).with_outputs(REPORT, main="rows"))  # (image, i, row)
    _ = (parsed.rows
         | "GatherRows" >> beam.combiners.ToList()  # ~30 MB of text for all of ImageNet
         | "WriteCsv" >> beam.Map(_write_csv, output))
    _ = (parsed[REPORT]
         | "GatherReport" >> beam.combiners.ToList()
         | "WriteReport" >> beam.Map(_write_report, report_path(output)))


def report_path(output: str) -> str:
    return output + ".rejects.jsonl"


def run(annotations_dir: str, output: str, synsets: Sequence[str] | None = None,
        beam_args: Sequence[str] = (), workers: int | None = None) -> dict:
    """Runs the pipeline; returns counts of XML files, boxes written, dropped, unreadable."""
    plan = runner.plan(beam_args)
    if plan.local_runner:
        plan = plan.with_workers(workers)
    pipeline = beam.Pipeline(runner=plan.runner(), options=plan.options)
    build(pipeline, annotations_dir, output, synsets)
    result = pipeline.run()
    result.wait_until_finish()
    files = result.metrics().query(beam.metrics.MetricsFilter().with_name("xml_files"))
    with FileSystems.open(report_path(output)) as handle:
        report = [json.loads(line) for line in handle.read().decode().splitlines()]
    with FileSystems.open(output) as handle:
        rows = handle.read().decode().splitlines()
    unreadable = sum(1 for r in report if r["kind"] == "unreadable xml")
    return {"xml_files": sum(c.committed or 0 for c in files["counters"]),
            "boxes": len(rows), "images_with_boxes": len({r.split(",", 1)[0] for r in rows}),
            "dropped_boxes": len(report) - unreadable, "unreadable_files": unreadable}
