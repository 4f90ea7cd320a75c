"""The sequence example: the TFRecord format every room reads (docs/architecture.md contract 1).

Each record is a ``tf.train.Example`` with:

- ``user_id`` (bytes): the user's id as in the raw data;
- ``item_ids`` (int64 list): the user's items mapped through the item vocabulary,
  oldest first, truncated to the most recent ``max_len``;
- ``timestamps`` (int64 list, optional): one per item;
- ``label`` (int64, attribute-task examples only): a class id of the label vocabulary;
- ``target_item_ids`` (int64 list, cold-start task examples only): target-domain items
  mapped through the target vocabulary, oldest first.

Files are GZIP-compressed TFRecords under ``Split-<name>/`` folders, the layout of a TFX
Examples artifact, so StatisticsGen and friends read them as they are.
"""

import os
from typing import Dict, Iterable, Optional, Sequence

FORMAT_VERSION = 1

USER_ID = "user_id"
ITEM_IDS = "item_ids"
TIMESTAMPS = "timestamps"
LABEL = "label"
TARGET_ITEM_IDS = "target_item_ids"

SPLITS = ("train", "eval", "test")
COMPRESSION = "GZIP"
FILE_PREFIX = "data_tfrecord"


def split_dir(root: str, split: str) -> str:
    """Returns the folder holding one split's files (TFX's ``Split-<name>`` layout)."""
    return os.path.join(root, f"Split-{split}")


def split_file_pattern(root: str, split: str) -> str:
    """Returns a glob matching one split's TFRecord files."""
    return os.path.join(split_dir(root, split), f"{FILE_PREFIX}-*")


def make_example(user_id: str, item_ids: Sequence[int], timestamps: Optional[Sequence[int]] = None,
                 label: Optional[int] = None, target_item_ids: Optional[Sequence[int]] = None):
    """Builds one ``tf.train.Example`` in this format."""
    import tensorflow as tf

    def int64_list(values: Iterable[int]):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    features = {
        USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(user_id).encode("utf-8")])),
        ITEM_IDS: int64_list(item_ids),
    }
    if timestamps is not None:
        if len(timestamps) != len(item_ids):
            raise ValueError(f"{len(timestamps)} timestamps for {len(item_ids)} items (user {user_id})")
        features[TIMESTAMPS] = int64_list(timestamps)
    if label is not None:
        features[LABEL] = int64_list([label])
    if target_item_ids is not None:
        features[TARGET_ITEM_IDS] = int64_list(target_item_ids)
    return tf.train.Example(features=tf.train.Features(feature=features))


def feature_spec(with_label: bool = False, with_targets: bool = False,
                 with_timestamps: bool = False) -> Dict[str, object]:
    """Returns the ``tf.io.parse_example`` spec; list features parse as ``tf.RaggedTensor``."""
    import tensorflow as tf

    spec = {
        USER_ID: tf.io.FixedLenFeature([], tf.string),
        ITEM_IDS: tf.io.RaggedFeature(tf.int64),
    }
    if with_timestamps:
        spec[TIMESTAMPS] = tf.io.RaggedFeature(tf.int64)
    if with_label:
        spec[LABEL] = tf.io.FixedLenFeature([], tf.int64)
    if with_targets:
        spec[TARGET_ITEM_IDS] = tf.io.RaggedFeature(tf.int64)
    return spec


def read_examples(root: str, split: str):
    """Yields the parsed ``tf.train.Example`` protos of one split (for tests and tools)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(split_file_pattern(root, split)))
    for raw in tf.data.TFRecordDataset(files, compression_type=COMPRESSION):
        yield tf.train.Example.FromString(raw.numpy())


def example_to_dict(example) -> Dict[str, object]:
    """Turns a ``tf.train.Example`` of this format into plain Python values."""
    feature = example.features.feature
    out: Dict[str, object] = {USER_ID: feature[USER_ID].bytes_list.value[0].decode("utf-8"),
                              ITEM_IDS: list(feature[ITEM_IDS].int64_list.value)}
    if TIMESTAMPS in feature:
        out[TIMESTAMPS] = list(feature[TIMESTAMPS].int64_list.value)
    if LABEL in feature:
        out[LABEL] = feature[LABEL].int64_list.value[0]
    if TARGET_ITEM_IDS in feature:
        out[TARGET_ITEM_IDS] = list(feature[TARGET_ITEM_IDS].int64_list.value)
    return out
