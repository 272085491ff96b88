"""TensorFlow Datasets metadata for a finished build, from its manifest alone (no data read).

`files(manifest)` returns the files `tfds.builder_from_directory(output_dir)` needs, in TFDS's
own formats: `dataset_info.json` (splits with shardLengths, numBytes and a filepathTemplate
matching our `train-00000-of-00128` names; supervised keys), `features.json` (one feature per
record key, with our keys as the feature names, so TFDS parses our records as they are) and the
ClassLabel's names file. Written by the launcher next to the manifest.

What TFDS's features cannot describe: our boxes are four coordinate lists
(`image/object/bbox/xmin` ...), the original scripts' layout, while TFDS's BBoxFeature is one
[N, 4] list per record; they are exposed as four float sequences (and the box labels as an int
sequence), not as a BBoxFeature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from inception_data import schema

TFDS_NAME = "inception_data"
FILEPATH_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}"
BACKGROUND_NAME = "background"
_CLASSES = "tensorflow_datasets.core.features"
DATASET_INFO, FEATURES = "dataset_info.json", "features.json"


def _scalar(dtype: str) -> dict:
    return {"pythonClassName": f"{_CLASSES}.scalar.Scalar",
            "tensor": {"dtype": dtype, "encoding": "none", "shape": {}}}


def _text() -> dict:
    return {"pythonClassName": f"{_CLASSES}.text_feature.Text", "text": {}}


def _sequence(dtype: str) -> dict:
    return {"pythonClassName": f"{_CLASSES}.sequence_feature.Sequence",
            "sequence": {"feature": _scalar(dtype), "length": "-1"}}


def _feature(key: str, num_classes: int) -> dict:
    if key == schema.ENCODED:
        return {"pythonClassName": f"{_CLASSES}.image_feature.Image",
                "image": {"dtype": "uint8", "encodingFormat": "jpeg",
                          "shape": {"dimensions": ["-1", "-1", "3"]}}}
    if key == schema.LABEL:
        return {"pythonClassName": f"{_CLASSES}.class_label_feature.ClassLabel",
                "classLabel": {"numClasses": str(num_classes)}}
    if key in (schema.HEIGHT, schema.WIDTH, schema.CHANNELS):
        return _scalar("int64")
    if key in (schema.BBOX_XMIN, schema.BBOX_YMIN, schema.BBOX_XMAX, schema.BBOX_YMAX):
        return _sequence("float32")
    if key == schema.BBOX_LABEL:
        return _sequence("int64")
    return _text()  # colorspace, format, filename, class text, synset


def class_names(manifest: Mapping) -> list[str]:
    """ClassLabel names in label order: label 0 is "background" when the build reserved it
    ("__background__" if a class is called "background")."""
    offset = manifest["label_offset"]
    names = [manifest["labels"][key] for key in sorted(manifest["labels"], key=int)]
    if offset:
        background = BACKGROUND_NAME if BACKGROUND_NAME not in names else f"__{BACKGROUND_NAME}__"
        names = [background] + names
    return names


def labels_file_name(key: str = schema.LABEL) -> str:
    """The file TFDS's ClassLabel reads its names from (`image.class.label.labels.txt`)."""
    return f"{key.replace('/', '.')}.labels.txt"


FILE_NAMES = (DATASET_INFO, FEATURES, labels_file_name())  # what files() writes


def _json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def files(manifest: Mapping) -> dict[str, str]:
    """{file name: text} (FILE_NAMES) of the TFDS metadata of the build described by a
    manifest this version wrote (report.commit_manifest, the only caller)."""
    names = class_names(manifest)
    keys = manifest["record_keys"]
    features = {"pythonClassName": f"{_CLASSES}.features_dict.FeaturesDict",
                "featuresDict": {"features": {key: _feature(key, len(names)) for key in keys}}}
    splits = []
    for split, summary in manifest["splits"].items():
        lengths = [summary["shards"][name] for name in sorted(summary["shards"])]
        splits.append({"name": split, "filepathTemplate": FILEPATH_TEMPLATE,
                       "numBytes": str(summary["bytes"]),
                       "shardLengths": [str(n) for n in lengths]})
    info = {
        "name": TFDS_NAME, "version": "1.0.0", "fileFormat": "tfrecord",
        "description": f"Written by inception-data {manifest['tool_version']} "
                       f"(schema {manifest['schema_version']}); see manifest.json.",
        "splits": splits,
        "supervisedKeys": {"tuple": {"items": [{"featureKey": schema.ENCODED},
                                               {"featureKey": schema.LABEL}]}},
    }
    return {DATASET_INFO: _json(info), FEATURES: _json(features),
            labels_file_name(): "".join(f"{name}\n" for name in names)}
