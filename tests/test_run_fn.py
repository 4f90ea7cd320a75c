"""Tests of peterrec.trainer.run_fn: the TFX Trainer entry points with real FnArgs on tiny data."""

import os

import pytest

import peterrec  # noqa: F401
from peterrec.trainer import artifacts, run_fn, tiny_examples

MAX_LEN = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_examples.write_tiny_dataset(str(tmp_path_factory.mktemp("tiny")), num_users=50, num_items=24)


def _fn_args(examples_dir, root, custom_config, base_model=None, train_steps=None):
    from tfx.components.trainer.fn_args_utils import FnArgs

    return FnArgs(
        working_dir=os.path.join(root, "model_run"),
        train_files=[os.path.join(examples_dir, "Split-train", "*")],
        eval_files=[os.path.join(examples_dir, "Split-eval", "*")],
        train_steps=train_steps,
        serving_model_dir=os.path.join(root, "model", "Format-Serving"),
        model_run_dir=os.path.join(root, "model_run"),
        base_model=base_model,
        custom_config=custom_config,
    )


def _iterations(checkpoint_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_dir)
    return int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


def test_pretrain_then_finetune_through_fn_args(dataset, tmp_path):
    pretrain_root = str(tmp_path / "pretrain")
    pretrain_args = _fn_args(dataset.pretrain_examples, pretrain_root, {
        "pretrain": {"backbone": {"embedding_dim": 16, "dilations": [1, 2]}, "epochs": 2, "batch_size": 16,
                     "max_len": MAX_LEN, "early_stopping_patience": 0, "verbose": 0},
        "item_vocabulary": dataset.item_vocabulary_dir,
    }, train_steps=6)
    metrics = run_fn.pretrain_run_fn(pretrain_args)
    assert metrics["epochs_completed"] == 2 and "ndcg@10" in metrics
    # The Model artifact's serving dir is the backbone export; run files go to model_run_dir.
    backbone, _, vocabulary = artifacts.load_backbone(pretrain_args.serving_model_dir)
    assert vocabulary == dataset.item_vocabulary
    assert os.path.exists(os.path.join(pretrain_args.model_run_dir, "metrics.json"))
    # train_steps=6 over 2 epochs: 3 steps per epoch.
    assert _iterations(os.path.join(pretrain_args.model_run_dir, "checkpoints")) == 6

    finetune_args = _fn_args(dataset.classification_examples, str(tmp_path / "finetune"), {
        "finetune": {"task": {"name": "gender", "kind": "classification", "num_outputs": 2,
                              "strategy": "peterrec-serial", "adapter": {"bottleneck": 4}},
                     "epochs": 1, "batch_size": 16, "max_len": MAX_LEN, "early_stopping_patience": 0,
                     "verbose": 0},
        "item_vocabulary": dataset.item_vocabulary_dir,
        "task_vocabulary": dataset.label_vocabulary_dir,
    }, base_model=os.path.dirname(pretrain_args.serving_model_dir))  # the export is found below base_model
    result = run_fn.finetune_run_fn(finetune_args)
    assert result["split"] == "eval" and 0.0 <= result["accuracy"] <= 1.0
    model, metadata = artifacts.load_patch_artifact(finetune_args.serving_model_dir, backbone, vocabulary)
    assert metadata.task_name == "gender" and metadata.vocabulary() == dataset.label_vocabulary
    assert model.config.num_outputs == len(dataset.label_vocabulary)
    assert os.path.exists(os.path.join(finetune_args.model_run_dir, "metrics.json"))


def test_missing_inputs_fail_clearly(dataset, tmp_path):
    with pytest.raises(run_fn.RunFnError, match="item_vocabulary"):
        run_fn.pretrain_run_fn(_fn_args(dataset.pretrain_examples, str(tmp_path / "a"),
                                        {"pretrain": {"epochs": 1}}))
    task = {"name": "gender", "kind": "classification"}
    with pytest.raises(run_fn.RunFnError, match="base_model"):
        run_fn.finetune_run_fn(_fn_args(dataset.classification_examples, str(tmp_path / "b"),
                                        {"finetune": {"task": task},
                                         "item_vocabulary": dataset.item_vocabulary_dir}))
    with pytest.raises(run_fn.RunFnError, match="'task'"):
        run_fn.finetune_run_fn(_fn_args(dataset.classification_examples, str(tmp_path / "c"), {"finetune": {}}))
    with pytest.raises(run_fn.RunFnError, match="no backbone export"):
        run_fn.find_backbone_export(str(tmp_path))
    with pytest.raises(ValueError, match="unknown key"):
        run_fn.pretrain_run_fn(_fn_args(dataset.pretrain_examples, str(tmp_path / "d"),
                                        {"pretrain": {"epochz": 1}, "item_vocabulary": dataset.item_vocabulary_dir}))
