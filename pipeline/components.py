"""The pipeline's own TFX components: task evaluation, serving-model assembly, push, strict validation.

- ``TaskEvaluator``: evaluates one fine-tuned task (its patch artifact on the pretrained
  backbone) on a split of the task's examples, beside a baseline computed from the training
  split (majority class for classification, item popularity for cold start). Writes
  ``metrics.json`` into a ``ModelEvaluation`` and blesses the task (``ModelBlessing`` with a
  ``BLESSED`` or ``NOT_BLESSED`` file and the ``blessed`` custom property, as TFX's Evaluator
  does) only if the metric beats the baseline by ``min_lift`` and reaches ``min_value``.
- ``ServingModelAssembler``: one multi-signature SavedModel (``peterrec.serving.assembly``)
  from the pretrained backbone and the patches of the blessed tasks, in its ``model`` output
  (``Format-Serving/``, the layout TFX's Pusher reads), plus a ``blessing``: blessed when
  every task is blessed (``require_all_tasks``) or at least one is.
- ``ServingPusherExecutor``: TFX's Pusher with a filesystem destination, except that the new
  version is the next integer under the model base (as ``peterrec export`` numbers them),
  published by an atomic rename, and ``models.config`` (plus the batching and monitoring
  files) beside the model base is updated for TF Serving and ``peterrec serve``.
- ``StrictExampleValidatorExecutor``: TFX's ExampleValidator that, after writing its
  anomalies, fails the execution with a message naming every anomaly, so bad data stops the
  run before training.
- ``PeterRecTrainer``: TFX's Trainer that also hands the Vocabulary artifacts to the run_fn.
- ``LocalStatisticsGen``: TFX's StatisticsGen that, on the local DirectRunner, skips TFX's
  packaging of itself for remote Beam workers.
"""

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
from tfx import types
from tfx.components.example_validator import component as example_validator_component
from tfx.components.example_validator import executor as example_validator_executor
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.components.statistics_gen import component as statistics_gen_component
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.trainer import component as trainer_component
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.orchestration import data_types
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils, proto_utils

from peterrec.components import executor as executor_lib
from peterrec.components.artifact_types import Vocabulary
from peterrec.pipeline import config as config_lib

# Keys of the component specs.
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASE_MODEL_KEY = "base_model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
BACKBONE_KEY = "backbone"
TASK_NAME_KEY = "task_name"
KIND_KEY = "kind"
THRESHOLD_KEY = "threshold"
MAX_LEN_KEY = "max_len"
BATCH_SIZE_KEY = "batch_size"
TASK_NAMES_KEY = "task_names"
MODEL_NAME_KEY = "model_name"
TOP_K_KEY = "top_k"
REQUIRE_ALL_KEY = "require_all_tasks"
PATCH_PREFIX = "patch_"
BLESSING_PREFIX = "blessing_"

METRICS_FILE = "metrics.json"
ASSEMBLY_FILE = "assembly.json"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
BLESSED_PROPERTY = "blessed"
VERSION_LABEL_KEY = "version_label"
# Inputs of PeterRecTrainer whose folders reach the run_fn as fn_args.custom_config[key].
ITEM_VOCABULARY_KEY = "item_vocabulary"
TASK_VOCABULARY_KEY = "task_vocabulary"


class DataAnomalyError(RuntimeError):
    """ExampleValidator found anomalies: the message lists them (split, feature, description)."""


class BlessingError(RuntimeError):
    """A task's evaluation could not be carried out (missing split, empty data, ...)."""


# ------------------------------------------------------------------------------- helpers
def _single(artifacts: Sequence[types.Artifact], key: str) -> types.Artifact:
    artifacts = list(artifacts or [])
    if len(artifacts) != 1:
        raise ValueError(f"{key}: expected exactly one artifact, got {len(artifacts)}")
    return artifacts[0]


