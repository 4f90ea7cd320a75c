"""The Kubeflow V2 compile: the PipelineJob JSON loads into the KFP pipeline-spec protos and holds
every component (with its executor, image and inputs) and every runtime parameter (with the
config's value as default); Beam flags for Flink, Spark and Dataflow parse with Beam's options."""

import json

import pytest

from peterrec.pipeline import kubeflow_runner, pipeline, testing

IMAGE = "registry.example/peterrec-pipeline:test"
FLINK = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--parallelism=4",
         "--environment_type=EXTERNAL", "--environment_config=localhost:50000"]
BEAM_COMPONENTS = ("SequenceExampleGen", "StatisticsGen", "TaskExampleGen_gender", "TaskExampleGen_cold_start")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiles the tiny config with Flink Beam arguments through the ``peterrec compile`` command."""
    from peterrec.cli import main

    output = str(tmp_path_factory.mktemp("compiled") / "pipeline.json")
    config_path = str(tmp_path_factory.mktemp("config") / "tiny.json")
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(testing.tiny_config_dict(), handle)
    status = main(["compile", "--config", config_path, "--output", output, "--image", IMAGE,
                   "--pipeline-root", "gs://bucket/root", "--beam-runner", "flink",
                   "--flink-master", "flink-jobmanager:8081", "--parallelism", "4",
                   "--environment-type", "EXTERNAL", "--environment-config", "localhost:50000"])
    assert status == 0
    job, spec = kubeflow_runner.load_pipeline_job(output)
    return testing.tiny_config(), job, spec


def _executors(spec):
    """The deployment spec's executors as plain dicts (the spec holds them as a Struct)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(spec.deployment_spec)["executors"]


def test_every_component_is_a_task_with_its_executor_and_image(compiled):
    config, job, spec = compiled
    assert spec.pipeline_info.name == config.pipeline_name
    tasks = spec.root.dag.tasks
    assert sorted(tasks) == sorted(pipeline.component_ids(config))
    executors = _executors(spec)
    for name, task in tasks.items():
        component = spec.components[task.component_ref.name]
        executor = executors[component.executor_label]
        assert executor["container"]["image"] == IMAGE, name
        args = list(executor["container"].get("args", []))
        if name != "ImportSchemaGen":
            assert "--executor_class_path" in args or "--json_serialized_invocation_args" in args, name
    classes = {name: executors[spec.components[t.component_ref.name].executor_label]["container"]["args"][1]
               for name, t in tasks.items()}
    # Each executor lives in its component's folder: peterrec.pipeline.components.<folder>.executor.
    expected = {"Trainer_pretrain": "trainer.executor.PeterRecTrainerExecutor",
                "TaskEvaluator_gender": "task_evaluator.executor.TaskEvaluatorExecutor",
                "ServingModelAssembler": "serving_assembler.executor.ServingModelAssemblerExecutor",
                "Pusher": "serving_pusher.executor.ServingPusherExecutor",
                "ExampleValidator": "example_validator.executor.StrictExampleValidatorExecutor"}
    for name, path in expected.items():
        assert classes[name] == "peterrec.pipeline.components." + path, name
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"


def test_the_graph_wires_backbone_patches_and_blessings(compiled):
    config, _, spec = compiled
    tasks = spec.root.dag.tasks

    def producer(task, key):
        return tasks[task].inputs.artifacts[key].task_output_artifact.producer_task

    for task in config.tasks:
        trainer = f"Trainer_{task.name}"
        assert producer(trainer, "base_model") == "Trainer_pretrain"
        assert producer(trainer, "examples") == f"TaskExampleGen_{task.name}"
        assert producer(trainer, "task_vocabulary") == f"TaskExampleGen_{task.name}"
        assert producer(trainer, "item_vocabulary") == "SequenceExampleGen"
        assert producer(f"TaskEvaluator_{task.name}", "model") == trainer
        assert producer("ServingModelAssembler", f"patch_{task.name}") == trainer
        assert producer("ServingModelAssembler", f"blessing_{task.name}") == f"TaskEvaluator_{task.name}"
        assert "ExampleValidator" in tasks[f"TaskExampleGen_{task.name}"].dependent_tasks
    assert producer("ServingModelAssembler", "backbone") == "Trainer_pretrain"
    assert producer("Pusher", "model") == "ServingModelAssembler"
    assert producer("Pusher", "model_blessing") == "ServingModelAssembler"
    assert "ExampleValidator" in tasks["Trainer_pretrain"].dependent_tasks


