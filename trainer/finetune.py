"""Fine-tuning one downstream task on a pretrained backbone export, by strategy.

``finetune(backbone_dir, task_examples_dir, output_dir, config)`` loads the backbone export
(frozen), builds the task model with ``build_task_model`` (peter-zero: on a freshly initialised
backbone of the same config), trains it with Keras ``fit``, evaluates it (classification:
accuracy and macro-F1; cold-start: HR@10, NDCG@10, MRR@5 by full ranking and with 100 sampled
candidates), prints its trainable parameter count against fine-all's, and writes under
``output_dir``::

    run_config.json       config, backbone fingerprint, task vocabulary fingerprint
    checkpoints/          a checkpoint per epoch and every ``checkpoint_every_steps`` steps (task
                          variables, optimizer, epoch, step in the epoch, early stopping)
    logs/                 TensorBoard train/ and validation/ scalars, the hparams session, history.jsonl
    patch/                the patch artifact (docs/architecture.md contract 4), unless patch_dir
    metrics.json          final metrics (test split if there is one, else eval), sizes, counts

An interrupted run resumes from its last checkpoint, like pretraining (at most
``checkpoint_every_steps`` steps lost; with ``deterministic``, the weights of an uninterrupted run).
"""

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from peterrec.components.vocabulary import Vocabulary
from peterrec.trainer.config import TaskConfig, dataclass_from_dict
from peterrec.trainer.loop import (DEFAULT_CHECKPOINT_EVERY_STEPS, METRICS_FILE, TrainingState,
                                   check_or_write_run_config, fit_resumably, load_vocabulary_of_kind, plain_metrics,
                                   vocabulary_errors_explained, write_json)

LR_SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of the initial learning rate
# Eval loss for classification: accuracy on a small eval split moves in steps of one user and
# stopped runs on noise; the loss is smooth.
DEFAULT_MONITORS = {"classification": "val_loss", "cold_start": "val_mrr@5"}
TASK_VOCABULARY_KINDS = {"classification": "label", "cold_start": "target"}


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs besides the backbone and the task's examples.

    task: the TaskConfig (name, kind, strategy, read-out, adapter, ...). With
    ``task_vocabulary`` (the label or target vocabulary folder), ``task.num_outputs`` is set to
    its size. item_vocabulary: the item vocabulary the task examples were built with; checked
    against the backbone's. monitor: eval metric for early stopping and the best epoch (default
    ``DEFAULT_MONITORS``: val_loss for classification, val_mrr@5 for cold start).
    lr_schedule: "constant", or "cosine" (decays from ``learning_rate`` to ``LR_FLOOR`` of it
    over all the run's steps, which steadies the last epochs that early stopping compares).
    Other fields as in PretrainConfig.
    """

    task: TaskConfig
    batch_size: int = 64
    epochs: int = 30
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    early_stopping_patience: int = 5
    monitor: Optional[str] = None
    restore_best: bool = True
    seed: int = 0
    max_len: int = 200
    max_targets: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    shuffle_buffer: int = 10_000
    max_checkpoints: int = 2
    checkpoint_every_steps: int = DEFAULT_CHECKPOINT_EVERY_STEPS
    deterministic: bool = False
    task_vocabulary: Optional[str] = None
    item_vocabulary: Optional[str] = None
    verbose: int = 1

    def __post_init__(self):
        if isinstance(self.task, Mapping):
            self.task = TaskConfig.from_dict(self.task)

    @property
    def resolved_monitor(self) -> str:
        """The monitored metric (the default of the task kind unless set)."""
        return self.monitor or DEFAULT_MONITORS[self.task.kind]

    def validate(self) -> "FinetuneConfig":
        """Raises ValueError with a clear message if a value is out of range; returns self."""
        def check(condition, message):
            if not condition:
                raise ValueError(message)

        self.task.validate()
        check(int(self.batch_size) >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(int(self.epochs) >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(float(self.learning_rate) > 0, f"learning_rate must be positive, got {self.learning_rate}")
        check(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        check(int(self.max_len) >= 1, f"max_len must be >= 1, got {self.max_len}")
        check(int(self.early_stopping_patience) >= 0, "early_stopping_patience must be >= 0")
        check(self.max_targets is None or int(self.max_targets) >= 1, "max_targets must be >= 1")
        check(self.steps_per_epoch is None or int(self.steps_per_epoch) >= 1, "steps_per_epoch must be >= 1")
        check(int(self.max_checkpoints) >= 1, "max_checkpoints must be >= 1")
        check(int(self.checkpoint_every_steps) >= 0, "checkpoint_every_steps must be >= 0 (0: per epoch only)")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (the task config nested)."""
        data = dataclasses.asdict(self)
        data["task"] = self.task.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FinetuneConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        return dataclass_from_dict(cls, data).validate()


def _resolve_task(config: FinetuneConfig, item_vocabulary: Vocabulary):
    """-> (task config with num_outputs from the task vocabulary, task vocabulary or None)."""
    task = config.task
    if config.item_vocabulary:
        examples_vocabulary = load_vocabulary_of_kind(config.item_vocabulary, "item", "the task examples")
        examples_vocabulary.check(item_vocabulary.fingerprint, what=f"task {task.name!r} examples vs the backbone")
    if not config.task_vocabulary:
        return task, None
    kind = TASK_VOCABULARY_KINDS[task.kind]
    task_vocabulary = load_vocabulary_of_kind(config.task_vocabulary, kind, f"a {task.kind} task")
    if task.num_outputs != len(task_vocabulary):
        if config.verbose:
            print(f"finetune: num_outputs {task.num_outputs} -> {len(task_vocabulary)} (size of the {kind} "
                  "vocabulary)", flush=True)
        task = dataclasses.replace(task, num_outputs=len(task_vocabulary))
    return task.validate(), task_vocabulary


def learning_rate_for(config: FinetuneConfig, steps_per_epoch: int):
    """The optimizer's learning rate: a float, or the cosine schedule over ``epochs`` epochs.

    The schedule is a function of the optimizer's step counter, which the checkpoint holds, so a
    resumed run continues the same curve.
    """
    if config.lr_schedule == "constant":
        return float(config.learning_rate)
    import tf_keras as keras

    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=float(config.learning_rate), decay_steps=int(config.epochs) * int(steps_per_epoch),
        alpha=LR_FLOOR)


