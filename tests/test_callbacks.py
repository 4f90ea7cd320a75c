"""Tests of peterrec.trainer.callbacks: checkpoints with early-stopping state, logs, projector."""

import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.trainer import callbacks, runtime

runtime.skip_autograph_for_tf_keras()


def test_early_stopping_state_min_and_max():
    state = callbacks.EarlyStoppingState("val_loss", patience=2)
    assert state.mode == "min"
    assert state.update(1.0, 1) == (True, False)
    assert state.update(1.5, 2) == (False, False)
    assert state.update(0.5, 3) == (True, False)
    assert state.update(0.6, 4) == (False, False)
    assert state.update(0.7, 5) == (False, True)
    assert state.summary() == {"monitor": "val_loss", "best": 0.5, "best_epoch": 3, "stopped_early": True}
    never = callbacks.EarlyStoppingState("val_ndcg@10", patience=0)
    assert never.mode == "max"
    for epoch in range(1, 6):
        assert never.update(0.1, epoch)[1] is False
    with pytest.raises(ValueError):
        callbacks.EarlyStoppingState("val_loss", 1, mode="sideways")


def _tiny_model():
    import tf_keras as keras

    # Zero initialisation: predictions start at 0 and move monotonically towards the targets.
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,), kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_epoch_checkpoint_saves_state_and_stops(tmp_path):
    import tensorflow as tf

    model = _tiny_model()
    epoch = tf.Variable(0, dtype=tf.int64)
    state = callbacks.EarlyStoppingState("val_loss", patience=1)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch, early_stopping=state)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "ckpt"), max_to_keep=5)
    best = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path / "best"), max_to_keep=1)
    x = np.ones((8, 2), np.float32)
    # Validation targets that get worse as the model fits the training targets: stops after epoch 2.
    history = model.fit(x, np.ones(8), validation_data=(x, np.full(8, -1.0)), epochs=10, verbose=0,
                        callbacks=[callbacks.EpochCheckpoint(manager, epoch, state, best, verbose=0)])
    assert len(history.history["loss"]) == 2
    assert int(epoch.numpy()) == 2
    assert manager.latest_checkpoint.endswith("ckpt-2")
    assert best.latest_checkpoint.endswith("ckpt-1")
    # The state comes back from the checkpoint.
    fresh_state = callbacks.EarlyStoppingState("val_loss", patience=1)
    fresh_epoch = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(epoch=fresh_epoch, early_stopping=fresh_state).read(manager.latest_checkpoint).expect_partial()
    assert int(fresh_epoch.numpy()) == 2
    assert fresh_state.summary() == state.summary()
    assert fresh_state.summary()["stopped_early"] is True


def test_missing_monitor_is_a_clear_error(tmp_path):
    import tensorflow as tf

    model = _tiny_model()
    epoch = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(epoch=epoch), str(tmp_path), max_to_keep=1)
    state = callbacks.EarlyStoppingState("val_ndcg@10", patience=1)
    with pytest.raises(KeyError, match="val_ndcg@10"):
        model.fit(np.ones((4, 2)), np.zeros(4), epochs=1, verbose=0,
                  callbacks=[callbacks.EpochCheckpoint(manager, epoch, state, verbose=0)])


def test_history_log_and_interruption(tmp_path):
    model = _tiny_model()
    path = str(tmp_path / "logs" / "history.jsonl")
    with pytest.raises(InterruptedError, match="epoch 2"):
        model.fit(np.ones((4, 2)), np.zeros(4), epochs=5, verbose=0,
                  callbacks=[callbacks.HistoryLog(path), callbacks.RaiseAfterEpoch(2)])
    records = callbacks.read_history(path)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["seconds"] >= 0 and "loss" in r for r in records)
    assert callbacks.read_history(str(tmp_path / "none.jsonl")) == []


def test_hparams_files(tmp_path):
    import tensorflow as tf

    flat = callbacks.flatten_hparams({"backbone": {"dilations": (1, 2), "causal": True}, "lr": 1e-3, "x": None})
    assert flat == {"backbone.dilations": "[1, 2]", "backbone.causal": True, "lr": 1e-3, "x": "none"}
    model = _tiny_model()
    model.fit(np.ones((4, 2)), np.zeros(4), epochs=1, verbose=0,
              callbacks=[callbacks.hparams_callback(str(tmp_path), {"lr": 0.01, "name": "t"})])
    events = tf.io.gfile.glob(str(tmp_path / "events.out.tfevents.*"))
    assert events
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}
    assert "_hparams_/session_start_info" in tags


