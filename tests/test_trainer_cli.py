"""Tests of peterrec.trainer.cli: lazy imports, argument -> config mapping, both commands end to end."""

import json
import os
import subprocess
import sys

import pytest

import peterrec  # noqa: F401
from peterrec import cli as root_cli
from peterrec.trainer import artifacts, cli, tiny_examples


def test_module_import_loads_no_tensorflow():
    code = ("import sys, argparse; import peterrec.trainer.cli as c; "
            "c.register(argparse.ArgumentParser().add_subparsers()); "
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'tfx') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_arguments_map_to_configs():
    parser = root_cli.build_parser()
    args = parser.parse_args(["pretrain", "--examples", "e", "--vocabulary", "v", "--output", "o", "--dim", "32",
                              "--dilations", "1,2,4,8", "--objective", "cloze", "--softmax", "sampled",
                              "--num-sampled", "7", "--epochs", "3", "--patience", "0", "--quiet"])
    config = cli.pretrain_config_from_args(args)
    assert config.backbone.embedding_dim == 32 and config.backbone.dilations == (1, 2, 4, 8)
    assert config.backbone.causal is False and config.objective == "cloze"
    assert (config.softmax, config.num_sampled, config.epochs, config.early_stopping_patience, config.verbose) == \
        ("sampled", 7, 3, 0, 0)
    assert (config.checkpoint_every_steps, config.deterministic) == (500, False)
    args = parser.parse_args(["pretrain", "--examples", "e", "--vocabulary", "v", "--output", "o",
                              "--checkpoint-every-steps", "25", "--deterministic"])
    config = cli.pretrain_config_from_args(args)
    assert (config.checkpoint_every_steps, config.deterministic) == (25, True)
    args = parser.parse_args(["finetune", "--backbone", "b", "--examples", "e", "--task-name", "age", "--kind",
                              "classification", "--strategy", "iak", "--output", "o", "--readout", "mean",
                              "--bottleneck", "4", "--placement", "parallel", "--no-layer-norm", "--lr", "0.01"])
    config = cli.finetune_config_from_args(args)
    task = config.task
    assert (task.name, task.kind, task.strategy, task.readout) == ("age", "classification", "iak", "mean")
    assert task.effective_adapter().kind == "iak" and task.adapter.placement == "parallel"
    assert task.adapter.bottleneck == 4 and task.train_layer_norm is False and config.learning_rate == 0.01
    assert (config.checkpoint_every_steps, config.deterministic) == (500, False)
    # The defaults are the recipe: tcl+mean with a LayerNorm per part, cosine decay, val_loss.
    assert (task.readout_norm, task.head_embedding_dim, config.lr_schedule) == (True, 0, "cosine")
    assert (config.epochs, config.early_stopping_patience, config.max_len, config.resolved_monitor) == \
        (30, 5, 200, "val_loss")
    args = parser.parse_args(["finetune", "--backbone", "b", "--examples", "e", "--task-name", "genre",
                              "--kind", "cold_start", "--output", "o", "--no-readout-norm", "--head-embedding-dim", "8",
                              "--lr-schedule", "constant", "--checkpoint-every-steps", "0", "--deterministic"])
    config = cli.finetune_config_from_args(args)
    assert (config.task.readout, config.task.readout_norm, config.task.head_embedding_dim, config.lr_schedule) == \
        ("tcl+mean", False, 8, "constant")
    assert (config.checkpoint_every_steps, config.deterministic) == (0, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain", "--examples", "e", "--vocabulary", "v", "--output", "o", "--dilations", "1,x"])


def test_pretrain_and_finetune_commands(tmp_path, capsys):
    dataset = tiny_examples.write_tiny_dataset(str(tmp_path / "data"), num_users=40, num_items=20)
    run = str(tmp_path / "pretrain")
    common = ["--epochs", "1", "--batch-size", "16", "--max-len", "10", "--patience", "0", "--quiet"]
    assert root_cli.main(["pretrain", "--examples", dataset.pretrain_examples, "--vocabulary",
                          dataset.item_vocabulary_dir, "--output", run, "--dim", "16", "--dilations", "1,2",
                          *common]) == 0
    pretrained = json.loads(capsys.readouterr().out)
    assert pretrained["epochs_completed"] == 1
    assert artifacts.read_backbone_metadata(pretrained["export_dir"])["fingerprint"] == pretrained["backbone_fingerprint"]

    assert root_cli.main(["finetune", "--backbone", pretrained["export_dir"], "--examples",
                          dataset.classification_examples, "--task-name", "gender", "--kind", "classification",
                          "--output", str(tmp_path / "gender"), "--task-vocabulary", dataset.label_vocabulary_dir,
                          "--item-vocabulary", dataset.item_vocabulary_dir, "--bottleneck", "4", *common]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["task"] == "gender" and 0.0 <= tuned["accuracy"] <= 1.0
    assert os.path.exists(os.path.join(tuned["patch_dir"], artifacts.PATCH_METADATA_FILE))


def test_bad_input_is_an_error_message_not_a_traceback(tmp_path, capsys):
    status = root_cli.main(["pretrain", "--examples", str(tmp_path / "none"), "--vocabulary",
                            str(tmp_path / "none"), "--output", str(tmp_path / "run"), "--quiet"])
    assert status == 1
    assert capsys.readouterr().err.startswith("error: ")
    status = root_cli.main(["finetune", "--backbone", str(tmp_path / "none"), "--examples", str(tmp_path),
                            "--task-name", "t", "--kind", "classification", "--output", str(tmp_path / "ft")])
    assert status == 1
    assert "does not exist" in capsys.readouterr().err
