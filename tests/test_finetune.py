"""Tests of peterrec.trainer.finetune: strategies end to end on a tiny pretrained backbone, the
patch artifact reproducing the metrics, parameter counts, resume, vocabulary checks."""

import dataclasses
import json
import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.components.vocabulary import VocabularyError, VocabularyMismatchError
from peterrec.trainer import artifacts, callbacks, data, tiny_examples
from peterrec.trainer.config import AdapterConfig, BackboneConfig, TaskConfig
from peterrec.trainer.finetune import FinetuneConfig, finetune
from peterrec.trainer.pretrain import PretrainConfig, pretrain

MAX_LEN = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    dataset = tiny_examples.write_tiny_dataset(str(root / "data"), num_users=60, num_items=30)
    config = PretrainConfig(backbone=BackboneConfig(vocab_size=0, embedding_dim=16, dilations=(1, 2)),
                            batch_size=16, epochs=1, max_len=MAX_LEN, early_stopping_patience=0, verbose=0)
    metrics = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(root / "pretrain"), config)
    return dataset, metrics["export_dir"]


def _config(dataset, kind="classification", strategy="peterrec-serial", **overrides):
    vocabulary = dataset.label_vocabulary_dir if kind == "classification" else dataset.target_vocabulary_dir
    task = TaskConfig(name=f"{kind}_{strategy}", kind=kind, strategy=strategy, readout="tcl+mean",
                      adapter=AdapterConfig(bottleneck=4))
    base = FinetuneConfig(task=task, batch_size=16, epochs=2, max_len=MAX_LEN, early_stopping_patience=0,
                          task_vocabulary=vocabulary, item_vocabulary=dataset.item_vocabulary_dir, verbose=0)
    return dataclasses.replace(base, **overrides)


def _evaluate_artifact(patch_dir, backbone_dir, examples_dir, kind):
    """Evaluates a patch artifact loaded onto a freshly loaded backbone on the test split."""
    backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
    model, metadata = artifacts.load_patch_artifact(patch_dir, backbone, vocabulary)
    model.compile()
    test = data.sequence_dataset(examples_dir, "test", 16, MAX_LEN, kind=kind)
    return model.evaluate(test, return_dict=True, verbose=0), metadata


def test_classification_patch_run_and_its_artifact(setup, tmp_path, capsys):
    dataset, backbone_dir = setup
    config = _config(dataset, verbose=1)
    metrics = finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "run"), config)
    out = capsys.readouterr().out
    assert "trainable parameters" in out and "% of fine-all" in out
    assert metrics["split"] == "test" and metrics["epochs_completed"] == 2
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    assert set(metrics["splits"]) == {"eval", "test"}
    assert 0 < metrics["trainable_params"] < metrics["fine_all_params"]
    assert metrics["trainable_percent"] == pytest.approx(100 * metrics["trainable_params"] / metrics["fine_all_params"])
    assert metrics["patch_bytes"] < metrics["backbone_bytes"] / 3
    with open(os.path.join(tmp_path, "run", "metrics.json")) as handle:
        assert json.load(handle)["accuracy"] == metrics["accuracy"]
    # The artifact alone, on a fresh backbone instance, gives the same test metrics.
    reloaded, metadata = _evaluate_artifact(metrics["patch_dir"], backbone_dir, dataset.classification_examples,
                                            "classification")
    assert reloaded["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert reloaded["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-6)
    assert metadata.vocabulary() == dataset.label_vocabulary
    assert metadata.task_config["num_outputs"] == len(dataset.label_vocabulary)
    assert metadata.metrics["accuracy"] == metrics["accuracy"]
    # Fine-tuning never touched the export (load_backbone re-checks its fingerprint too).
    assert artifacts.read_backbone_metadata(backbone_dir)["fingerprint"] == metadata.backbone_fingerprint


def test_cold_start_sampled_softmax_reports_full_and_sampled_ranking(setup, tmp_path):
    dataset, backbone_dir = setup
    config = _config(dataset, kind="cold_start", strategy="peterrec-parallel", epochs=1)
    config.task = dataclasses.replace(config.task, softmax="sampled")
    metrics = finetune(backbone_dir, dataset.cold_start_examples, str(tmp_path / "run"), config)
    for key in ("hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10", "sampled_mrr@5"):
        assert 0.0 <= metrics[key] <= 1.0, key
    reloaded, metadata = _evaluate_artifact(metrics["patch_dir"], backbone_dir, dataset.cold_start_examples,
                                            "cold_start")
    assert reloaded["hr@10"] == pytest.approx(metrics["hr@10"], abs=1e-6)
    assert metadata.vocabulary() == dataset.target_vocabulary


def test_peter_zero_and_fine_all_artifacts(setup, tmp_path):
    dataset, backbone_dir = setup
    zero = finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "zero"),
                    _config(dataset, strategy="peter-zero", epochs=1))
    everything = finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "all"),
                          _config(dataset, strategy="fine-all", epochs=1))
    assert zero["trainable_params"] < everything["trainable_params"]
    assert everything["trainable_percent"] == pytest.approx(100.0)
    # peter-zero runs on its own untrained backbone, which its artifact must carry.
    reloaded, _ = _evaluate_artifact(zero["patch_dir"], backbone_dir, dataset.classification_examples,
                                     "classification")
    assert reloaded["accuracy"] == pytest.approx(zero["accuracy"], abs=1e-6)


