"""The sequence example format: building, parsing, the Split-* layout, and the pure-Python codec."""

import os

import pytest

from peterrec.components import example_codec, example_format


def _write(root, split, examples):
    import tensorflow as tf

    os.makedirs(example_format.split_dir(root, split), exist_ok=True)
    path = os.path.join(example_format.split_dir(root, split), f"{example_format.FILE_PREFIX}-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for example in examples:
            writer.write(example if isinstance(example, bytes) else example.SerializeToString())
    return path


CASES = [
    dict(user_id="u1", item_ids=[4, 5, 6], timestamps=[1, 2, 2]),
    dict(user_id="ü-2", item_ids=[], timestamps=[]),
    dict(user_id="3", item_ids=[7, 2**40], label=1),
    dict(user_id="4", item_ids=[9], target_item_ids=[1, 3], timestamps=[-5]),
]


@pytest.mark.parametrize("case", CASES)
def test_codec_bytes_parse_to_the_same_example_as_make_example(case):
    import tensorflow as tf

    encoded = example_codec.encode_example(**case)
    assert tf.train.Example.FromString(encoded) == example_format.make_example(**case)
    assert example_format.example_to_dict(tf.train.Example.FromString(encoded)) == {
        example_format.USER_ID: case["user_id"], example_format.ITEM_IDS: case["item_ids"],
        **({example_format.TIMESTAMPS: case["timestamps"]} if "timestamps" in case else {}),
        **({example_format.LABEL: case["label"]} if "label" in case else {}),
        **({example_format.TARGET_ITEM_IDS: case["target_item_ids"]} if "target_item_ids" in case else {})}


def test_codec_is_deterministic_and_checks_lengths():
    assert example_codec.encode_example("u", [1, 2], [3, 4]) == example_codec.encode_example("u", [1, 2], [3, 4])
    with pytest.raises(ValueError, match="timestamps"):
        example_codec.encode_example("u", [1, 2], [3])
    with pytest.raises(ValueError, match="timestamps"):
        example_format.make_example("u", [1, 2], [3])


def test_split_layout_and_read_examples(tmp_path):
    root = str(tmp_path)
    _write(root, "train", [example_format.make_example(**CASES[0]), example_codec.encode_example(**CASES[3])])
    assert example_format.split_dir(root, "train") == os.path.join(root, "Split-train")
    rows = [example_format.example_to_dict(e) for e in example_format.read_examples(root, "train")]
    assert [r["user_id"] for r in rows] == ["u1", "4"]
    assert rows[1]["target_item_ids"] == [1, 3]
    assert list(example_format.read_examples(root, "eval")) == []


def test_feature_spec_parses_ragged_sequences(tmp_path):
    import tensorflow as tf

    serialized = [example_codec.encode_example("a", [4, 5, 6], [1, 2, 3], label=1),
                  example_codec.encode_example("b", [7], [9], label=0)]
    parsed = tf.io.parse_example(serialized, example_format.feature_spec(with_label=True, with_timestamps=True))
    assert parsed[example_format.ITEM_IDS].to_list() == [[4, 5, 6], [7]]
    assert parsed[example_format.TIMESTAMPS].to_list() == [[1, 2, 3], [9]]
    assert parsed[example_format.LABEL].numpy().tolist() == [1, 0]
    assert parsed[example_format.USER_ID].numpy().tolist() == [b"a", b"b"]
    targets = tf.io.parse_example([example_codec.encode_example("c", [4], target_item_ids=[2, 1])],
                                  example_format.feature_spec(with_targets=True))
    assert targets[example_format.TARGET_ITEM_IDS].to_list() == [[2, 1]]
