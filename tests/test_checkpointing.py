"""Tests of peterrec.trainer.checkpointing: what the index names, retention, no rewrite in place,
and the clean-up of what a killed write leaves."""

import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.trainer import checkpointing


def _manager(directory, max_to_keep=2):
    import tensorflow as tf

    value = tf.Variable(np.zeros(3, np.float32))
    return checkpointing.AtomicCheckpointManager(tf.train.Checkpoint(value=value), str(directory),
                                                 max_to_keep=max_to_keep), value


def test_epoch_checkpoints_keep_the_newest_and_step_checkpoints_only_while_newest(tmp_path):
    import tensorflow as tf

    manager, value = _manager(tmp_path)
    assert manager.latest_checkpoint is None and manager.names() == []
    for name in ("ckpt-1-step-4", "ckpt-1", "ckpt-2-step-4", "ckpt-2-step-8"):
        manager.save(name=name)
    assert manager.names() == ["ckpt-1", "ckpt-2-step-8"]
    value.assign([1.0, 2.0, 3.0])
    assert manager.save(checkpoint_number=2) == str(tmp_path / "ckpt-2")
    manager.save(checkpoint_number=3)
    assert manager.names() == ["ckpt-2", "ckpt-3"]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-3")  # TensorFlow reads the index
    stems = {f.split(".index")[0].split(".data-")[0] for f in os.listdir(tmp_path) if f.startswith("ckpt-")}
    assert stems == {"ckpt-2", "ckpt-3"}, "dropped checkpoints are deleted"
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(tmp_path / "ckpt-2")).get_tensor(
        "value/.ATTRIBUTES/VARIABLE_VALUE"), [1.0, 2.0, 3.0])


def test_a_named_checkpoint_is_never_rewritten_in_place(tmp_path):
    manager, _ = _manager(tmp_path)
    manager.save(checkpoint_number=1)
    with pytest.raises(ValueError, match="named by the index"):
        manager.save(checkpoint_number=1)
    with pytest.raises(ValueError, match="checkpoint_number or name"):
        manager.save()


def test_leftovers_of_killed_writes_are_removed_and_named_checkpoints_kept(tmp_path):
    import tensorflow as tf

    manager, _ = _manager(tmp_path)
    manager.save(checkpoint_number=1)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "ckpt-1.index").write_text("another manager's")
    # What kills at each stage of a write leave: a staging folder, files in place but unnamed,
    # TensorFlow's temp folder and state files, and the index's temp file.
    staging = tmp_path / (checkpointing.STAGING_PREFIX + "ckpt-2")
    staging.mkdir()
    (staging / "ckpt-2.index").write_text("half")
    for name in ("ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-3.data-00000-of-00001.tempstate123",
                 "checkpoint.tmp5f2e"):
        (tmp_path / name).write_text("partial")
    (tmp_path / "ckpt-3_temp").mkdir()
    removed = manager.remove_leftovers()
    assert removed == sorted([".staging-ckpt-2", "checkpoint.tmp5f2e", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                              "ckpt-3.data-00000-of-00001.tempstate123", "ckpt-3_temp"])
    assert sorted(os.listdir(tmp_path)) == ["best", "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert tf.train.load_checkpoint(manager.latest_checkpoint) is not None
    assert manager.remove_leftovers() == []


def test_drop_unnames_then_deletes(tmp_path):
    manager, _ = _manager(tmp_path, max_to_keep=3)
    for number in (1, 2, 3):
        manager.save(checkpoint_number=number)
    assert manager.drop(lambda name: name != "ckpt-3") == ["ckpt-3"]
    assert manager.names() == ["ckpt-1", "ckpt-2"]
    assert not (tmp_path / "ckpt-3.index").exists()
    assert manager.drop(lambda name: False) == ["ckpt-1", "ckpt-2"]
    assert manager.latest_checkpoint is None and not (tmp_path / "checkpoint").exists()
