"""The pipeline config file: the embedded default, JSON and YAML, clear errors naming the field,
relative paths, the synthetic data preparation, and what the config hands to the components."""

import copy
import json
import os
import re
import time

import pytest

from peterrec.pipeline import config as config_lib
from peterrec.pipeline import testing


def _parse(data, source="test.json"):
    return config_lib.parse_config(data, source=source)


def test_default_config_is_valid_with_three_tasks():
    config = config_lib.load_default_config()
    assert config.source == config_lib.DEFAULT_CONFIG_FILE
    assert config.data.is_synthetic
    assert [(t.name, t.kind) for t in config.tasks] == [
        ("gender", "classification"), ("age", "classification"), ("cold_start", "cold_start")]
    assert {t.threshold.baseline for t in config.tasks} == {"majority", "popularity"}
    assert config.ingest["domain"] == "source", "pretraining sees only the source domain before a cold-start task"


def test_yaml_and_json_give_the_same_config(tmp_path):
    yaml = pytest.importorskip("yaml")
    data = testing.tiny_config_dict()
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    from_json = config_lib.load_config(str(tmp_path / "c.json"))
    from_yaml = config_lib.load_config(str(tmp_path / "c.yaml"))
    assert from_json.to_dict() == from_yaml.to_dict()
    assert from_json.source.endswith("c.json") and from_yaml.source.endswith("c.yaml")


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()

BAD_CONFIGS = [
    # (where, value, words the message must contain)
    (("taks",), [], ["test.json", "unknown key(s) ['taks']"]),
    (("tasks",), [], ["tasks", "non-empty list"]),
    (("tasks", 1, "threshold", "metric"), "hr@x", ["tasks[1].threshold.metric", "hr@K"]),
    (("tasks", 0, "threshold", "metric"), "hr@10", ["tasks[0].threshold.metric", "accuracy"]),
    (("tasks", 1, "threshold", "baseline"), "majority", ["tasks[1].threshold.baseline", "popularity"]),
    (("tasks", 0, "threshold", "baseline"), "none", ["tasks[0].threshold", "min_value"]),
    (("tasks", 0, "threshold", "min_lift"), "a lot", ["tasks[0].threshold.min_lift", "number"]),
    (("tasks", 0, "kind"), "regression", ["tasks[0].kind", "'regression'"]),
    (("tasks", 0, "strategy"), "fine-most", ["tasks[0].strategy", "peterrec-serial"]),
    (("tasks", 1, "name"), "gender", ["tasks[1].name", "already the name of tasks[0]"]),
    (("tasks", 0, "name"), "embed", ["tasks[0].name", "signature of every served model"]),
    (("tasks", 0, "name"), "my task", ["tasks[0].name", "letters, digits"]),
    (("tasks", 0, "name"), _DELETE, ["tasks[0]", "missing required key(s) ['name']"]),
    (("tasks", 0, "label_source", "attribute"), "income", ["tasks[0].label_source.attribute", "gender"]),
    (("tasks", 1, "label_source", "max_target_items"), 0, ["tasks[1].label_source", "max_target_items"]),
    (("tasks", 1, "label_source", "target_domain"), "source", ["tasks[1].label_source", "both 'source'"]),
    (("tasks", 0, "finetune", "epoch"), 3, ["tasks[0].finetune", "'epoch'"]),
    (("tasks", 0, "finetune", "epochs"), 0, ["tasks[0].finetune", "epochs must be >= 1"]),
    (("tasks", 0, "finetune", "readout"), "max", ["tasks[0].finetune", "readout"]),
    (("data", "source_path"), "x.csv", ["data", "not both"]),
    (("data", "synthetic", "users"), 0, ["data.synthetic", "at least 1 user"]),
    (("data", "synthetic", "userz"), 10, ["data.synthetic", "'userz'"]),
    (("ingest", "max_len"), -1, ["ingest", "max_len"]),
    (("ingest", "source_path"), "x.csv", ["ingest", "unknown key(s) ['source_path']"]),
    (("pretrain", "backbone", "embedding_dim"), 0, ["pretrain", "embedding_dim"]),
    (("pretrain", "objective"), "cloze", ["pretrain", "non-causal"]),
    (("pretrain", "epochs_total"), 3, ["pretrain", "'epochs_total'"]),
    (("serving", "top_k"), 0, ["serving.top_k", "positive integer"]),
    (("serving", "model_name"), "my/model", ["serving.model_name"]),
    (("beam_pipeline_args",), ["direct"], ["beam_pipeline_args", "--flag=value"]),
    (("enable_cache",), "yes", ["enable_cache", "true or false"]),
    # Types, checked against the annotations of the pipeline's and the trainer's dataclasses.
    (("tasks", 1, "threshold", "min_lift"), "abc", ["tasks[1].threshold.min_lift: expected a number, got 'abc'"]),
    (("pretrain", "backbone", "embedding_dim"), "32",
     ["pretrain.backbone.embedding_dim: expected an integer, got '32'"]),
    (("pretrain", "backbone", "dilations"), [1, "2"], ["pretrain.backbone.dilations[1]: expected an integer"]),
    (("pretrain", "epochs"), 2.5, ["pretrain.epochs: expected an integer, got 2.5"]),
    (("tasks", 0, "finetune", "adapter"), {"bottleneck": "8"},
     ["tasks[0].finetune.adapter.bottleneck: expected an integer, got '8'"]),
    (("tasks", 0, "finetune", "learning_rate"), "fast", ["tasks[0].finetune.learning_rate: expected a number"]),
    (("tasks", 0, "finetune", "readout_norm"), 1, ["tasks[0].finetune.readout_norm: expected true or false"]),
    (("tasks", 1, "label_source", "max_target_items"), "3",
     ["tasks[1].label_source.max_target_items: expected an integer or null, got '3'"]),
    (("ingest", "max_len"), "16", ["ingest.max_len: expected an integer or null, got '16'"]),
    (("ingest", "split_fractions"), {"train": "most"}, ["ingest.split_fractions.train: expected a number"]),
    (("data", "synthetic", "seed"), "1", ["data.synthetic.seed: expected an integer, got '1'"]),
    (("serving", "require_all_tasks"), "yes", ["serving.require_all_tasks: expected true or false, got 'yes'"]),
    (("tasks", 0, "threshold"), [], ["tasks[0].threshold: must be an object"]),
    (("beam_pipeline_args",), "--x=1", ["beam_pipeline_args: expected a list of strings"]),
]