def _find_dir_with(root: str, filename: str, what: str) -> str:
    """The folder under ``root`` (itself or below) that holds ``filename``."""
    if fileio.exists(os.path.join(root, filename)):
        return root
    for folder, _, files in fileio.walk(root):
        if filename in files:
            return folder
    raise FileNotFoundError(f"{what}: no {filename} under {root}")


def backbone_dir_of(model_artifact: types.Artifact) -> str:
    """The backbone export inside a pretraining Trainer's Model artifact."""
    from peterrec.trainer import artifacts

    return _find_dir_with(os.path.join(model_artifact.uri, "Format-Serving"), artifacts.BACKBONE_CONFIG_FILE,
                          "pretrained model")


def patch_dir_of(model_artifact: types.Artifact) -> str:
    """The patch artifact inside a fine-tuning Trainer's Model artifact."""
    from peterrec.trainer import artifacts

    return _find_dir_with(os.path.join(model_artifact.uri, "Format-Serving"), artifacts.PATCH_METADATA_FILE,
                          "fine-tuned model")


def local_copy(path: str, work_dir: str) -> str:
    """``path`` itself when local; otherwise a copy of the folder (``gs://``...) under ``work_dir``.

    The serving assembly and parts of the artifact loaders use local file APIs; artifacts on
    Kubeflow live in object storage, and backbones and patches are small enough to copy.
    """
    if "://" not in path:
        return path
    target = os.path.join(work_dir, f"{len(os.listdir(work_dir))}-{os.path.basename(path.rstrip('/'))}")
    io_utils.copy_dir(path, target)
    return target


def _write_text(path: str, text: str) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "w") as handle:
        handle.write(text)


def write_blessing(blessing: types.Artifact, blessed: bool, reason: str, extra: Mapping[str, Any] = ()) -> None:
    """Marks a ModelBlessing as TFX's Evaluator does (file + ``blessed`` property), with a reason."""
    fileio.makedirs(blessing.uri)
    _write_text(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), reason + "\n")
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if blessed else 0)
    blessing.set_string_custom_property("reason", reason)
    for key, value in dict(extra).items():
        if isinstance(value, bool):
            blessing.set_int_custom_property(key, int(value))
        elif isinstance(value, int):
            blessing.set_int_custom_property(key, value)
        elif isinstance(value, float):
            blessing.set_float_custom_property(key, value)
        else:
            blessing.set_string_custom_property(key, value if isinstance(value, str) else json.dumps(value))


def is_blessed(blessing: types.Artifact) -> bool:
    """Whether a ModelBlessing says blessed (its ``blessed`` custom property)."""
    return (blessing.has_custom_property(BLESSED_PROPERTY)
            and blessing.get_int_custom_property(BLESSED_PROPERTY) == 1)


# --------------------------------------------------------------------- strict validation
def describe_anomalies(anomalies_by_split: Mapping[str, Any]) -> List[str]:
    """One line per anomaly: ``split 'eval': feature 'timestamps': Column dropped (...)``."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason) or \
                info.short_description
            lines.append(f"split {split!r}: feature {feature!r}: {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason)
            lines.append(f"split {split!r}: data set: {reasons or info.short_description}")
    return lines


class StrictExampleValidatorExecutor(example_validator_executor.Executor):
    """ExampleValidator that fails the run, naming each anomaly, when the data breaks the schema.

    TFX's ExampleValidator only records anomalies (and a ``blessed`` property per split);
    this executor records them the same way and then raises ``DataAnomalyError``, so the
    components after it (pretraining first) never run on bad data.
    """

    def _Validate(self, inputs, outputs):  # pylint: disable=invalid-name
        anomalies = super()._Validate(inputs, outputs)
        split_uri = outputs[example_validator_executor.labels.SCHEMA_DIFF_PATH]
        split = os.path.basename(os.path.normpath(split_uri))
        split = split[len("Split-"):] if split.startswith("Split-") else split
        self._found[split] = anomalies
        return anomalies

    def Do(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        """Validates every split, then raises DataAnomalyError if any has anomalies."""
        self._found: Dict[str, Any] = {}
        result = super().Do(input_dict, output_dict, exec_properties)
        bad = {split: a for split, a in self._found.items()
               if a.anomaly_info or a.HasField("dataset_anomaly_info")}
        if bad:
            anomalies_uri = _single(output_dict["anomalies"], "anomalies").uri
            lines = describe_anomalies(bad)
            raise DataAnomalyError(
                f"ExampleValidator found {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} in the examples "
                f"against the schema; the pipeline stops before training:\n  " + "\n  ".join(lines) +
                f"\n(anomalies written to {anomalies_uri})")
        return result


class StrictExampleValidator(example_validator_component.ExampleValidator):
    """TFX's ExampleValidator with ``StrictExampleValidatorExecutor``: anomalies stop the run."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(StrictExampleValidatorExecutor)


