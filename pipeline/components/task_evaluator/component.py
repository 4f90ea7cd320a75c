"""``TaskEvaluator``: the component and its spec (see the executor for what it computes)."""

import json
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from peterrec.pipeline import config as config_lib
from peterrec.pipeline.components.common import (
    BASE_MODEL_KEY, BATCH_SIZE_KEY, BLESSING_KEY, EVALUATION_KEY, EXAMPLES_KEY, KIND_KEY, MAX_LEN_KEY, MODEL_KEY,
    TASK_NAME_KEY, THRESHOLD_KEY)
from peterrec.pipeline.components.task_evaluator.executor import TaskEvaluatorExecutor


class TaskEvaluatorSpec(types.ComponentSpec):
    """Parameters, inputs and outputs of ``TaskEvaluator``."""

    PARAMETERS = {
        TASK_NAME_KEY: ExecutionParameter(type=str),
        KIND_KEY: ExecutionParameter(type=str),
        THRESHOLD_KEY: ExecutionParameter(type=str),
        MAX_LEN_KEY: ExecutionParameter(type=int),
        BATCH_SIZE_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BASE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class TaskEvaluator(base_component.BaseComponent):
    """Evaluates one fine-tuned task and blesses it only if it beats its threshold.

    The baseline comes from the training split: the majority class for classification,
    item popularity for cold start (``peterrec.trainer.evaluation``). The blessing follows
    TFX's Evaluator (a ``BLESSED`` or ``NOT_BLESSED`` file and the ``blessed`` property).

    Args:
      task_name, kind: the task (``classification`` or ``cold_start``).
      examples: the task's Examples (TaskExampleGen); the baseline comes from ``train``, the
        metric from ``threshold.split``.
      model: the fine-tuning Trainer's Model (a patch artifact).
      base_model: the pretraining Trainer's Model (the backbone export).
      threshold: a ``ThresholdConfig``, a dict of its fields or a RuntimeParameter (str)
        holding their JSON (validated when the executor runs).
      max_len: items kept per sequence (as in training).

    Outputs: ``evaluation`` (ModelEvaluation: ``metrics.json`` with the metric, the baseline,
    every metric of both, the decision and its reason) and ``blessing`` (ModelBlessing).
    """

    SPEC_CLASS = TaskEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TaskEvaluatorExecutor)

    def __init__(self, task_name: str, kind: str, examples: types.BaseChannel, model: types.BaseChannel,
                 base_model: types.BaseChannel, threshold: Any, max_len: int, batch_size: int = 256):
        if isinstance(threshold, data_types.RuntimeParameter):
            if threshold.ptype is not str:
                raise ValueError("a RuntimeParameter threshold must have ptype=str (JSON of the threshold)")
            threshold_parameter = threshold
        else:
            if isinstance(threshold, config_lib.ThresholdConfig):
                threshold = threshold.to_dict()
            threshold_config = config_lib.parse_threshold(dict(threshold), kind, where="TaskEvaluator")
            threshold_parameter = json.dumps(threshold_config.to_dict(), sort_keys=True)
        spec = TaskEvaluatorSpec(
            task_name=task_name, kind=kind, threshold=threshold_parameter,
            max_len=int(max_len), batch_size=int(batch_size), examples=examples, model=model,
            base_model=base_model,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)
        self.id = f"TaskEvaluator_{task_name}"
