"""Tests of peterrec.trainer.data: parsing, left padding, task flavours, vocabulary checks."""

import numpy as np
import pytest

import peterrec  # noqa: F401  (selects tf-keras before TensorFlow loads)
from peterrec.components import example_format, ids
from peterrec.trainer import data, tiny_examples


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """A handmade Examples folder with known sequences, labels and targets."""
    root = str(tmp_path_factory.mktemp("handmade"))
    sequences = {"a": [5, 6, 7, 8, 9, 10], "b": [11], "c": [], "d": [4, 5, 6]}
    labels = {"a": 1, "b": 0, "c": 1, "d": 0}
    targets = {"a": [1, 2], "b": [3], "c": [1, 2, 3], "d": [2]}
    examples = [example_format.make_example(u, s, label=labels[u], target_item_ids=targets[u])
                for u, s in sequences.items()]
    tiny_examples.write_split_files(root, "train", examples, num_shards=1)
    return root, sequences, labels, targets


def _collect(dataset):
    rows = []
    for batch in dataset:
        columns = {k: v.numpy() for k, v in batch.items()}
        for i in range(len(columns["item_ids"])):
            rows.append({k: v[i] for k, v in columns.items()})
    return rows


def test_left_pad_keeps_most_recent_items_and_pads_in_front(handmade):
    root, sequences, _, _ = handmade
    rows = _collect(data.sequence_dataset(root, "train", batch_size=3, max_len=4, keep_user_id=True))
    by_user = {r["user_id"].decode(): r["item_ids"] for r in rows}
    assert set(by_user) == set(sequences)
    for user, sequence in sequences.items():
        expected = ([ids.PAD_ID] * 4 + sequence)[-4:]
        np.testing.assert_array_equal(by_user[user], expected)
        assert by_user[user].dtype == np.int32


def test_classification_and_cold_start_flavours(handmade):
    root, sequences, labels, targets = handmade
    rows = _collect(data.sequence_dataset(root, "train", 4, 8, kind="classification", keep_user_id=True))
    assert {r["user_id"].decode(): int(r["label"]) for r in rows} == labels
    rows = _collect(data.sequence_dataset(root, "train", 4, 8, kind="cold_start", keep_user_id=True))
    for row in rows:
        user = row["user_id"].decode()
        width = len(row["target_item_ids"])
        assert width == 3  # padded to the longest row of the batch
        np.testing.assert_array_equal(row["target_item_ids"], targets[user] + [ids.PAD_ID] * (width - len(targets[user])))


def test_as_supervised_pairs_and_wrong_kind(handmade):
    root, _, labels, _ = handmade
    dataset = data.as_supervised(data.sequence_dataset(root, "train", 4, 5, kind="classification"), "classification")
    features, target = next(iter(dataset))
    assert list(features) == ["item_ids"]
    assert features["item_ids"].shape == (4, 5)
    assert sorted(target.numpy().tolist()) == sorted(labels.values())
    with pytest.raises(data.DataError):
        data.as_supervised(dataset, None)


def test_ids_outside_the_vocabulary_fail_clearly(handmade):
    import tensorflow as tf

    root, _, _, _ = handmade
    with pytest.raises(tf.errors.InvalidArgumentError, match="another vocabulary"):
        for _ in data.sequence_dataset(root, "train", 4, 5, vocab_size=8):
            pass
    with pytest.raises(tf.errors.InvalidArgumentError, match="label id"):
        for _ in data.sequence_dataset(root, "train", 4, 5, kind="classification", num_outputs=1):
            pass


def test_missing_split_and_bad_kind(handmade):
    root, _, _, _ = handmade
    with pytest.raises(data.DataError, match="Split-eval"):
        data.sequence_dataset(root, "eval", 2, 4)
    with pytest.raises(data.DataError, match="kind"):
        data.sequence_dataset(root, "train", 2, 4, kind="ranking")


def test_shuffle_is_seeded_and_file_patterns_work(tmp_path):
    dataset = tiny_examples.write_tiny_dataset(str(tmp_path), num_users=40)
    files = data.split_files(dataset.pretrain_examples, "train")
    assert len(files) == 2
    first = [b["item_ids"].numpy().tolist() for b in data.dataset_from_files(files, 8, 6, shuffle=True, seed=3)]
    again = [b["item_ids"].numpy().tolist() for b in data.dataset_from_files(files, 8, 6, shuffle=True, seed=3)]
    plain = [b["item_ids"].numpy().tolist() for b in data.dataset_from_files(files, 8, 6)]
    assert first == again
    assert sorted(sum(first, [])) == sorted(sum(plain, []))
    pattern = example_format.split_file_pattern(dataset.pretrain_examples, "train")
    assert data.count_examples(pattern) == len(sum(plain, []))
    stats = data.sequence_stats(pattern, max_len=6)
    assert stats["examples"] == len(sum(plain, []))
    assert stats["positions"] == sum(int(np.sum(np.array(row) != ids.PAD_ID)) for row in sum(plain, []))
    declared = data.dataset_from_files(files, 8, 6, num_examples=len(sum(plain, [])))
    assert int(declared.cardinality()) == len(plain)
    # Every generated id lies inside the vocabulary the generator saved.
    assert max(max(row) for row in sum(plain, [])) < len(dataset.item_vocabulary)


def test_training_dataset_orders_depend_only_on_seed_and_epoch(tmp_path):
    dataset = tiny_examples.write_tiny_dataset(str(tmp_path), num_users=40)
    files = data.split_files(dataset.pretrain_examples, "train")
    n = data.count_examples(files)

    def epochs(first, last):
        ds, steps = data.training_dataset(files, 8, 6, seed=5, first_epoch=first, last_epoch=last, num_examples=n)
        batches = [b["item_ids"].numpy().tolist() for b in ds]
        # Keras may iterate a dataset twice: a second iteration must give the same batches.
        assert [b["item_ids"].numpy().tolist() for b in ds] == batches
        assert len(batches) == (last - first) * steps == int(ds.cardinality())
        return [batches[i * steps:(i + 1) * steps] for i in range(last - first)]

    full = epochs(0, 3)
    assert epochs(1, 3) == full[1:]          # a resumed run sees the same epochs 1 and 2
    assert epochs(2, 3) == full[2:]
    assert full[0] != full[1]                # and epochs differ from each other
    assert sorted(sum(full[0], [])) == sorted(sum(full[1], []))  # each epoch is one pass
    ds, steps = data.training_dataset(files, 8, 6, first_epoch=0, last_epoch=2, steps_per_epoch=9, num_examples=n)
    assert steps == 9 and len(list(ds)) == 18
    ds, steps = data.training_dataset(files, 8, 6, first_epoch=0, last_epoch=1, steps_per_epoch=3)
    assert steps == 3 and len(list(ds)) == 3
    with pytest.raises(ValueError, match="num_examples"):
        data.training_dataset(files, 8, 6)

