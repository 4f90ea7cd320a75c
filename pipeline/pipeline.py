"""``create_pipeline``: the whole PeterRec pipeline as one TFX pipeline.

    InteractionExampleGen -> StatisticsGen -> SchemaGen (or ImportSchemaGen) -> ExampleValidator
      -> Trainer_pretrain (pretrain_run_fn; it and the TaskExampleGens wait for the validator,
         which stops the run on anomalies)
      -> for each task: TaskExampleGen_<task> -> Trainer_<task> (finetune_run_fn, base_model =
         the pretrained backbone, strategy from the config) -> TaskEvaluator_<task> (blessing)
      -> ServingModelAssembler (backbone + blessed patches: one multi-signature SavedModel)
      -> Pusher (the model base of TF Serving, next integer version, models.config beside it)

``InteractionExampleGen`` (``peterrec.components.component``) writes one ``tf.train.Example`` per
user sequence (its items, oldest first), not ``tf.train.SequenceExample`` protos: the name
speaks of the user's item sequence, the record format is the plain Example TFX's
StatisticsGen, SchemaGen and ExampleValidator read.

Node ids are stable (``Trainer_pretrain``, ``Trainer_<task>``, ``TaskEvaluator_<task>``, ...),
so the metadata store, the cache and the compiled Kubeflow spec name every step the same way.
With ``runtime_parameters=True`` (the Kubeflow runner) the settings a run may change become
``RuntimeParameter``s whose defaults come from the config (see ``runtime_parameter_names``).
"""

import copy
import json
from typing import Any, Dict, List, Optional, Sequence

from peterrec.pipeline import config as config_lib

PRETRAIN_RUN_FN = "peterrec.trainer.run_fn.pretrain_run_fn"
FINETUNE_RUN_FN = "peterrec.trainer.run_fn.finetune_run_fn"

# Runtime parameters of a compiled pipeline (``{task}`` is each task's name).
INGEST_CONFIG_PARAMETER = "ingest_config"
PRETRAIN_CONFIG_PARAMETER = "pretrain_config"
TASK_EXAMPLES_PARAMETER = "task_config_{task}"
FINETUNE_CONFIG_PARAMETER = "finetune_config_{task}"
THRESHOLD_PARAMETER = "threshold_{task}"
PUSH_DESTINATION_PARAMETER = "push_destination"
# The ingestion's node id, fixed here rather than taken from the class name, so that renaming
# the component class keeps the node's history, cache and compiled wiring.
EXAMPLE_GEN_ID = "SequenceExampleGen"


def runtime_parameter_names(config: config_lib.PipelineConfig) -> List[str]:
    """Every runtime parameter the compiled pipeline of ``config`` has."""
    names = [INGEST_CONFIG_PARAMETER, PRETRAIN_CONFIG_PARAMETER, PUSH_DESTINATION_PARAMETER]
    for task in config.tasks:
        names += [p.format(task=task.name) for p in (TASK_EXAMPLES_PARAMETER, FINETUNE_CONFIG_PARAMETER,
                                                      THRESHOLD_PARAMETER)]
    return names


def component_ids(config: config_lib.PipelineConfig) -> List[str]:
    """The node ids of the pipeline of ``config``, in pipeline order."""
    ids = [EXAMPLE_GEN_ID, "StatisticsGen", "ImportSchemaGen" if config.data.schema_path else "SchemaGen",
           "ExampleValidator", "Trainer_pretrain"]
    for task in config.tasks:
        ids += [f"TaskExampleGen_{task.name}", f"Trainer_{task.name}", f"TaskEvaluator_{task.name}"]
    return ids + ["ServingModelAssembler", "Pusher"]


def pretrain_custom_config(config: config_lib.PipelineConfig) -> Dict[str, Any]:
    """The pretraining Trainer's ``custom_config``: ``{"pretrain": PretrainConfig dict}``.

    ``max_len`` defaults to the config's ``context_length``. The item vocabulary's folder is
    added at run time as ``custom_config["item_vocabulary"]``.
    """
    pretrain = copy.deepcopy(config.pretrain)
    pretrain.setdefault("max_len", config.context_length)
    return {"pretrain": pretrain}