def test_every_runtime_parameter_is_declared_wired_and_defaulted(compiled):
    from peterrec.components.executor import ingest_config_from_json

    config, job, spec = compiled
    names = pipeline.runtime_parameter_names(config)
    assert sorted(spec.root.input_definitions.parameters) == sorted(names)
    values = job.runtime_config.parameters
    assert sorted(values) == sorted(names), "every parameter carries the config's value as its default"
    tasks = spec.root.dag.tasks
    wiring = {("SequenceExampleGen", "ingest_config"): "ingest_config",
              ("Trainer_pretrain", "custom_config"): "pretrain_config",
              ("Pusher", "push_destination"): "push_destination"}
    for task in config.tasks:
        wiring[(f"TaskExampleGen_{task.name}", "task_config")] = f"task_config_{task.name}"
        wiring[(f"Trainer_{task.name}", "custom_config")] = f"finetune_config_{task.name}"
        wiring[(f"TaskEvaluator_{task.name}", "threshold")] = f"threshold_{task.name}"
    for (node, key), parameter in wiring.items():
        assert tasks[node].inputs.parameters[key].component_input_parameter == parameter, (node, key)

    ingest = ingest_config_from_json(values["ingest_config"].string_value)
    assert (ingest.max_len, ingest.domain, ingest.source_path) == (16, "source", "gs://bucket/root/data/interactions.csv")
    assert json.loads(values["pretrain_config"].string_value)["pretrain"]["backbone"]["embedding_dim"] == 16
    assert json.loads(values["threshold_cold_start"].string_value)["metric"] == "hr@10"
    finetune = json.loads(values["finetune_config_gender"].string_value)["finetune"]
    assert finetune["task"]["strategy"] == "peterrec-serial"
    destination = json.loads(values["push_destination"].string_value)
    assert destination["filesystem"]["baseDirectory"] == "gs://bucket/root/serving/peterrec"


def test_beam_arguments_reach_the_beam_components(compiled):
    _, _, spec = compiled
    executors = _executors(spec)
    for name in BEAM_COMPONENTS:
        component = spec.components[spec.root.dag.tasks[name].component_ref.name]
        args = list(executors[component.executor_label]["container"]["args"])
        for flag in FLINK:
            assert flag in args, (name, flag)


def test_beam_flags_of_each_runner_parse_with_beam_options():
    from apache_beam.options import pipeline_options as po

    direct = po.PipelineOptions(kubeflow_runner.beam_args("direct"))
    assert direct.view_as(po.StandardOptions).runner == "DirectRunner"
    assert direct.view_as(po.DirectOptions).direct_running_mode == "multi_processing"
    assert direct.view_as(po.DirectOptions).direct_num_workers == 0

    flink = po.PipelineOptions(kubeflow_runner.beam_args(
        "flink", flink_master="jm:8081", parallelism=4, environment_type="EXTERNAL",
        environment_config="localhost:50000"))
    assert flink.view_as(po.StandardOptions).runner == "FlinkRunner"
    assert flink.view_as(po.FlinkRunnerOptions).flink_master == "jm:8081"
    assert flink.view_as(po.FlinkRunnerOptions).parallelism == 4
    assert flink.view_as(po.PortableOptions).environment_type == "EXTERNAL"
    assert flink.view_as(po.PortableOptions).environment_config == "localhost:50000"

    spark = po.PipelineOptions(kubeflow_runner.beam_args("spark", spark_master_url="spark://m:7077",
                                                         environment_type="DOCKER"))
    assert spark.view_as(po.StandardOptions).runner == "SparkRunner"
    assert spark.view_as(po.SparkRunnerOptions).spark_master_url == "spark://m:7077"
    assert spark.view_as(po.PortableOptions).environment_type == "DOCKER"

    dataflow = po.PipelineOptions(kubeflow_runner.beam_args(
        "dataflow", project="p", region="europe-west4", temp_location="gs://b/tmp",
        sdk_container_image=IMAGE, extra=["--max_num_workers=8", "--region=us-central1"]))
    cloud = dataflow.view_as(po.GoogleCloudOptions)
    assert dataflow.view_as(po.StandardOptions).runner == "DataflowRunner"
    assert (cloud.project, cloud.region, cloud.temp_location) == ("p", "us-central1", "gs://b/tmp"), \
        "an extra flag replaces the built one"
    assert dataflow.view_as(po.WorkerOptions).max_num_workers == 8
    assert dataflow.view_as(po.WorkerOptions).sdk_container_image == IMAGE


@pytest.mark.parametrize("runner, options, missing", [
    ("flink", {}, "--flink-master"),
    ("spark", {}, "--spark-master-url"),
    ("dataflow", {"project": "p"}, "--region, --temp-location"),
    ("samza", {}, "not one of"),
])
def test_runner_settings_that_are_missing_are_named(runner, options, missing):
    with pytest.raises(kubeflow_runner.CompileError, match=missing):
        kubeflow_runner.beam_args(runner, **options)
    with pytest.raises(kubeflow_runner.CompileError, match="--flag=value"):
        kubeflow_runner.beam_args("direct", extra=["direct_num_workers=2"])
