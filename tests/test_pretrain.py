"""Tests of peterrec.trainer.pretrain: a full tiny run, resume after a crash, early stopping,
vocabulary checks, config validation."""

import dataclasses
import json
import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.components.vocabulary import Vocabulary, VocabularyMismatchError
from peterrec.trainer import artifacts, callbacks, tiny_examples
from peterrec.trainer.config import BackboneConfig
from peterrec.trainer.pretrain import PretrainConfig, RunMismatchError, pretrain


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_examples.write_tiny_dataset(str(tmp_path_factory.mktemp("tiny")), num_users=60, num_items=30)


def _config(**overrides):
    base = PretrainConfig(backbone=BackboneConfig(vocab_size=0, embedding_dim=16, dilations=(1, 2)),
                          batch_size=16, epochs=2, max_len=12, early_stopping_patience=0, verbose=0)
    return dataclasses.replace(base, **overrides)


def test_pretrain_writes_export_logs_checkpoints_and_metrics(dataset, tmp_path):
    output = str(tmp_path / "run")
    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, output, _config())
    assert metrics["epochs_completed"] == 2
    for key in ("loss", "hr@10", "ndcg@10"):
        assert 0.0 <= metrics[key] < 100.0
    with open(os.path.join(output, "metrics.json")) as handle:
        assert json.load(handle)["ndcg@10"] == pytest.approx(metrics["ndcg@10"])
    backbone, config, vocabulary = artifacts.load_backbone(metrics["export_dir"])
    assert vocabulary == dataset.item_vocabulary
    assert config.vocab_size == len(dataset.item_vocabulary) and config.embedding_dim == 16
    assert artifacts.read_backbone_metadata(metrics["export_dir"])["fingerprint"] == metrics["backbone_fingerprint"]
    logs = os.path.join(output, "logs")
    for sub in ("train", "validation", "."):  # "." holds the hparams session
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(logs, sub))), sub
    with open(os.path.join(logs, "projector", "metadata.tsv")) as handle:
        assert handle.read().splitlines() == dataset.item_vocabulary.all_tokens()
    assert [r["epoch"] for r in callbacks.read_history(os.path.join(logs, "history.jsonl"))] == [1, 2]
    assert sorted(n for n in os.listdir(os.path.join(output, "checkpoints")) if n.endswith(".index")) == \
        ["ckpt-1.index", "ckpt-2.index"]


def _optimizer_iterations(checkpoint_prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_prefix)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/") and "iter" in k]
    assert len(keys) == 1, keys
    return int(reader.get_tensor(keys[0]))


def test_interrupted_run_resumes_from_its_checkpoint(dataset, tmp_path, capsys):
    output = str(tmp_path / "run")
    config = _config(epochs=3, verbose=1)
    with pytest.raises(InterruptedError):
        pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, output, config,
                 callbacks=[callbacks.RaiseAfterEpoch(1)])
    checkpoints = os.path.join(output, "checkpoints")
    steps_per_epoch = _optimizer_iterations(os.path.join(checkpoints, "ckpt-1"))
    assert steps_per_epoch >= 2
    assert not os.path.exists(os.path.join(output, "export"))
    capsys.readouterr()

    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, output, config)
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert metrics["epochs_completed"] == 3
    # Epoch 1 was not trained again: the history lists each epoch once, and the optimizer kept counting.
    assert [r["epoch"] for r in callbacks.read_history(os.path.join(output, "logs", "history.jsonl"))] == [1, 2, 3]
    assert _optimizer_iterations(os.path.join(checkpoints, "ckpt-3")) == 3 * steps_per_epoch
    # Each epoch's batches depend only on (seed, epoch): the resumed run ends where an
    # uninterrupted run ends, weight for weight.
    straight = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "straight"),
                        dataclasses.replace(config, verbose=0))
    resumed_weights = artifacts.load_backbone(metrics["export_dir"])[0].get_weights()
    straight_weights = artifacts.load_backbone(straight["export_dir"])[0].get_weights()
    for a, b in zip(resumed_weights, straight_weights):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_stops_and_a_rerun_trains_nothing(dataset, tmp_path):
    output = str(tmp_path / "run")
    # A learning rate too small to move float32 weights: the eval loss never improves after epoch 1.
    config = _config(epochs=6, early_stopping_patience=1, monitor="val_loss", learning_rate=1e-12)
    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, output, config)
    assert metrics["stopped_early"] is True
    assert metrics["epochs_completed"] == 2 and metrics["best_epoch"] == 1 and metrics["restored_best"] is True
    again = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, output, config)
    assert again["epochs_completed"] == 2
    assert len(callbacks.read_history(os.path.join(output, "logs", "history.jsonl"))) == 2


