"""Tests of ``peterrec export`` (peterrec.serving.export_cli): versions, labels, files, report, errors."""

import argparse
import json
import os
import shutil

import pytest

import peterrec  # noqa: F401
from peterrec.serving import export_cli, model_config, random_artifacts


def _parser():
    parser = argparse.ArgumentParser(prog="peterrec")
    export_cli.register(parser.add_subparsers(dest="command"))
    return parser


def _export(capsys, *argv):
    args = _parser().parse_args(["export", *argv])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("export_cli"))
    specs = [random_artifacts.TaskSpec("genre", "classification", "fine-cls", "mean", num_classes=3),
             random_artifacts.TaskSpec("shop", "cold_start", "fine-cls", "mean", num_targets=6)]
    return random_artifacts.write_random_artifacts(root, specs, num_items=20, embedding_dim=4, dilations=(1, 2)), root


def test_register_adds_export_with_a_handler():
    args = _parser().parse_args(["export", "--backbone", "b", "--task", "t1", "--task", "t2", "--model-base", "m/x"])
    assert args.task == ["t1", "t2"] and args.top_k == 100 and args.label is None
    assert args.handler is export_cli.run


def test_versions_labels_and_serving_files(made, capsys):
    artifacts, root = made
    base = os.path.join(root, "models", "recs")
    tasks = [artifacts.task_dirs["genre"], artifacts.task_dirs["shop"]]
    code, out, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", tasks[0], "--task", tasks[1],
                             "--model-base", base, "--top-k", "4", "--label", "stable")
    assert code == 0, err
    assert "exported recs version 1" in out
    assert "signatures: embed, genre, genre_classify, next_items, shop" in out
    assert "backbone export" in out and "2 separate full model(s)" in out
    config_path = os.path.join(root, "models", "models.config")
    (entry,) = model_config.entries_of(model_config.read_model_config(config_path))
    assert (entry.name, entry.base_path, entry.labels) == ("recs", base, {"stable": 1})
    assert entry.wants([1]) == [1]
    model_config.read_batching_parameters(os.path.join(root, "models", model_config.BATCHING_PARAMETERS_FILE))
    model_config.read_monitoring_config(os.path.join(root, "models", model_config.MONITORING_CONFIG_FILE))

    code, out, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", tasks[0],
                             "--model-base", base, "--label", "canary", "--quiet")
    assert code == 0, err
    assert out.startswith("exported recs version 2")
    (entry,) = model_config.entries_of(model_config.read_model_config(config_path))
    assert entry.labels == {"stable": 1, "canary": 2}
    assert entry.wants([1, 2]) == [2, 1]  # both labelled versions stay loaded
    assert sorted(os.listdir(base)) == ["1", "2"]  # no staging folder left behind
    with open(os.path.join(base, "2", "assets.extra", "peterrec_tasks.json")) as handle:
        assert sorted(json.load(handle)["tasks"]) == ["embed", "genre", "next_items"]


def test_a_mismatched_patch_fails_cleanly(made, capsys, tmp_path):
    artifacts, _ = made
    foreign = str(tmp_path / "foreign")
    shutil.copytree(artifacts.task_dirs["genre"], foreign)
    with open(os.path.join(foreign, "metadata.json")) as handle:
        metadata = json.load(handle)
    metadata["backbone_fingerprint"] = "f" * 64
    with open(os.path.join(foreign, "metadata.json"), "w") as handle:
        json.dump(metadata, handle)
    base = str(tmp_path / "models" / "recs")
    code, _, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", foreign, "--model-base", base)
    assert code == 2
    assert "error:" in err and "foreign" in err and "fine-tuned on backbone ffffffffffffffff" in err
    assert not os.path.exists(base) or os.listdir(base) == []
    assert not os.path.exists(tmp_path / "models" / "models.config")


def test_bad_arguments_are_refused(made, capsys, tmp_path):
    artifacts, _ = made
    code, _, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", str(tmp_path / "missing"),
                           "--model-base", str(tmp_path / "m" / "x"))
    assert code == 2 and "does not exist" in err
    code, _, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", artifacts.task_dirs["genre"],
                           "--model-base", str(tmp_path / "m" / "x"), "--label", "not a label")
    assert code == 2 and "version label" in err
    code, _, err = _export(capsys, "--backbone", artifacts.backbone_dir, "--task", artifacts.task_dirs["genre"],
                           "--model-base", str(tmp_path / "m" / "x"), "--top-k", "0")
    assert code == 2 and "--top-k" in err