@pytest.mark.parametrize("path, value, words", BAD_CONFIGS, ids=[".".join(map(str, c[0])) + f"={c[1]!r}"[:30]
                                                                  for c in BAD_CONFIGS])
def test_bad_configs_fail_naming_the_field(path, value, words):
    data = testing.tiny_config_dict()
    _set(data, path, value)
    with pytest.raises(config_lib.ConfigError) as error:
        _parse(data)
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_unreadable_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": {"synthetic": {}},\n "tasks": [}\n')
    with pytest.raises(config_lib.ConfigError, match=r"bad.json: not valid JSON: .* line 2"):
        config_lib.load_config(str(bad))
    with pytest.raises(config_lib.ConfigError, match="no such config file"):
        config_lib.load_config(str(tmp_path / "missing.json"))


def test_file_sources_resolve_relative_paths_against_the_config_folder(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    data = testing.tiny_config_dict(data={"source_format": "csv", "source_path": "../data/interactions.csv"})
    data["tasks"][0]["label_source"] = {"format": "csv", "path": "../data/gender.csv", "attribute": "label"}
    (folder / "c.json").write_text(json.dumps(data))
    config = config_lib.load_config(str(folder / "c.json"))
    ingest = config.ingest_config("/root")
    assert ingest.source_path == str(tmp_path / "data" / "interactions.csv")
    fields = config.task_example_fields(config.tasks[0], "/root")
    assert fields["label_path"] == str(tmp_path / "data" / "gender.csv")
    assert (fields["label_format"], fields["attribute"], fields["domain"]) == ("csv", "label", "source")
    assert config_lib.prepare_data(config, str(tmp_path / "root"), log=lambda line: None) is None

    data["tasks"][0]["label_source"] = {"format": "csv", "attribute": "label"}
    with pytest.raises(config_lib.ConfigError, match=r"tasks\[0\].label_source: label_format 'csv' needs label_path"):
        _parse(data)


def test_synthetic_tasks_read_the_generated_label_tables():
    config = testing.tiny_config()
    gender = config.task_example_fields(config.task("gender"), "/root")
    assert gender["label_path"] == "/root/data/gender.csv" and gender["attribute"] == "label"
    cold = config.task_example_fields(config.task("cold_start"), "/root")
    assert (cold["source_domain"], cold["target_domain"], cold["max_target_items"]) == ("source", "target", 3)
    with pytest.raises(KeyError, match="no task 'age'"):
        config.task("age")


def test_prepare_data_generates_once_and_keeps_the_files(tmp_path):
    config = testing.tiny_config()
    lines = []
    data_dir = config_lib.prepare_data(config, str(tmp_path), log=lines.append)
    interactions = os.path.join(data_dir, "interactions.csv")
    stamp = os.stat(interactions).st_mtime_ns
    assert sorted(os.listdir(data_dir)) == ["age.csv", "gender.csv", "interactions.csv", "profiles.csv",
                                            "synthetic.json"]
    time.sleep(0.01)
    assert config_lib.prepare_data(config, str(tmp_path), log=lines.append) == data_dir
    assert os.stat(interactions).st_mtime_ns == stamp, "unchanged settings must not rewrite (cache keys use mtimes)"
    assert "reusing" in lines[-1]

    changed = testing.tiny_config_dict()
    changed["data"]["synthetic"]["seed"] = 2
    config_lib.prepare_data(_parse(changed), str(tmp_path), log=lines.append)
    assert "generating" in lines[-1]
    with open(os.path.join(data_dir, "synthetic.json"), encoding="utf-8") as handle:
        assert json.load(handle)["seed"] == 2


def test_trainer_configs_follow_the_config():
    from peterrec.pipeline import pipeline
    from peterrec.trainer.finetune import FinetuneConfig
    from peterrec.trainer.pretrain import PretrainConfig

    config = testing.tiny_config()
    pretrain = pipeline.pretrain_custom_config(config)["pretrain"]
    assert pretrain["max_len"] == 16, "max_len defaults to the ingestion's"
    assert PretrainConfig.from_dict(copy.deepcopy(pretrain)).backbone.dilations == (1, 2)

    finetune = pipeline.finetune_custom_config(config, config.task("cold_start"))["finetune"]
    parsed = FinetuneConfig.from_dict(copy.deepcopy(finetune))
    assert (parsed.task.name, parsed.task.kind, parsed.task.strategy, parsed.task.readout) == (
        "cold_start", "cold_start", "peterrec-parallel", "tcl+mean")
    assert (parsed.epochs, parsed.max_len, parsed.learning_rate) == (6, 16, 0.01)


def test_component_ids_and_runtime_parameters_cover_every_task():
    from peterrec.pipeline import pipeline

    config = config_lib.load_default_config()
    ids = pipeline.component_ids(config)
    assert ids[:5] == ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer_pretrain"]
    assert ids[-2:] == ["ServingModelAssembler", "Pusher"]
    for task in ("gender", "age", "cold_start"):
        assert {f"TaskExampleGen_{task}", f"Trainer_{task}", f"TaskEvaluator_{task}"} <= set(ids)
        assert {f"task_config_{task}", f"finetune_config_{task}", f"threshold_{task}"} <= set(
            pipeline.runtime_parameter_names(config))
    assert len(ids) == len(set(ids)) == 5 + 3 * 3 + 2


def test_the_typed_layer_accepts_what_the_dataclasses_accept():
    data = testing.tiny_config_dict()
    data["ingest"]["split_fractions"] = {"train": 0.8, "eval": 0.1, "test": 0.1}  # pairs may be a mapping
    data["tasks"][0]["finetune"].update(learning_rate=1, adapter={"bottleneck": 4})  # an int is a number
    data["tasks"][1]["threshold"] = None  # a null section takes the defaults
    data["description"] = "free text"
    config = _parse(data)
    assert config.tasks[1].threshold == config_lib.ThresholdConfig(metric="hr@10", baseline="popularity")
    assert config.ingest_config("/root").split_names == ("train", "eval", "test")
    assert config.to_dict() == _parse(config.to_dict()).to_dict(), "to_dict reads back as the same config"


def test_the_typed_validator_names_each_annotation_in_words():
    from typing import Any, Dict, List, Optional, Tuple

    from peterrec import typed_config as typed

    cases = [
        ("x", Optional[int], "an integer or null"), (["a"], Tuple[int, int], "a list of 2 values"),
        (3, List[str], "a list of strings"), (3, Dict[str, Any], "an object (a mapping)"),
        ([1, None], Tuple[Optional[float], ...], None), ({"k": [1]}, Dict[str, List[int]], None),
    ]
    for value, annotation, words in cases:
        if words is None:
            assert typed.check_value(value, annotation, "f") is value
            continue
        with pytest.raises(typed.FieldError, match="^f: expected " + re.escape(words)):
            typed.check_value(value, annotation, "f")
    with pytest.raises(typed.FieldError, match=r"^s\[2\]\.b: expected true or false, got 0$"):
        typed.check_value([{}, {}, {"b": 0}], List[Dict[str, bool]], "s")

