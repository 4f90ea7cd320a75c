"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines (KubeflowV2DagRunner).

    peterrec compile --config my_config.json --output pipeline.json \\
        --pipeline-root gs://BUCKET/peterrec --image REGISTRY/peterrec-pipeline:TAG \\
        --beam-runner dataflow --beam-arg=--project=P --beam-arg=--region=europe-west4 \\
        --beam-arg=--temp_location=gs://BUCKET/tmp

writes a ``PipelineJob`` JSON (the KFP ``pipeline_spec`` plus the runtime config) that the KFP
client or Vertex AI submits. Every component runs in the pipeline image (``deploy/Dockerfile``)
through TFX's ``kubeflow_v2_run_executor``. The settings a run may change are runtime
parameters with the config's values as defaults (``peterrec.pipeline.pipeline.runtime_parameter_names``):
``ingest_config``, ``pretrain_config``, ``push_destination`` and, per task,
``task_config_<task>``, ``finetune_config_<task>`` and ``threshold_<task>``.

Beam: the Beam components (InteractionExampleGen, TaskExampleGen, StatisticsGen) take
``beam_pipeline_args``; ``beam_args(runner, ...)`` builds them for

- ``direct``: the DirectRunner inside the component's pod, multi-processing over its cores
  (``--direct_running_mode=multi_processing --direct_num_workers=0``: one worker per core);
- ``flink``: a Flink cluster through Beam's portable runner: ``--runner=FlinkRunner
  --flink_master=HOST:PORT --environment_type=EXTERNAL|DOCKER --environment_config=...
  --parallelism=N``;
- ``spark``: ``--runner=SparkRunner --spark_master_url=spark://HOST:7077
  --environment_type=... --environment_config=...``;
- ``dataflow``: ``--runner=DataflowRunner --project=P --region=R --temp_location=gs://...
  --sdk_container_image=IMAGE`` (the pipeline image, so workers have peterrec installed).

Extra ``--beam-arg`` flags pass through unchanged. Nothing here is run on a cluster by the
tests: they compile the pipeline and parse the flags with Beam's own option classes.
"""

import os
from typing import Dict, List, Optional, Sequence

from peterrec.pipeline import config as config_lib

DEFAULT_IMAGE = "peterrec-pipeline:latest"
DEFAULT_PIPELINE_ROOT = "gs://YOUR_BUCKET/peterrec"
BEAM_RUNNERS = ("direct", "flink", "spark", "dataflow")
_RUNNER_NAMES = {"direct": "DirectRunner", "flink": "FlinkRunner", "spark": "SparkRunner",
                 "dataflow": "DataflowRunner"}


class CompileError(ValueError):
    """The pipeline cannot be compiled as asked (the message says what to change)."""


def beam_args(runner: str = "direct", flink_master: Optional[str] = None, spark_master_url: Optional[str] = None,
              project: Optional[str] = None, region: Optional[str] = None, temp_location: Optional[str] = None,
              environment_type: Optional[str] = None, environment_config: Optional[str] = None,
              parallelism: Optional[int] = None, sdk_container_image: Optional[str] = None,
              extra: Sequence[str] = ()) -> List[str]:
    """The ``beam_pipeline_args`` for one of ``BEAM_RUNNERS`` (see the module docstring).

    Raises CompileError when a runner's required setting is missing (Flink's master, Spark's
    master URL, Dataflow's project, region and temp location).
    """
    if runner not in BEAM_RUNNERS:
        raise CompileError(f"beam runner {runner!r} is not one of {list(BEAM_RUNNERS)}")
    args = [f"--runner={_RUNNER_NAMES[runner]}"]
    if runner == "direct":
        args += ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
    elif runner == "flink":
        if not flink_master:
            raise CompileError("the Flink runner needs --flink-master HOST:PORT (the Flink JobManager's REST address)")
        args.append(f"--flink_master={flink_master}")
        if parallelism:
            args.append(f"--parallelism={int(parallelism)}")
    elif runner == "spark":
        if not spark_master_url:
            raise CompileError("the Spark runner needs --spark-master-url spark://HOST:PORT")
        args.append(f"--spark_master_url={spark_master_url}")
    elif runner == "dataflow":
        missing = [name for name, value in (("--project", project), ("--region", region),
                                            ("--temp-location", temp_location)) if not value]
        if missing:
            raise CompileError(f"the Dataflow runner needs {', '.join(missing)}")
        args += [f"--project={project}", f"--region={region}", f"--temp_location={temp_location}"]
        if sdk_container_image:
            args.append(f"--sdk_container_image={sdk_container_image}")
    if runner in ("flink", "spark"):
        if environment_type:
            args.append(f"--environment_type={environment_type}")
        if environment_config:
            args.append(f"--environment_config={environment_config}")
    given = {arg.split("=", 1)[0] for arg in args}
    for arg in extra:
        if not arg.startswith("--"):
            raise CompileError(f"Beam arguments look like --flag=value, got {arg!r}")
        if arg.split("=", 1)[0] in given:
            args = [a for a in args if a.split("=", 1)[0] != arg.split("=", 1)[0]]
        args.append(arg)
    return args


def runtime_parameter_defaults(pipeline) -> Dict[str, object]:
    """``{name: default}`` of every RuntimeParameter of a pipeline's components.

    TFX's Kubeflow V2 compiler declares the parameters without their defaults; the runner
    writes these values into the job's runtime config, so a compiled file runs as configured
    and a submission may still override any of them.
    """
    from tfx.orchestration import data_types

    defaults: Dict[str, object] = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter):
                defaults[value.name] = value.default
    return defaults


def compile_pipeline(config: config_lib.PipelineConfig, output: str, pipeline_root: str = DEFAULT_PIPELINE_ROOT,
                     image: str = DEFAULT_IMAGE, beam_pipeline_args: Sequence[str] = (),
                     model_base: Optional[str] = None, labels: Optional[Dict[str, str]] = None) -> str:
    """Writes the compiled ``PipelineJob`` JSON of ``config`` to ``output``; returns its path.

    ``model_base`` defaults to ``PIPELINE_ROOT/serving/MODEL_NAME`` (the ``push_destination``
    runtime parameter can change it per run).
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from peterrec.pipeline.pipeline import create_pipeline

    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    pipeline = create_pipeline(config, pipeline_root, metadata_connection_config=None,
                               beam_pipeline_args=list(beam_pipeline_args), model_base=model_base,
                               runtime_parameters=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    runner.run(pipeline, parameter_values=runtime_parameter_defaults(pipeline), write_out=True)
    if labels:
        import json

        with open(output, encoding="utf-8") as handle:
            job = json.load(handle)
        job.setdefault("labels", {}).update(labels)
        with open(output, "w", encoding="utf-8") as handle:
            json.dump(job, handle, indent=2, sort_keys=True)
    return output


def load_pipeline_job(path: str):
    """Reads a compiled file -> ``(PipelineJob, PipelineSpec)`` protos of ``kfp.pipeline_spec``.

    The ``PipelineJob`` keeps its ``pipeline_spec`` as a Struct; it is parsed again, strictly,
    into a ``PipelineSpec`` so that every field is checked against the proto.
    """
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    job = pipeline_spec_pb2.PipelineJob()
    json_format.Parse(text, job)
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec), spec)
    return job, spec
