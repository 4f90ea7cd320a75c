"""peterrec's custom TFX components: ``InteractionExampleGen`` and ``TaskExampleGen``.

``InteractionExampleGen`` wraps the Beam ingestion (``peterrec.components.ingest``)::

    gen = InteractionExampleGen(source_format="csv", source_path="/data/interactions.csv",
                                max_len=50)
    statistics = StatisticsGen(examples=gen.outputs["examples"])

- parameter ``ingest_config``: JSON of ``IngestConfig`` fields (build it from an
  ``IngestConfig``, a dict, a JSON string or keyword arguments; validated when the
  component is built, so a bad config fails before the pipeline runs);
- optional input ``base_vocabulary`` (``peterrec.Vocabulary``): map items through an
  existing item vocabulary instead of building one (new data for a trained model);
- outputs ``examples`` (``Examples``, splits from the config, ``Split-<name>/`` GZIP
  TFRecords of ``tf.train.Example``: StatisticsGen, SchemaGen and ExampleValidator read
  it), ``vocabulary`` (``peterrec.Vocabulary``, uri/vocabulary.json) and ``rejects``
  (``peterrec.IngestRejects``: the rejected lines and ``summary.json``). The summary
  counts are custom properties of ``examples`` and ``rejects``; the vocabulary's kind,
  size and fingerprint are custom properties of ``vocabulary``.

``TaskExampleGen`` builds a fine-tuning task's examples over that item vocabulary
(its node id defaults to ``TaskExampleGen_<task_name>``, so one per task fits in a
pipeline); see its docstring.

Both components carry ``SourceFingerprintDriver``: local and Beam orchestrators add a
``source_fingerprint`` of the source files to the cache key, so new data under the same
path runs again (Kubeflow V2 ignores custom drivers: there the cache key is the config).

Both run on Beam: ``beam_pipeline_args`` of the pipeline (or
``.with_beam_pipeline_args``) reach the ingestion unchanged.
"""

from typing import Any, Mapping, Optional, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from peterrec.components import executor
from peterrec.components.artifact_types import IngestRejects, Vocabulary

__all__ = [
    "InteractionExampleGen", "InteractionExampleGenSpec", "TaskExampleGen", "TaskExampleGenSpec",
    "Vocabulary", "IngestRejects",
]


class InteractionExampleGenSpec(types.ComponentSpec):
    """Parameters, inputs and outputs of ``InteractionExampleGen``."""

    PARAMETERS = {
        executor.INGEST_CONFIG_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.BASE_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
    }
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
        executor.REJECTS_KEY: ChannelParameter(type=IngestRejects),
    }


def _as_mapping(config: Any, what: str) -> dict:
    """A config given as None, a JSON string, a mapping or a dataclass, as a dict."""
    import dataclasses

    if config is None:
        return {}
    if isinstance(config, str):
        return dict(executor.parse_json_object(config, what))
    if isinstance(config, Mapping):
        return dict(config)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    raise executor.ComponentConfigError(
        f"{what} must be a config dataclass, a dict or a JSON string, got {type(config).__name__}")


def _ingest_config_parameter(ingest_config: Any, fields: Mapping[str, Any]) -> Union[str, data_types.RuntimeParameter]:
    """Turns the constructor's config arguments into the validated JSON parameter."""
    if isinstance(ingest_config, data_types.RuntimeParameter):
        if fields:
            raise executor.ComponentConfigError(
                "pass either a RuntimeParameter ingest_config or config fields, not both")
        if ingest_config.ptype is not str:
            raise executor.ComponentConfigError("a RuntimeParameter ingest_config must have ptype=str")
        return ingest_config
    data = _as_mapping(ingest_config, executor.INGEST_CONFIG_KEY)
    data.update(fields)
    return executor.config_to_json(executor.ingest_config_from_json(data))


class InteractionExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests interaction logs into per-user ``tf.train.Example`` records (each user's item
    sequence as a list feature), an item Vocabulary and the rejects.

    Args:
      ingest_config: an ``IngestConfig``, a dict or JSON string of its fields, or a
        ``RuntimeParameter`` (ptype str) holding that JSON.
      base_vocabulary: optional channel of a ``peterrec.Vocabulary`` (item kind) to reuse.
      **config_fields: ``IngestConfig`` fields, overriding those of ``ingest_config``
        (``InteractionExampleGen(source_format="csv", source_path=...)``).

    Raises:
      ComponentConfigError: the config has unknown or missing fields or fails
        ``IngestConfig.validate``.
    """

    SPEC_CLASS = InteractionExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.InteractionExampleGenExecutor)
    DRIVER_CLASS = executor.SourceFingerprintDriver

    def __init__(self, ingest_config: Any = None, base_vocabulary: Optional[types.BaseChannel] = None,
                 **config_fields: Any):
        spec = InteractionExampleGenSpec(
            ingest_config=_ingest_config_parameter(ingest_config, config_fields),
            base_vocabulary=base_vocabulary,
            examples=types.Channel(type=standard_artifacts.Examples),
            vocabulary=types.Channel(type=Vocabulary),
            rejects=types.Channel(type=IngestRejects),
        )
        super().__init__(spec=spec)


class TaskExampleGenSpec(types.ComponentSpec):
    """Parameters, inputs and outputs of ``TaskExampleGen``."""

    PARAMETERS = {
        executor.TASK_NAME_KEY: ExecutionParameter(type=str),
        executor.TASK_KIND_KEY: ExecutionParameter(type=str),
        executor.TASK_CONFIG_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
        executor.BASE_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
    }
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.TASK_VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
        executor.REJECTS_KEY: ChannelParameter(type=IngestRejects),
    }


def _task_config_parameter(kind: str, task_config: Any, fields: Mapping[str, Any]) -> Union[str, data_types.RuntimeParameter]:
    """Turns the constructor's task config arguments into the validated JSON parameter."""
    if isinstance(task_config, data_types.RuntimeParameter):
        if fields or task_config.ptype is not str:
            raise executor.ComponentConfigError(
                "a RuntimeParameter task_config must have ptype=str and comes without config fields")
        return task_config
    data = _as_mapping(task_config, executor.TASK_CONFIG_KEY)
    data.update(fields)
    return executor.config_to_json(executor.task_config_from_json(kind, data))


# The earlier names: the component writes one tf.train.Example per user sequence (not
# tf.train.SequenceExample), named like TFX's example gens after what it reads. Pipeline
# definitions that import the old names keep working.
SequenceExampleGen = InteractionExampleGen
SequenceExampleGenSpec = InteractionExampleGenSpec


class TaskExampleGen(base_beam_component.BaseBeamComponent):
    """Builds one fine-tuning task's examples over the item vocabulary of InteractionExampleGen.

    ``kind="classification"`` (user attribute tasks: ``label`` per example, a label
    vocabulary) or ``kind="cold_start"`` (``target_item_ids`` per example, a target-item
    vocabulary)::

        gender = TaskExampleGen(task_name="gender", kind="classification",
                                vocabulary=gen.outputs["vocabulary"], task_config=ingest_config,
                                label_format="csv", label_path="/data/gender.csv")

    Args:
      task_name: the task's name (an identifier: it becomes a serving signature name).
      kind: ``classification`` (alias ``attribute``) or ``cold_start``.
      vocabulary: channel of the item ``peterrec.Vocabulary`` (InteractionExampleGen's
        ``vocabulary`` output); the examples' item ids come from it and its fingerprint
        is checked.
      task_config: an ``AttributeTaskConfig`` / ``ColdStartTaskConfig`` (from
        ``peterrec.components.task_examples``), an ``IngestConfig`` to start from (the
        same source as the pretraining ingestion), a dict or JSON string of fields, or
        a ``RuntimeParameter`` (ptype str) holding that JSON.
      base_task_vocabulary: optional channel of a label / target vocabulary to reuse.
      **config_fields: task config fields overriding those of ``task_config``:
        classification: ``label_format``, ``label_path``, ``attribute`` (the label
        column or MovieLens attribute); cold start: ``domain_rule``,
        ``source_domain``, ``target_domain``, ``max_target_items``; both: every
        ``IngestConfig`` field.

    Outputs: ``examples`` (Examples, ``Split-<name>/`` GZIP TFRecords), ``task_vocabulary``
    (``peterrec.Vocabulary`` of kind ``label`` or ``target``) and ``rejects``
    (``peterrec.IngestRejects``). All three carry the custom properties ``task_name`` and
    ``task_kind``; ``examples`` and ``rejects`` carry the summary counts.
    """

    SPEC_CLASS = TaskExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.TaskExampleGenExecutor)
    DRIVER_CLASS = executor.SourceFingerprintDriver

    def __init__(self, task_name: str, kind: str, vocabulary: types.BaseChannel, task_config: Any = None,
                 base_task_vocabulary: Optional[types.BaseChannel] = None, **config_fields: Any):
        kind = executor.normalise_kind(kind)
        spec = TaskExampleGenSpec(
            task_name=executor.check_task_name(task_name),
            kind=kind,
            task_config=_task_config_parameter(kind, task_config, config_fields),
            vocabulary=vocabulary,
            base_vocabulary=base_task_vocabulary,
            examples=types.Channel(type=standard_artifacts.Examples),
            task_vocabulary=types.Channel(type=Vocabulary),
            rejects=types.Channel(type=IngestRejects),
        )
        super().__init__(spec=spec)
        # One TaskExampleGen per task in a pipeline: ids must differ (``with_id`` overrides).
        self.id = f"TaskExampleGen_{task_name}"