def finetune_custom_config(config: config_lib.PipelineConfig, task: config_lib.TaskSpec) -> Dict[str, Any]:
    """A fine-tuning Trainer's ``custom_config``: ``{"finetune": FinetuneConfig dict}``.

    The dict holds the run settings of ``tasks[].finetune`` and ``task`` (the TaskConfig:
    name, kind, strategy and model fields; ``num_outputs`` comes from the task vocabulary).
    ``max_len`` defaults to the config's ``context_length``. The item and task vocabulary folders are added at
    run time as ``custom_config["item_vocabulary"]`` / ``["task_vocabulary"]``.
    """
    finetune = copy.deepcopy(task.run_fields())
    finetune.setdefault("max_len", config.context_length)
    finetune["task"] = {**task.task_config(), "num_outputs": 2}
    return {"finetune": finetune}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def create_pipeline(config: config_lib.PipelineConfig, pipeline_root: str,
                    metadata_connection_config=None, beam_pipeline_args: Optional[Sequence[str]] = None,
                    enable_cache: Optional[bool] = None, model_base: Optional[str] = None,
                    runtime_parameters: bool = False, pretrain_run_fn: str = PRETRAIN_RUN_FN,
                    finetune_run_fn: str = FINETUNE_RUN_FN):
    """Builds the TFX pipeline of ``config`` (see the module docstring).

    Args:
      config: a validated ``PipelineConfig`` (``peterrec.pipeline.config.load_config``).
      pipeline_root: where the artifacts go (local folder or a ``gs://`` path).
      metadata_connection_config: MLMD connection (the local runner passes SQLite under the
        pipeline root; Kubeflow passes none).
      beam_pipeline_args: added after the config's ``beam_pipeline_args``.
      enable_cache: overrides the config's ``enable_cache``.
      model_base: TF Serving model base path (default: the config's ``serving.model_base``
        or ``PIPELINE_ROOT/serving/MODEL_NAME``).
      runtime_parameters: expose ``runtime_parameter_names(config)`` as RuntimeParameters.
      pretrain_run_fn, finetune_run_fn: dotted paths of the Trainers' run functions.

    Returns a ``tfx.dsl.Pipeline``.
    """
    from tfx import v1 as tfx
    from tfx.orchestration import data_types
    from tfx.proto import pusher_pb2

    from peterrec.components.component import InteractionExampleGen, TaskExampleGen
    from peterrec.components.executor import config_to_json
    from peterrec.pipeline import components as pc

    def parameter(name: str, default: str):
        if not runtime_parameters:
            return None
        return data_types.RuntimeParameter(name=name, ptype=str, default=default)

    ingest_json = config_to_json(config.ingest_config(pipeline_root))
    gen = InteractionExampleGen(ingest_config=parameter(INGEST_CONFIG_PARAMETER, ingest_json) or ingest_json
                             ).with_id(EXAMPLE_GEN_ID)
    statistics = pc.LocalStatisticsGen(examples=gen.outputs["examples"]).with_id("StatisticsGen")
    if config.data.schema_path:
        schema = tfx.components.ImportSchemaGen(schema_file=config.data.schema_path)
    else:
        schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    validator = pc.StrictExampleValidator(statistics=statistics.outputs["statistics"],
                                          schema=schema.outputs["schema"]).with_id("ExampleValidator")
    pretrain_config = pretrain_custom_config(config)
    pretrainer = pc.PeterRecTrainer(
        examples=gen.outputs["examples"], run_fn=pretrain_run_fn, item_vocabulary=gen.outputs["vocabulary"],
        custom_config=parameter(PRETRAIN_CONFIG_PARAMETER, _json(pretrain_config)) or pretrain_config,
    ).with_id("Trainer_pretrain")
    pretrainer.add_upstream_node(validator)  # no training before the data passed validation
    components = [gen, statistics, schema, validator, pretrainer]

    patches, blessings = {}, {}
    max_len = config.context_length
    for task in config.tasks:
        task_fields = config.task_example_fields(task, pipeline_root)
        task_json = _json({k: (list(map(list, v)) if k == "split_fractions" else v) for k, v in task_fields.items()})
        task_examples = TaskExampleGen(
            task_name=task.name, kind=task.kind, vocabulary=gen.outputs["vocabulary"],
            task_config=parameter(TASK_EXAMPLES_PARAMETER.format(task=task.name), task_json) or task_fields)
        finetune_config = finetune_custom_config(config, task)
        trainer = pc.PeterRecTrainer(
            examples=task_examples.outputs["examples"], run_fn=finetune_run_fn,
            item_vocabulary=gen.outputs["vocabulary"], task_vocabulary=task_examples.outputs["task_vocabulary"],
            base_model=pretrainer.outputs["model"],
            custom_config=(parameter(FINETUNE_CONFIG_PARAMETER.format(task=task.name), _json(finetune_config))
                           or finetune_config),
        ).with_id(f"Trainer_{task.name}")
        evaluator = pc.TaskEvaluator(
            task_name=task.name, kind=task.kind, examples=task_examples.outputs["examples"],
            model=trainer.outputs["model"], base_model=pretrainer.outputs["model"],
            threshold=(parameter(THRESHOLD_PARAMETER.format(task=task.name), _json(task.threshold.to_dict()))
                       or task.threshold),
            max_len=max_len)
        task_examples.add_upstream_node(validator)  # task data only from validated data
        components += [task_examples, trainer, evaluator]
        patches[task.name] = trainer.outputs["model"]
        blessings[task.name] = evaluator.outputs["blessing"]

    assembler = pc.ServingModelAssembler(
        backbone=pretrainer.outputs["model"], patches=patches, blessings=blessings,
        model_name=config.serving.model_name, top_k=config.serving.top_k, max_len=config.serving_max_len,
        require_all_tasks=config.serving.require_all_tasks)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=model_base or config.serving.resolved_model_base(pipeline_root)))
    if runtime_parameters:
        from google.protobuf import json_format

        push_destination = parameter(PUSH_DESTINATION_PARAMETER, json_format.MessageToJson(destination, indent=None))
    else:
        push_destination = destination
    pusher = pc.ServingPusher(model=assembler.outputs["model"], model_blessing=assembler.outputs["blessing"],
                              push_destination=push_destination).with_id("Pusher")
    components += [assembler, pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.enable_cache if enable_cache is None else bool(enable_cache),
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args) + list(beam_pipeline_args or ()),
    )