# ----------------------------------------------------------------------- statistics
class LocalStatisticsGenExecutor(executor_lib.LocalAwareBeamExecutor, statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor without the dependency packaging on the local DirectRunner
    (the ingestion executors' ``LocalAwareBeamExecutor`` in front of TFX's executor)."""


class LocalStatisticsGen(statistics_gen_component.StatisticsGen):
    """TFX's StatisticsGen with ``LocalStatisticsGenExecutor`` (no packaging on the DirectRunner)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(LocalStatisticsGenExecutor)


# ------------------------------------------------------------------------------ trainer
class PeterRecTrainerSpec(standard_component_specs.TrainerSpec):
    """TFX's TrainerSpec plus the item vocabulary and the task's label/target vocabulary."""

    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        ITEM_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
        TASK_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
    }


class PeterRecTrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor that also hands the vocabulary folders to the run_fn.

    ``fn_args.custom_config["item_vocabulary"]`` / ``["task_vocabulary"]`` are the uris of the
    Vocabulary artifacts (folders holding ``vocabulary.json``) when those inputs are given:
    a standard Trainer has no way to pass artifacts other than its own inputs to ``run_fn``.
    """

    def _GetFnArgs(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        custom = dict(fn_args.custom_config or {})
        for key in (ITEM_VOCABULARY_KEY, TASK_VOCABULARY_KEY):
            if input_dict.get(key):
                custom[key] = _single(input_dict[key], key).uri
        fn_args.custom_config = custom
        return fn_args


class PeterRecTrainer(trainer_component.Trainer):
    """TFX's Trainer (GenericExecutor, a ``run_fn``) that also takes Vocabulary artifacts.

    Args:
      examples: the Examples to train on (``fn_args.train_files`` / ``eval_files``).
      run_fn: dotted path of the run function, e.g.
        ``peterrec.trainer.run_fn.pretrain_run_fn``.
      item_vocabulary / task_vocabulary: optional Vocabulary channels; their uris reach the
        run_fn as ``fn_args.custom_config["item_vocabulary"]`` / ``["task_vocabulary"]``.
      base_model: optional Model channel (``fn_args.base_model``: the pretrained backbone).
      train_args, eval_args: TFX ``TrainArgs`` / ``EvalArgs`` (default: splits train / eval).
      custom_config: a JSON-friendly dict (or a RuntimeParameter of its JSON) for the run_fn.
    """

    SPEC_CLASS = PeterRecTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(PeterRecTrainerExecutor)

    def __init__(self, examples: types.BaseChannel, run_fn: str,  # pylint: disable=super-init-not-called
                 item_vocabulary: Optional[types.BaseChannel] = None,
                 task_vocabulary: Optional[types.BaseChannel] = None,
                 base_model: Optional[types.BaseChannel] = None,
                 train_args: Optional[trainer_pb2.TrainArgs] = None,
                 eval_args: Optional[trainer_pb2.EvalArgs] = None,
                 custom_config: Any = None):
        spec = PeterRecTrainerSpec(
            examples=examples, base_model=base_model, item_vocabulary=item_vocabulary,
            task_vocabulary=task_vocabulary,
            train_args=train_args or trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=eval_args or trainer_pb2.EvalArgs(splits=["eval"]),
            run_fn=run_fn,
            custom_config=(custom_config if isinstance(custom_config, data_types.RuntimeParameter)
                           else json_utils.dumps(custom_config)),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        base_component.BaseComponent.__init__(self, spec=spec)


# ---------------------------------------------------------------------------- evaluation
def _evaluate_classification(task_model, examples_uri: str, split: str, max_len: int, batch_size: int,
                             num_classes: int) -> Dict[str, Any]:
    """Accuracy and macro-F1 of the task and of the majority class of the training split."""
    import numpy as np

    from peterrec.trainer import data, metrics

    train_labels = np.concatenate([batch["label"].numpy() for batch in data.sequence_dataset(
        examples_uri, "train", batch_size, max_len, kind="classification")])
    if train_labels.size == 0:
        raise BlessingError("the training split has no examples: no majority class to compare with")
    majority = int(np.bincount(train_labels, minlength=num_classes).argmax())
    labels, predictions = [], []
    for batch in data.sequence_dataset(examples_uri, split, batch_size, max_len, kind="classification"):
        logits = task_model({"item_ids": batch["item_ids"]}, training=False)
        predictions.append(np.argmax(logits.numpy(), axis=-1))
        labels.append(batch["label"].numpy())
    if not labels:
        raise BlessingError(f"split {split!r} has no examples to evaluate")
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    constant = np.full_like(labels, majority)
    return {
        "model": {"accuracy": metrics.np_accuracy(labels, predictions),
                  "macro_f1": metrics.np_macro_f1(labels, predictions)},
        "baseline": {"accuracy": metrics.np_accuracy(labels, constant),
                     "macro_f1": metrics.np_macro_f1(labels, constant)},
        "examples": int(labels.size),
        "majority_class_id": majority,
    }


def _ranking_values(ranks, metric_names: Sequence[str]) -> Dict[str, float]:
    from peterrec.trainer import metrics

    functions = {"hr": metrics.np_hit_rate, "ndcg": metrics.np_ndcg, "mrr": metrics.np_mrr}
    values = {}
    for name in metric_names:
        kind, k = config_lib.RANKING_METRIC.match(name).groups()
        values[name] = functions[kind](ranks, int(k))
    return values


def _evaluate_cold_start(task_model, examples_uri: str, split: str, max_len: int, batch_size: int,
                         metric_names: Sequence[str]) -> Dict[str, Any]:
    """Full-ranking metrics of the task and of target-item popularity in the training split.

    Every (user, target item) pair of the split is ranked among all real target items.
    """
    import numpy as np

    from peterrec.trainer import data, metrics

    num_reserved = int(getattr(task_model.head, "num_reserved", 1))
    num_outputs = int(task_model.config.num_outputs)
    counts = np.zeros(num_outputs, np.float64)
    for batch in data.sequence_dataset(examples_uri, "train", batch_size, max_len, kind="cold_start"):
        targets = batch["target_item_ids"].numpy().ravel()
        counts += np.bincount(targets[targets >= num_reserved], minlength=num_outputs)[:num_outputs]
    model_ranks, popularity_ranks = [], []
    for batch in data.sequence_dataset(examples_uri, split, batch_size, max_len, kind="cold_start"):
        logits = task_model({"item_ids": batch["item_ids"]}, training=False).numpy()
        targets = batch["target_item_ids"].numpy()
        rows, columns = np.nonzero(targets >= num_reserved)
        if rows.size == 0:
            continue
        flat_targets = targets[rows, columns]
        model_ranks.append(metrics.np_full_ranks(logits[rows], flat_targets, num_reserved))
        popularity_ranks.append(metrics.np_full_ranks(np.tile(counts, (rows.size, 1)), flat_targets, num_reserved))
    if not model_ranks:
        raise BlessingError(f"split {split!r} has no target items to evaluate")
    model_ranks, popularity_ranks = np.concatenate(model_ranks), np.concatenate(popularity_ranks)
    names = sorted(set(metric_names) | {"hr@10", "ndcg@10", "mrr@5"})
    return {
        "model": _ranking_values(model_ranks, names),
        "baseline": _ranking_values(popularity_ranks, names),
        "examples": int(model_ranks.size),
    }


def decide_blessing(value: float, baseline_value: Optional[float], threshold: config_lib.ThresholdConfig):
    """(blessed, reason) of a metric value against the threshold."""
    reasons = []
    blessed = True
    if threshold.baseline != "none" and baseline_value is not None:
        needed = baseline_value + threshold.min_lift
        if not value > needed:
            blessed = False
            reasons.append(f"{threshold.metric} {value:.4f} does not beat the {threshold.baseline} baseline "
                           f"{baseline_value:.4f} + min_lift {threshold.min_lift:g}")
        else:
            reasons.append(f"{threshold.metric} {value:.4f} beats the {threshold.baseline} baseline "
                           f"{baseline_value:.4f} + min_lift {threshold.min_lift:g}")
    if threshold.min_value is not None:
        if value < threshold.min_value:
            blessed = False
            reasons.append(f"{threshold.metric} {value:.4f} is below min_value {threshold.min_value:g}")
        else:
            reasons.append(f"{threshold.metric} {value:.4f} reaches min_value {threshold.min_value:g}")
    return blessed, "; ".join(reasons)


def parse_threshold(text: str, kind: str) -> config_lib.ThresholdConfig:
    """The ``threshold`` execution parameter (JSON of ThresholdConfig fields), validated."""
    return config_lib._parse_threshold(json.loads(text), kind, "TaskEvaluator", "threshold")  # pylint: disable=protected-access


class TaskEvaluatorExecutor(base_executor.BaseExecutor):
    """Evaluates a fine-tuned task against its baseline; writes metrics and the blessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """See ``TaskEvaluator``."""
        from peterrec.trainer import artifacts
        from peterrec.trainer.runtime import skip_autograph_for_tf_keras

        self._log_startup(input_dict, output_dict, exec_properties)
        skip_autograph_for_tf_keras()
        task_name = exec_properties[TASK_NAME_KEY]
        kind = exec_properties[KIND_KEY]
        threshold = parse_threshold(exec_properties[THRESHOLD_KEY], kind)
        max_len = int(exec_properties[MAX_LEN_KEY])
        batch_size = int(exec_properties.get(BATCH_SIZE_KEY) or 256)
        examples = _single(input_dict[EXAMPLES_KEY], EXAMPLES_KEY)
        splits = artifact_utils.decode_split_names(examples.split_names)
        if threshold.split not in splits:
            raise BlessingError(f"task {task_name!r}: the examples have no split {threshold.split!r} "
                                f"(they have {splits}); set tasks[].threshold.split")
        work = tempfile.mkdtemp(prefix="peterrec-evaluate-")
        try:
            backbone_dir = local_copy(backbone_dir_of(_single(input_dict[BASE_MODEL_KEY], BASE_MODEL_KEY)), work)
            patch_dir = local_copy(patch_dir_of(_single(input_dict[MODEL_KEY], MODEL_KEY)), work)
            backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
            task_model, metadata = artifacts.load_patch_artifact(patch_dir, backbone, vocabulary)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if metadata.kind != kind:
            raise BlessingError(f"task {task_name!r} is configured as {kind} but its patch artifact is "
                                f"{metadata.kind}")
        if kind == config_lib.CLASSIFICATION:
            result = _evaluate_classification(task_model, examples.uri, threshold.split, max_len, batch_size,
                                              int(task_model.config.num_outputs))
        else:
            result = _evaluate_cold_start(task_model, examples.uri, threshold.split, max_len, batch_size,
                                          [threshold.metric])
        value = float(result["model"][threshold.metric])
        baseline_value = float(result["baseline"][threshold.metric]) if threshold.baseline != "none" else None
        blessed, reason = decide_blessing(value, baseline_value, threshold)
        report = {
            "task": task_name, "kind": kind, "strategy": metadata.strategy, "split": threshold.split,
            "metric": threshold.metric, "value": value, "baseline": threshold.baseline,
            "baseline_value": baseline_value, "min_lift": threshold.min_lift, "min_value": threshold.min_value,
            "blessed": blessed, "reason": reason, "examples": result["examples"],
            "metrics": result["model"], "baseline_metrics": result["baseline"],
            "trainable_params": int(metadata.trainable_params), "fine_all_params": int(metadata.fine_all_params),
            "training_metrics": dict(metadata.metrics),
        }
        evaluation = _single(output_dict[EVALUATION_KEY], EVALUATION_KEY)
        _write_text(os.path.join(evaluation.uri, METRICS_FILE), json.dumps(report, indent=2, sort_keys=True))
        for name, metric_value in result["model"].items():
            evaluation.set_float_custom_property(name, float(metric_value))
        if baseline_value is not None:
            evaluation.set_float_custom_property(f"baseline_{threshold.metric}", baseline_value)
        evaluation.set_string_custom_property(TASK_NAME_KEY, task_name)
        write_blessing(_single(output_dict[BLESSING_KEY], BLESSING_KEY), blessed, reason,
                       {TASK_NAME_KEY: task_name, "metric": threshold.metric, "value": value})
        logging.info("TaskEvaluator %s: %s -> %s", task_name, reason, "BLESSED" if blessed else "NOT BLESSED")
        print(f"evaluate {task_name}: {reason} -> {'blessed' if blessed else 'NOT blessed'}", flush=True)


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
            threshold_config = config_lib._parse_threshold(dict(threshold), kind, "TaskEvaluator", "threshold")  # pylint: disable=protected-access
            threshold_parameter = json.dumps(threshold_config.to_dict(), sort_keys=True)
        spec = TaskEvaluatorSpec(
            task_name=task_name, kind=kind, threshold=threshold_parameter,
            max_len=int(max_len), batch_size=int(batch_size), examples=examples, model=model,
            base_model=base_model,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)
        self.id = f"TaskEvaluator_{task_name}"


