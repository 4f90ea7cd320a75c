"""The pipeline's components at unit level: the blessing decision and its marks, the anomaly
report, the assembler's per-task inputs, the run_fn's vocabulary inputs, and local copies of
remote artifacts."""

import os

import pytest

from peterrec.pipeline import config as config_lib


def test_blessing_needs_the_metric_above_baseline_plus_lift_and_the_floor():
    from peterrec.pipeline.components import decide_blessing

    threshold = config_lib.ThresholdConfig(metric="accuracy", baseline="majority", min_lift=0.05)
    assert decide_blessing(0.80, 0.70, threshold)[0]
    blessed, reason = decide_blessing(0.74, 0.70, threshold)
    assert not blessed and "does not beat the majority baseline 0.7000 + min_lift 0.05" in reason
    assert not decide_blessing(0.70, 0.70, config_lib.ThresholdConfig("accuracy", "majority"))[0], \
        "equal to the baseline is not better"
    floor = config_lib.ThresholdConfig(metric="hr@10", baseline="none", min_value=0.3)
    assert decide_blessing(0.31, None, floor)[0] and not decide_blessing(0.29, None, floor)[0]


def test_blessing_marks_follow_tfx_conventions(tmp_path):
    from tfx.types import standard_artifacts

    from peterrec.pipeline.components import is_blessed, write_blessing

    for blessed, mark in ((True, "BLESSED"), (False, "NOT_BLESSED")):
        artifact = standard_artifacts.ModelBlessing()
        artifact.uri = str(tmp_path / mark)
        write_blessing(artifact, blessed, "why", {"task_name": "gender", "value": 0.5, "tasks": ["a"]})
        assert is_blessed(artifact) is blessed
        assert os.listdir(artifact.uri) == [mark]
        assert artifact.get_string_custom_property("reason") == "why"
        assert artifact.get_float_custom_property("value") == 0.5
        assert artifact.get_string_custom_property("tasks") == '["a"]'


def test_anomalies_are_described_per_split_and_feature():
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from peterrec.pipeline.components import describe_anomalies

    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["timestamps"]
    reason = info.reason.add()
    reason.short_description = "Out-of-range values"
    reason.description = "Unexpectedly small value: 12."
    clean = anomalies_pb2.Anomalies()
    assert describe_anomalies({"train": anomalies, "eval": clean}) == [
        "split 'train': feature 'timestamps': Out-of-range values (Unexpectedly small value: 12.)"]


def test_the_assembler_has_a_patch_and_a_blessing_input_per_task():
    from tfx.types import Channel, standard_artifacts

    from peterrec.pipeline.components import ServingModelAssembler

    def channels(kind, names):
        return {name: Channel(type=kind) for name in names}

    assembler = ServingModelAssembler(
        backbone=Channel(type=standard_artifacts.Model), patches=channels(standard_artifacts.Model, ["a", "b"]),
        blessings=channels(standard_artifacts.ModelBlessing, ["a", "b"]), model_name="m", top_k=3, max_len=8)
    assert isinstance(assembler, ServingModelAssembler) and assembler.id == "ServingModelAssembler"
    assert sorted(assembler.inputs) == ["backbone", "blessing_a", "blessing_b", "patch_a", "patch_b"]
    assert assembler.exec_properties["task_names"] == '["a", "b"]'
    with pytest.raises(ValueError, match="must name the same tasks"):
        ServingModelAssembler(backbone=Channel(type=standard_artifacts.Model),
                              patches=channels(standard_artifacts.Model, ["a"]),
                              blessings=channels(standard_artifacts.ModelBlessing, ["b"]),
                              model_name="m", top_k=3, max_len=8)
    with pytest.raises(ValueError, match="at least one task"):
        ServingModelAssembler(backbone=Channel(type=standard_artifacts.Model), patches={}, blessings={},
                              model_name="m", top_k=3, max_len=8)