def test_projector_files(tmp_path):
    import tensorflow as tf

    tokens = ["<pad>", "tab\there", "item9"]
    embeddings = np.arange(12, dtype=np.float32).reshape(3, 4)
    folder = callbacks.write_embedding_projector(str(tmp_path), embeddings, tokens)
    assert folder == str(tmp_path / callbacks.PROJECTOR_RUN)
    with open(os.path.join(folder, "metadata.tsv")) as handle:
        assert handle.read().splitlines() == ["<pad>", "tab here", "item9"]
    with open(os.path.join(folder, "projector_config.pbtxt")) as handle:
        config = handle.read()
    assert "item_embedding/.ATTRIBUTES/VARIABLE_VALUE" in config and "metadata.tsv" in config
    reader = tf.train.load_checkpoint(folder)
    np.testing.assert_array_equal(reader.get_tensor("item_embedding/.ATTRIBUTES/VARIABLE_VALUE"), embeddings)
    assert len(tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*"))) == 1, "the folder is a run"
    callbacks.write_embedding_projector(str(tmp_path), embeddings * 2, tokens)  # a resumed run writes it again
    assert len(tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*"))) == 1
    np.testing.assert_array_equal(tf.train.load_checkpoint(folder).get_tensor(
        "item_embedding/.ATTRIBUTES/VARIABLE_VALUE"), embeddings * 2)
    with pytest.raises(ValueError, match="tokens"):
        callbacks.write_embedding_projector(str(tmp_path), embeddings, tokens[:2])


def test_projector_rows_are_labelled_by_title_where_there_is_one(tmp_path):
    tokens = ["<pad>", "1", "2"]
    titles = {"1": "Toy Story (1995)", "3": "not in the vocabulary"}
    folder = callbacks.write_embedding_projector(str(tmp_path), np.zeros((3, 2), np.float32), tokens, titles=titles)
    with open(os.path.join(folder, "metadata.tsv")) as handle:
        assert handle.read().splitlines() == ["title\titem", "<pad>\t<pad>", "Toy Story (1995)\t1", "2\t2"]


@pytest.mark.parametrize("opened_on", ["run", "root"])
def test_tensorboards_projector_plugin_finds_the_embeddings(tmp_path, opened_on):
    """TensorBoard's own projector plugin, on the run's log dir or on a root two levels above it."""
    import json

    import tensorflow as tf
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins.base_plugin import TBContext
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    log_dir = tmp_path / "Trainer" / "7" / "logs"
    with tf.summary.create_file_writer(str(log_dir / "train")).as_default():  # a scalars run beside it
        tf.summary.scalar("epoch_loss", 1.0, step=0)
    callbacks.write_embedding_projector(str(log_dir), np.ones((3, 2), np.float32), ["<pad>", "a", "b"])
    logdir = str(log_dir if opened_on == "run" else tmp_path)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    context = TBContext(logdir=logdir, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir))
    apps = ProjectorPlugin(context).get_plugin_apps()
    runs = json.loads(Client(apps["/runs"]).get("/runs").get_data())
    expected = "projector" if opened_on == "run" else "Trainer/7/logs/projector"
    assert runs == [expected]
    info = json.loads(Client(apps["/info"]).get("/info", query_string={"run": expected}).get_data())
    [embedding] = info["embeddings"]
    assert embedding["tensorName"] == "item_embedding/.ATTRIBUTES/VARIABLE_VALUE"
    assert embedding["tensorShape"] == [3, 2] and embedding["metadataPath"] == "metadata.tsv"


def test_autograph_rule_for_tf_keras_is_installed_once():
    from tensorflow.python.autograph.core import config

    runtime.skip_autograph_for_tf_keras()
    matching = [rule for rule in config.CONVERSION_RULES if rule.matches("tf_keras")]
    assert len(matching) == 1 and "DoNotConvert" in type(matching[0]).__name__