def test_interrupted_finetune_resumes(setup, tmp_path):
    import tensorflow as tf

    dataset, backbone_dir = setup
    output = str(tmp_path / "run")
    config = _config(dataset, strategy="fine-cls", epochs=2)
    with pytest.raises(InterruptedError):
        finetune(backbone_dir, dataset.classification_examples, output, config,
                 callbacks=[callbacks.RaiseAfterEpoch(1)])
    assert not os.path.exists(os.path.join(output, "patch"))
    metrics = finetune(backbone_dir, dataset.classification_examples, output, config)
    assert metrics["epochs_completed"] == 2
    assert [r["epoch"] for r in callbacks.read_history(os.path.join(output, "logs", "history.jsonl"))] == [1, 2]
    # The resumed run ends exactly where an uninterrupted run ends: same variables, same optimizer state.
    straight = finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "straight"), config)
    assert straight["loss"] == metrics["loss"]
    resumed = tf.train.load_checkpoint(os.path.join(output, "checkpoints", "ckpt-2"))
    uninterrupted = tf.train.load_checkpoint(str(tmp_path / "straight" / "checkpoints" / "ckpt-2"))
    keys = [k for k in resumed.get_variable_to_shape_map() if not k.startswith("_CHECKPOINTABLE")]
    assert any(k.startswith("optimizer/") for k in keys) and any(k.startswith("task_layers/") for k in keys)
    for key in keys:
        np.testing.assert_array_equal(resumed.get_tensor(key), uninterrupted.get_tensor(key), err_msg=key)


def test_cosine_schedule_decays_over_the_run_and_resumes_on_its_curve(setup, tmp_path):
    import tensorflow as tf

    from peterrec.trainer.finetune import LR_FLOOR, learning_rate_for

    dataset, backbone_dir = setup
    config = _config(dataset, strategy="peterrec-serial", epochs=2, learning_rate=0.01, lr_schedule="cosine")
    schedule = learning_rate_for(config, steps_per_epoch=5)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(5)) == pytest.approx(0.01 * (LR_FLOOR + (1 - LR_FLOOR) * 0.5))
    assert float(schedule(10)) == pytest.approx(0.01 * LR_FLOOR)
    assert learning_rate_for(dataclasses.replace(config, lr_schedule="constant"), 5) == 0.01
    with pytest.raises(ValueError, match="lr_schedule"):
        dataclasses.replace(config, lr_schedule="linear").validate()

    output = str(tmp_path / "run")
    with pytest.raises(InterruptedError):
        finetune(backbone_dir, dataset.classification_examples, output, config,
                 callbacks=[callbacks.RaiseAfterEpoch(1)])
    resumed = finetune(backbone_dir, dataset.classification_examples, output, config)
    straight = finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "straight"), config)
    assert resumed["loss"] == straight["loss"]
    a = tf.train.load_checkpoint(os.path.join(output, "checkpoints", "ckpt-2"))
    b = tf.train.load_checkpoint(str(tmp_path / "straight" / "checkpoints" / "ckpt-2"))
    for key in a.get_variable_to_shape_map():
        if not key.startswith("_CHECKPOINTABLE"):
            np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key), err_msg=key)


def test_normalized_readout_and_small_target_table_survive_the_artifact(setup, tmp_path):
    dataset, backbone_dir = setup
    base = _config(dataset, kind="cold_start")
    task = dataclasses.replace(base.task, readout_norm=True, head_embedding_dim=4)
    config = dataclasses.replace(base, task=task, epochs=1)
    metrics = finetune(backbone_dir, dataset.cold_start_examples, str(tmp_path / "run"), config)
    again, metadata = _evaluate_artifact(metrics["patch_dir"], backbone_dir, dataset.cold_start_examples,
                                         "cold_start")
    assert metadata.task_config["readout_norm"] is True and metadata.task_config["head_embedding_dim"] == 4
    assert again["mrr@5"] == pytest.approx(metrics["mrr@5"], abs=1e-6)
    wide = finetune(backbone_dir, dataset.cold_start_examples, str(tmp_path / "wide"),
                    dataclasses.replace(config, task=dataclasses.replace(task, head_embedding_dim=0)))
    assert metrics["trainable_params"] < wide["trainable_params"]


def test_vocabulary_checks(setup, tmp_path):
    dataset, backbone_dir = setup
    other = tiny_examples.write_tiny_dataset(str(tmp_path / "other"), num_users=20, num_items=31, seed=3)
    with pytest.raises(VocabularyMismatchError, match="vs the backbone"):
        finetune(backbone_dir, other.classification_examples, str(tmp_path / "a"),
                 _config(dataset, item_vocabulary=other.item_vocabulary_dir))
    with pytest.raises(VocabularyError, match="needs a label vocabulary"):
        finetune(backbone_dir, dataset.classification_examples, str(tmp_path / "b"),
                 _config(dataset, task_vocabulary=dataset.target_vocabulary_dir))


def test_config_round_trip_and_validation(setup):
    dataset, _ = setup
    config = _config(dataset)
    again = FinetuneConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.resolved_monitor == "val_loss"
    assert _config(dataset, kind="cold_start").resolved_monitor == "val_mrr@5"
    with pytest.raises(ValueError, match="unknown key"):
        FinetuneConfig.from_dict({**config.to_dict(), "lr": 0.1})
    with pytest.raises(ValueError, match="epochs"):
        _config(dataset, epochs=0).validate()