def test_vocabulary_mismatches_fail_clearly(dataset, tmp_path):
    with pytest.raises(VocabularyMismatchError, match="different vocabularies"):
        pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "a"),
                 _config(backbone=BackboneConfig(vocab_size=999, embedding_dim=16, dilations=(1, 2))))
    # Examples built with a bigger vocabulary than the one given.
    small = Vocabulary.from_counts("item", {"item0": 5, "item1": 3})
    small_dir = str(tmp_path / "small_vocab")
    os.makedirs(small_dir)
    small.save(small_dir)
    with pytest.raises(VocabularyMismatchError, match="do not fit the vocabulary"):
        pretrain(dataset.pretrain_examples, small_dir, str(tmp_path / "b"), _config(epochs=1))
    # Resuming a run with another vocabulary.
    with pytest.raises(VocabularyMismatchError, match="cannot be resumed"):
        pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "b"), _config(epochs=1))


def test_cloze_objective_with_sampled_softmax_runs(dataset, tmp_path):
    config = _config(backbone=BackboneConfig(vocab_size=0, embedding_dim=16, dilations=(1, 2), causal=False),
                     objective="cloze", softmax="sampled", num_sampled=5, epochs=1)
    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "run"), config)
    assert metrics["epochs_completed"] == 1 and np.isfinite(metrics["loss"])
    assert artifacts.load_backbone(metrics["export_dir"])[1].causal is False
    with pytest.raises(RunMismatchError, match="backbone_config"):
        pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "run"), _config())


def test_config_validation_and_round_trip():
    config = _config(objective="next_item", softmax="sampled", num_sampled=7)
    again = PretrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="non-causal"):
        _config(objective="cloze").validate()
    with pytest.raises(ValueError, match="causal backbone"):
        _config(backbone=BackboneConfig(vocab_size=0, causal=False)).validate()
    with pytest.raises(ValueError, match="unknown key"):
        PretrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="softmax"):
        _config(softmax="hierarchical").validate()
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        _config(checkpoint_every_steps=-1).validate()


def test_leave_one_out_trains_every_users_history_less_two_items(dataset, tmp_path):
    from peterrec.trainer import data, windows

    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "loo"),
                       _config(epochs=1))
    every = [f for split in ("train", "eval", "test") for f in data.split_files(dataset.pretrain_examples, split)]
    lengths = [len(row) for row in windows._sequences(every).as_numpy_iterator()]
    assert metrics["evaluation"] == "leave_one_out" and metrics["train_examples"] == len(lengths)
    assert metrics["train_positions"] == sum(max(n - 3, 0) for n in lengths)  # minus first, validation, test
    assert metrics["test_users"] == sum(1 for n in lengths if n >= 3)
    for key in ("loss", "hr@10", "ndcg@10", "mrr@10", "test_loss", "test_hr@10", "test_ndcg@10", "test_mrr@10"):
        assert 0.0 <= metrics[key] < 100.0, key
    users = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "users"),
                     _config(epochs=1, evaluation="users"))
    train_lengths = [len(row) for row in windows._sequences(
        data.split_files(dataset.pretrain_examples, "train")).as_numpy_iterator()]
    assert users["train_positions"] == sum(n - 1 for n in train_lengths) and "test_ndcg@10" not in users
    with pytest.raises(ValueError, match="evaluation"):
        _config(evaluation="random").validate()
