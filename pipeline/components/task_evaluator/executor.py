"""``TaskEvaluatorExecutor``: evaluates a task's patch on its examples and blesses it or not.

The maths (metrics, baselines, the decision) is ``peterrec.trainer.evaluation``; this module
loads the artifacts, runs it and writes ``metrics.json`` and the blessing.
"""

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from peterrec.pipeline import config as config_lib
from peterrec.pipeline.components.common import (
    BASE_MODEL_KEY, BATCH_SIZE_KEY, BLESSING_KEY, EVALUATION_KEY, EXAMPLES_KEY, KIND_KEY, MAX_LEN_KEY,
    METRICS_FILE, MODEL_KEY, TASK_NAME_KEY, THRESHOLD_KEY, backbone_dir_of, local_copy, patch_dir_of, single,
    write_blessing, write_text)
from peterrec.trainer import evaluation


class BlessingError(evaluation.EvaluationError):
    """A task's evaluation could not be carried out (missing split, empty data, ...)."""


def parse_threshold(text: str, kind: str) -> config_lib.ThresholdConfig:
    """The ``threshold`` execution parameter (JSON of ThresholdConfig fields), validated."""
    return config_lib.parse_threshold(json.loads(text), kind, where="TaskEvaluator")


def _load_task_model(input_dict: Dict[str, List[types.Artifact]]):
    """The fine-tuned task model (patch on the pretrained backbone) and its patch metadata."""
    from peterrec.trainer import artifacts

    work = tempfile.mkdtemp(prefix="peterrec-evaluate-")
    try:
        backbone_dir = local_copy(backbone_dir_of(single(input_dict[BASE_MODEL_KEY], BASE_MODEL_KEY)), work)
        patch_dir = local_copy(patch_dir_of(single(input_dict[MODEL_KEY], MODEL_KEY)), work)
        backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
        return artifacts.load_patch_artifact(patch_dir, backbone, vocabulary)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _evaluate(task_name: str, kind: str, task_model, examples_uri: str, threshold, max_len: int,
              batch_size: int) -> Dict[str, Any]:
    """The evaluation of ``trainer.evaluation`` for the task's kind; its errors become BlessingErrors."""
    try:
        if kind == config_lib.CLASSIFICATION:
            return evaluation.evaluate_classification(task_model, examples_uri, threshold.split, max_len,
                                                      batch_size, int(task_model.config.num_outputs))
        return evaluation.evaluate_cold_start(task_model, examples_uri, threshold.split, max_len, batch_size,
                                              [threshold.metric])
    except BlessingError:
        raise
    except evaluation.EvaluationError as error:
        raise BlessingError(f"task {task_name!r}: {error}") from error


class TaskEvaluatorExecutor(base_executor.BaseExecutor):
    """Evaluates a fine-tuned task against its baseline; writes metrics and the blessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """See ``TaskEvaluator``."""
        from peterrec.trainer.runtime import skip_autograph_for_tf_keras

        self._log_startup(input_dict, output_dict, exec_properties)
        skip_autograph_for_tf_keras()
        task_name = exec_properties[TASK_NAME_KEY]
        kind = exec_properties[KIND_KEY]
        threshold = parse_threshold(exec_properties[THRESHOLD_KEY], kind)
        max_len = int(exec_properties[MAX_LEN_KEY])
        batch_size = int(exec_properties.get(BATCH_SIZE_KEY) or 256)
        examples = single(input_dict[EXAMPLES_KEY], EXAMPLES_KEY)
        splits = artifact_utils.decode_split_names(examples.split_names)
        if threshold.split not in splits:
            raise BlessingError(f"task {task_name!r}: the examples have no split {threshold.split!r} "
                                f"(they have {splits}); set tasks[].threshold.split")
        task_model, metadata = _load_task_model(input_dict)
        if metadata.kind != kind:
            raise BlessingError(f"task {task_name!r} is configured as {kind} but its patch artifact is "
                                f"{metadata.kind}")
        result = _evaluate(task_name, kind, task_model, examples.uri, threshold, max_len, batch_size)
        value = float(result["model"][threshold.metric])
        baseline_value = float(result["baseline"][threshold.metric]) if threshold.baseline != "none" else None
        blessed, reason = evaluation.decide_blessing(value, baseline_value, threshold)
        report = {
            "task": task_name, "kind": kind, "strategy": metadata.strategy, "split": threshold.split,
            "metric": threshold.metric, "value": value, "baseline": threshold.baseline,
            "baseline_value": baseline_value, "min_lift": threshold.min_lift, "min_value": threshold.min_value,
            "blessed": blessed, "reason": reason, "examples": result["examples"],
            "metrics": result["model"], "baseline_metrics": result["baseline"],
            "trainable_params": int(metadata.trainable_params), "fine_all_params": int(metadata.fine_all_params),
            "training_metrics": dict(metadata.metrics),
        }
        evaluation_artifact = single(output_dict[EVALUATION_KEY], EVALUATION_KEY)
        write_text(os.path.join(evaluation_artifact.uri, METRICS_FILE), json.dumps(report, indent=2, sort_keys=True))
        for name, metric_value in result["model"].items():
            evaluation_artifact.set_float_custom_property(name, float(metric_value))
        if baseline_value is not None:
            evaluation_artifact.set_float_custom_property(f"baseline_{threshold.metric}", baseline_value)
        evaluation_artifact.set_string_custom_property(TASK_NAME_KEY, task_name)
        write_blessing(single(output_dict[BLESSING_KEY], BLESSING_KEY), blessed, reason,
                       {TASK_NAME_KEY: task_name, "metric": threshold.metric, "value": value})
        logging.info("TaskEvaluator %s: %s -> %s", task_name, reason, "BLESSED" if blessed else "NOT BLESSED")
        print(f"evaluate {task_name}: {reason} -> {'blessed' if blessed else 'NOT blessed'}", flush=True)
