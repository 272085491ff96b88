"""Joining boxes to images by file name, once per build.

In: a boxes CSV (`name,xmin,ymin,xmax,ymax`, from `inception-data boxes`) and Items. Out: the
same Items with `boxes` set (sorted: the order in the CSV must not change the bytes).

Distributed builds join with a CoGroupByKey on the file name (`AttachBoxes`), so no worker holds
all 615k ImageNet boxes. Local builds read the CSV once, in the launcher, into an on-disk SQLite
index in the build's scratch directory (`index_boxes`); each shard group then looks up only its
own images (`BoxLookup`). Beam's local runner has no join that does not hold both sides in
memory, and the previous way - every shard group scanning the whole CSV - read it ~313 times
for ImageNet. sqlite3 is in the standard library and its file is shared by the local workers.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import boxes as boxes_lib


def index_boxes(csv_path: str, index_path: str) -> int:
    """Reads the CSV (local or gs://) once into a SQLite file; returns the number of boxes.
    Raises ValueError naming the CSV line that is not `name,xmin,ymin,xmax,ymax`."""
    with FileSystems.open(csv_path) as raw, sqlite3.connect(index_path) as db:
        db.execute("CREATE TABLE boxes (name TEXT, xmin REAL, ymin REAL, xmax REAL, ymax REAL)")
        rows = ((name, *coords) for name, coords in
                boxes_lib.read_csv(io.TextIOWrapper(raw, encoding="utf-8"), csv_path))
        db.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("CREATE INDEX by_name ON boxes (name)")
        count = db.execute("SELECT COUNT(*) FROM boxes").fetchone()[0]
    return count


class BoxLookup:
    """Read-only lookups in an index_boxes() file."""

    def __init__(self, index_path: str):
        # check_same_thread=False: Beam's SDK worker runs a DoFn's bundles and its teardown on
        # threads of its own pool, so the connection opened for one bundle is closed on
        # another thread; sqlite3 refused that ("SQLite objects created in a thread can only
        # be used in that same thread"), and the worker then exited with code 1 after every
        # local ImageNet build with boxes. One DoFn instance runs one bundle at a time, and the
        # connection is read-only.
        self._db = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True,
                                   check_same_thread=False)

    def attach(self, items: Iterable) -> list:
        """The items with their boxes, sorted by coordinates."""
        query = "SELECT xmin, ymin, xmax, ymax FROM boxes WHERE name = ?"
        return [item._replace(boxes=tuple(sorted(self._db.execute(query, (item.name,)))))
                for item in items]

    def close(self) -> None:
        self._db.close()


def _with_boxes(joined):
    _, grouped = joined
    # sorted: the order of grouped values is not defined, and reruns must be byte-identical
    found = tuple(sorted(coords for coords in grouped["boxes"]))
    for shard, item in grouped["items"]:
        yield shard, item._replace(boxes=found)


class AttachBoxes(beam.PTransform):
    """((split, shard, num), Item | None) + a boxes CSV -> the same with each image's boxes."""

    def __init__(self, csv_path: str):
        super().__init__()
        self._csv_path = csv_path

    def expand(self, assigned):
        boxes = (assigned.pipeline
                 | "ReadCsv" >> beam.io.ReadFromText(self._csv_path)
                 | "ParseCsv" >> beam.Map(boxes_lib.parse_csv_line))  # (name, coords)
        placeholders = assigned | "Placeholders" >> beam.Filter(lambda kv: kv[1] is None)
        items = (assigned
                 | "Items" >> beam.Filter(lambda kv: kv[1] is not None)
                 | "ByName" >> beam.Map(lambda kv: (kv[1].name, kv)))
        joined = ({"items": items, "boxes": boxes}
                  | "Join" >> beam.CoGroupByKey()
                  | "Attach" >> beam.FlatMap(_with_boxes))
        return (joined, placeholders) | "Merge" >> beam.Flatten()