def test_the_trainer_hands_vocabulary_folders_to_the_run_fn(tmp_path):
    from tfx.types import standard_artifacts

    from peterrec.components.artifact_types import Vocabulary
    from peterrec.pipeline.components import PeterRecTrainerExecutor

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    vocabularies = {}
    for key in ("item_vocabulary", "task_vocabulary"):
        vocabularies[key] = Vocabulary()
        vocabularies[key].uri = str(tmp_path / key)
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(tmp_path / "model"), str(tmp_path / "model_run")
    fn_args = PeterRecTrainerExecutor()._GetFnArgs(  # pylint: disable=protected-access
        {"examples": [examples], **{k: [v] for k, v in vocabularies.items()}},
        {"model": [model], "model_run": [model_run]},
        {"train_args": '{"splits": ["train"]}', "eval_args": '{"splits": ["eval"]}',
         "custom_config": '{"finetune": {"epochs": 1}}'})
    assert fn_args.custom_config == {"finetune": {"epochs": 1}, "item_vocabulary": str(tmp_path / "item_vocabulary"),
                                     "task_vocabulary": str(tmp_path / "task_vocabulary")}
    assert fn_args.serving_model_dir == str(tmp_path / "model" / "Format-Serving")


def test_remote_artifacts_are_copied_to_a_local_folder(tmp_path):
    import tensorflow as tf

    from peterrec.pipeline.components import local_copy

    remote = "ram://peterrec-test-local-copy/patch"
    tf.io.gfile.makedirs(remote + "/variables")
    for name, text in (("metadata.json", "{}"), ("variables/task.index", "i")):
        with tf.io.gfile.GFile(f"{remote}/{name}", "w") as handle:
            handle.write(text)
    local = local_copy(remote, str(tmp_path))
    assert local.startswith(str(tmp_path))
    assert sorted(os.listdir(local)) == ["metadata.json", "variables"]
    with open(os.path.join(local, "variables", "task.index"), encoding="utf-8") as handle:
        assert handle.read() == "i"
    assert local_copy(str(tmp_path), str(tmp_path)) == str(tmp_path), "local paths are used in place"


def test_evaluation_errors_reach_the_pipeline_as_blessing_errors_naming_the_task(monkeypatch):
    from peterrec.pipeline.components import BlessingError
    from peterrec.pipeline.components.task_evaluator import executor
    from peterrec.trainer import evaluation

    def empty(*args, **kwargs):
        raise evaluation.EvaluationError("split 'test' has no target items to evaluate")

    monkeypatch.setattr(evaluation, "evaluate_cold_start", empty)
    threshold = config_lib.parse_threshold({}, config_lib.COLD_START)
    with pytest.raises(BlessingError, match="^task 'cold_start': split 'test' has no target items to evaluate$"):
        executor._evaluate(  # pylint: disable=protected-access
            "cold_start", config_lib.COLD_START, None, "/examples", threshold, max_len=8, batch_size=4)


def test_a_bad_threshold_parameter_names_the_evaluator_and_the_field():
    from peterrec.pipeline.components import parse_threshold

    assert parse_threshold('{"metric": "ndcg@5"}', "cold_start") == config_lib.ThresholdConfig("ndcg@5", "popularity")
    with pytest.raises(config_lib.ConfigError,
                       match=r"^TaskEvaluator: threshold\.min_lift: expected a number, got 'x'$"):
        parse_threshold('{"min_lift": "x"}', "classification")



def test_a_local_push_is_crash_safe_and_cleans_what_a_killed_push_left(tmp_path):
    from peterrec.pipeline.components.serving_pusher.executor import _push_local
    from peterrec.serving import crash_safe, model_config, servable

    model = tmp_path / "blessed"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"index")
    base = tmp_path / "models" / "peterrec"
    dead = base / ".export-killed"  # what a killed push leaves: a lock file nobody holds
    (dead / "model").mkdir(parents=True)
    (dead / "lock").write_bytes(b"")
    (dead / "model" / "saved_model.pb").write_bytes(b"half")
    with crash_safe.ExportStaging(str(base)) as live:  # a concurrent push, still running
        version, path = _push_local(str(model), str(base), "stable")
        assert os.path.isdir(live.folder), "a live push's staging folder is never touched"

    assert (version, path) == (1, str(base / "1"))
    assert sorted(os.listdir(base)) == ["1"], "the killed push's staging is removed, nothing else is left"
    assert (base / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert servable.list_versions(str(base)) == {1: str(base / "1")}
    entries = model_config.entries_of(model_config.read_model_config(str(tmp_path / "models" / "models.config")))
    assert [(entry.name, entry.labels) for entry in entries] == [("peterrec", {"stable": 1})]