def _split_files(data_module, task_examples_dir: Optional[str], split: str, given):
    if given is not None:
        return given
    if task_examples_dir is None:
        return None
    try:
        return data_module.split_files(task_examples_dir, split)
    except data_module.DataError:
        return None


def finetune(backbone_dir: str, task_examples_dir: Optional[str], output_dir: str, config: FinetuneConfig,
             train_files: Optional[Sequence[str]] = None, eval_files: Optional[Sequence[str]] = None,
             test_files: Optional[Sequence[str]] = None, patch_dir: Optional[str] = None,
             callbacks: Sequence = ()) -> Dict[str, Any]:
    """Fine-tunes ``config.task`` on the backbone export and writes its patch artifact.

    task_examples_dir: an Examples folder with Split-train/ (Split-eval/ for early stopping,
    Split-test/ for the final metrics), or give the file lists directly (TFX style).
    Returns the metrics written to metrics.json. Under several workers (``TF_CONFIG``), as
    ``pretrain``: the chief writes ``output_dir`` and ``patch_dir``, the others a temporary folder.
    """
    from peterrec.trainer import distribution

    strategy = distribution.training_strategy()  # first: a multi-worker strategy configures TensorFlow
    with distribution.worker_output_dir(output_dir, strategy) as run_dir:
        return _finetune(backbone_dir, task_examples_dir, run_dir, config, train_files, eval_files, test_files,
                         distribution.worker_path(patch_dir, output_dir, run_dir), callbacks, strategy)