# ---------------------------------------------------------------------------- assembly
class ServingModelAssemblerExecutor(base_executor.BaseExecutor):
    """Assembles the blessed tasks' patches and the backbone into one serving SavedModel."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """See ``ServingModelAssembler``."""
        from peterrec.serving import assembly

        self._log_startup(input_dict, output_dict, exec_properties)
        task_names = json.loads(exec_properties[TASK_NAMES_KEY])
        model_name = exec_properties[MODEL_NAME_KEY]
        require_all = bool(int(exec_properties.get(REQUIRE_ALL_KEY) or 0))
        backbone_dir = backbone_dir_of(_single(input_dict[BACKBONE_KEY], BACKBONE_KEY))
        blessed, rejected = [], []
        for name in task_names:
            blessing = _single(input_dict[BLESSING_PREFIX + name], BLESSING_PREFIX + name)
            (blessed if is_blessed(blessing) else rejected).append(name)
        output_model = _single(output_dict[MODEL_KEY], MODEL_KEY)
        output_blessing = _single(output_dict[BLESSING_KEY], BLESSING_KEY)
        summary = {"model_name": model_name, "tasks": blessed, "not_blessed": rejected,
                   "backbone": backbone_dir, "require_all_tasks": require_all}
        if not blessed or (require_all and rejected):
            reason = (f"tasks not blessed: {rejected}" + ("; require_all_tasks is on" if blessed else
                                                           "; no task is blessed"))
            write_blessing(output_blessing, False, reason, {"tasks": blessed, "not_blessed": rejected})
            _write_text(os.path.join(output_model.uri, ASSEMBLY_FILE), json.dumps(summary, indent=2))
            print(f"assemble: nothing to serve ({reason})", flush=True)
            return
        work = tempfile.mkdtemp(prefix="peterrec-assembly-")
        try:
            inputs = os.path.join(work, "inputs")
            os.makedirs(inputs)
            task_arguments = [
                f"{name}={local_copy(patch_dir_of(_single(input_dict[PATCH_PREFIX + name], PATCH_PREFIX + name)), inputs)}"
                for name in blessed]
            result = assembly.export_serving_model(
                local_copy(backbone_dir, inputs), task_arguments, os.path.join(work, model_name),
                top_k=int(exec_properties[TOP_K_KEY]), max_len=int(exec_properties[MAX_LEN_KEY]),
                write_serving_files=False, log=lambda message: logging.info("assembly: %s", message))
            serving_dir = os.path.join(output_model.uri, "Format-Serving")
            io_utils.copy_dir(result.path, serving_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        summary.update({"signatures": result.signatures, "size_lines": result.sizes.lines()})
        _write_text(os.path.join(output_model.uri, ASSEMBLY_FILE), json.dumps(summary, indent=2))
        output_model.set_string_custom_property("signatures", ",".join(result.signatures))
        output_model.set_string_custom_property("tasks", ",".join(blessed))
        reason = f"serves {blessed}" + (f"; left out (not blessed): {rejected}" if rejected else "")
        write_blessing(output_blessing, True, reason, {"tasks": blessed, "not_blessed": rejected})
        for line in result.sizes.lines():
            logging.info("assembly: %s", line)
        print(f"assemble: {model_name} with signatures {', '.join(result.signatures)}"
              + (f" (left out, not blessed: {', '.join(rejected)})" if rejected else ""), flush=True)


_ASSEMBLER_PARAMETERS = {
    TASK_NAMES_KEY: ExecutionParameter(type=str),
    MODEL_NAME_KEY: ExecutionParameter(type=str),
    TOP_K_KEY: ExecutionParameter(type=int),
    MAX_LEN_KEY: ExecutionParameter(type=int),
    REQUIRE_ALL_KEY: ExecutionParameter(type=int),
}
_ASSEMBLER_OUTPUTS = {
    MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
}


class ServingModelAssemblerSpec(types.ComponentSpec):
    """The assembler's parameters and outputs; each pipeline's subclass adds one
    ``patch_<task>`` (Model) and one ``blessing_<task>`` (ModelBlessing) input per task."""

    PARAMETERS = dict(_ASSEMBLER_PARAMETERS)
    INPUTS = {BACKBONE_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = dict(_ASSEMBLER_OUTPUTS)


def assembler_spec_class(task_names: Sequence[str]):
    """The ComponentSpec of an assembler over these tasks (one patch and one blessing input each)."""
    inputs = dict(ServingModelAssemblerSpec.INPUTS)
    for name in task_names:
        inputs[PATCH_PREFIX + name] = ChannelParameter(type=standard_artifacts.Model)
        inputs[BLESSING_PREFIX + name] = ChannelParameter(type=standard_artifacts.ModelBlessing)
    return type("ServingModelAssemblerSpec", (ServingModelAssemblerSpec,), {
        "__module__": __name__, "__doc__": ServingModelAssemblerSpec.__doc__, "INPUTS": inputs})


class ServingModelAssembler(base_component.BaseComponent):
    """The multi-signature serving model of every blessed task on the shared backbone.

    Args:
      backbone: the pretraining Trainer's Model channel.
      patches: ``{task name: fine-tuning Trainer Model channel}``.
      blessings: ``{task name: TaskEvaluator blessing channel}`` (same keys).
      model_name: the served model's name (the model base folder's name).
      top_k, max_len: passed to ``peterrec.serving.assembly.export_serving_model``.
      require_all_tasks: bless (and so push) only when every task is blessed; otherwise the
        blessed tasks are assembled and the others reported.

    Outputs: ``model`` (Model: ``Format-Serving/`` holds the SavedModel with a signature per
    task plus ``embed`` and ``next_items``; ``assembly.json`` says what went in) and
    ``blessing`` (ModelBlessing for the Pusher).

    The inputs depend on the task names, so each instance belongs to a subclass (same name)
    whose SPEC_CLASS has a ``patch_<task>`` and a ``blessing_<task>`` input per task.
    """

    SPEC_CLASS = ServingModelAssemblerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServingModelAssemblerExecutor)

    def __new__(cls, backbone=None, patches=None, *args, **kwargs):  # pylint: disable=unused-argument
        names = tuple(patches or ())
        if not names:
            raise ValueError("ServingModelAssembler needs at least one task in patches")
        subclass = type(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
            "SPEC_CLASS": assembler_spec_class(names)})
        return super().__new__(subclass)

    def __init__(self, backbone: types.BaseChannel, patches: Mapping[str, types.BaseChannel],
                 blessings: Mapping[str, types.BaseChannel], model_name: str, top_k: int, max_len: int,
                 require_all_tasks: bool = True):
        names = list(patches)
        if sorted(names) != sorted(blessings):
            raise ValueError(f"patches {sorted(names)} and blessings {sorted(blessings)} must name the same tasks")
        channels = {BACKBONE_KEY: backbone}
        channels.update({PATCH_PREFIX + name: patches[name] for name in names})
        channels.update({BLESSING_PREFIX + name: blessings[name] for name in names})
        spec = self.SPEC_CLASS(task_names=json.dumps(names), model_name=model_name, top_k=int(top_k),
                               max_len=int(max_len), require_all_tasks=int(bool(require_all_tasks)),
                               model=types.Channel(type=standard_artifacts.Model),
                               blessing=types.Channel(type=standard_artifacts.ModelBlessing), **channels)
        super().__init__(spec=spec)


# --------------------------------------------------------------------------------- push
def _is_local(path: str) -> bool:
    return "://" not in path


class ServingPusherExecutor(pusher_executor.Executor):
    """TFX's Pusher (filesystem destination) with integer versions, atomic publish and models.config.

    The model is copied to a hidden staging folder inside the model base and renamed to the
    next integer version, so a polling server never loads half a model; then
    ``models.config`` (and, when missing, the batching and monitoring files) beside the model
    base is updated (``peterrec.serving.serving_files``). ``custom_config``
    ``{"version_label": "canary"}`` points that label at the new version. Remote destinations
    (``gs://``...) get TFX's own copy (saved_model.pb last) with the next integer version;
    there ``models.config`` is not written (keep it with the server, e.g. the ConfigMap of
    ``deploy/kubernetes/tf-serving.yaml``).
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """Pushes the blessed model as the next version; marks the ModelPushPath artifact."""
        from peterrec.serving import assembly, serving_files

        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            print("push: the model is not blessed; nothing pushed", flush=True)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties["push_destination"], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("ServingPusherExecutor pushes to a filesystem destination only")
        base = destination.filesystem.base_directory
        custom = json.loads(exec_properties.get("custom_config") or "null") or {}
        label = custom.get(VERSION_LABEL_KEY)
        if _is_local(base):
            base = os.path.abspath(base)
            os.makedirs(base, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".push-", dir=base)
            try:
                io_utils.copy_dir(model_path, staging)
                version, serving_path = assembly._publish(staging, base)  # pylint: disable=protected-access
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            serving_files.update_serving_files(base, version, label=label)
        else:
            existing = [int(n.rstrip("/")) for n in fileio.listdir(base) if n.rstrip("/").isdigit()] \
                if fileio.exists(base) else []
            version = max(existing, default=0) + 1
            serving_path = os.path.join(base, str(version))
            io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
            io_utils.copy_file(os.path.join(model_path, "saved_model.pb"), os.path.join(serving_path, "saved_model.pb"))
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        print(f"push: version {version} -> {serving_path}", flush=True)


class ServingPusher(pusher_component.Pusher):
    """TFX's Pusher with ``ServingPusherExecutor`` (integer versions, atomic publish, models.config)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServingPusherExecutor)