def _finetune(backbone_dir, task_examples_dir, output_dir, config, train_files, eval_files, test_files, patch_dir,
              callbacks, strategy) -> Dict[str, Any]:
    """``finetune`` in this worker's output folder, under ``strategy``."""
    import tf_keras as keras

    from peterrec.trainer import artifacts, data
    from peterrec.trainer.distribution import mean_of_workers_optimizer, shard_for_workers
    from peterrec.trainer.runtime import enable_determinism, skip_autograph_for_tf_keras
    from peterrec.trainer.strategies import fresh_backbone_like
    from peterrec.trainer.task_model import build_task_model

    skip_autograph_for_tf_keras()
    config.validate()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        enable_determinism()
    with strategy.scope():
        backbone, backbone_config, item_vocabulary = artifacts.load_backbone(backbone_dir, trainable=False)
    backbone_fingerprint = artifacts.read_backbone_metadata(backbone_dir)["fingerprint"]
    task, task_vocabulary = _resolve_task(config, item_vocabulary)
    run_config = {"kind": "finetune", "config": {**config.to_dict(), "task": task.to_dict()},
                  "task_config": task.to_dict(), "backbone_fingerprint": backbone_fingerprint,
                  "vocabulary_fingerprint": item_vocabulary.fingerprint,
                  "task_vocabulary_fingerprint": task_vocabulary.fingerprint if task_vocabulary else None}
    resuming = check_or_write_run_config(output_dir, run_config, ["backbone_fingerprint", "vocabulary_fingerprint",
                                                       "task_vocabulary_fingerprint", "task_config"])

    train_files = _split_files(data, task_examples_dir, "train", train_files)
    if train_files is None:
        raise data.DataError("no training examples: give task_examples_dir with Split-train/ or train_files")
    eval_files = _split_files(data, task_examples_dir, "eval", eval_files)
    test_files = _split_files(data, task_examples_dir, "test", test_files)
    options = {"vocab_size": len(item_vocabulary), "num_outputs": task.num_outputs,
               "max_targets": config.max_targets}
    num_train = data.count_examples(train_files)

    def evaluation_data(files):
        return shard_for_workers(data.dataset_from_files(files, config.batch_size, config.max_len, kind=task.kind,
                                                         **options), strategy)

    evaluation = evaluation_data(eval_files) if eval_files else None

    target_counts = None
    if task.kind == "cold_start" and task_vocabulary is not None:
        target_counts = [float(task_vocabulary.count_of(i)) for i in range(len(task_vocabulary))]
    steps_per_epoch = config.steps_per_epoch or -(-num_train // config.batch_size)
    with strategy.scope():
        base = fresh_backbone_like(backbone) if task.strategy == "peter-zero" else backbone
        model = build_task_model(base, task, target_counts=target_counts)
        model.compile(optimizer=mean_of_workers_optimizer(
            keras.optimizers.Adam, strategy, learning_rate=learning_rate_for(config, steps_per_epoch)))
    report = model.parameter_report()
    state = TrainingState(output_dir, artifacts.task_trackables(model), model.optimizer, config.resolved_monitor,
                          config.early_stopping_patience, config.max_checkpoints)
    state.restore()
    if config.verbose:
        action = state.describe_start(resuming)
        print(f"finetune {task.name!r} ({task.kind}, {task.strategy}): {action}; {num_train} training examples; "
              f"trainable parameters {report['trainable_params']:,} = {report['trainable_percent']:.2f}% of "
              f"fine-all's {report['fine_all_params']:,}", flush=True)

    def training_data(first_epoch):
        dataset, steps = data.training_dataset(
            train_files, config.batch_size, config.max_len, kind=task.kind, seed=config.seed,
            first_epoch=first_epoch, last_epoch=config.epochs, num_examples=num_train,
            steps_per_epoch=config.steps_per_epoch, shuffle_buffer=config.shuffle_buffer, **options)
        return shard_for_workers(dataset, strategy), steps

    fitted = fit_resumably(model, state, config, training_data, evaluation, os.path.join(output_dir, "logs"),
                           run_config, item_vocabulary, callbacks, label=f"finetune {task.name!r}")

    results: Dict[str, Dict[str, float]] = {}
    with vocabulary_errors_explained(item_vocabulary):
        for split, files in (("eval", eval_files), ("test", test_files)):
            if files:
                results[split] = plain_metrics(model.evaluate(evaluation_data(files), return_dict=True, verbose=0))
    final_split = "test" if "test" in results else ("eval" if "eval" in results else None)
    metrics: Dict[str, Any] = dict(results.get(final_split, {}))
    metrics.update({
        "split": final_split, "splits": results, "task": task.name, "kind": task.kind, "strategy": task.strategy,
        **report, **fitted, "train_examples": num_train,
    })

    patch_dir = patch_dir or os.path.join(output_dir, "patch")
    metadata = artifacts.PatchMetadata(
        task_name=task.name, kind=task.kind, strategy=task.strategy, backbone_fingerprint=backbone_fingerprint,
        task_config=task.to_dict(),
        label_vocabulary=task_vocabulary.to_json_dict() if task_vocabulary and task.kind == "classification" else None,
        target_vocabulary=task_vocabulary.to_json_dict() if task_vocabulary and task.kind == "cold_start" else None,
        metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        trainable_params=report["trainable_params"], fine_all_params=report["fine_all_params"],
        item_vocabulary_fingerprint=item_vocabulary.fingerprint, backbone_config=backbone_config.to_dict())
    artifacts.save_patch_artifact(model, metadata, patch_dir)
    metrics.update({"patch_dir": patch_dir, "patch_bytes": artifacts.directory_size(patch_dir),
                    "backbone_bytes": artifacts.directory_size(backbone_dir)})
    write_json(os.path.join(output_dir, METRICS_FILE), metrics)
    if config.verbose:
        shown = {k: round(v, 4) for k, v in results.get(final_split, {}).items()}
        print(f"finetune {task.name!r}: {final_split or 'no eval'} metrics {shown}; trainable "
              f"{report['trainable_params']:,} ({report['trainable_percent']:.2f}% of fine-all); patch "
              f"{metrics['patch_bytes']:,} bytes vs backbone {metrics['backbone_bytes']:,} bytes -> {patch_dir}",
              flush=True)
    return metrics
