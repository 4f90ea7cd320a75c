"""Pretraining: NextItNet (next-item) or GRec-encoder (cloze) on behaviour sequences, once.

``pretrain(examples_dir, vocabulary_dir, output_dir, config)`` trains the backbone with Keras
``fit`` on every interaction: each epoch cuts every user's whole history into windows of the
model's context (``config.max_len``) whose targets tile the history, with cuts that move between
epochs (``windows.window_training_dataset``), so every interaction but a user's first is a target
once per epoch.

Evaluation (``config.evaluation``):

- ``"leave_one_out"`` (default): the users of every split given are the data; each user's last
  item is the test target and the one before it the validation target (users with at least
  three items; both are held out of training), ranked against all items: loss, HR@10, NDCG@10,
  MRR@10 (``trainer.leave_one_out``). Validation drives early stopping; the test figures land in
  ``metrics.json`` as ``test_*``.
- ``"users"``: the train split trains, the eval split's users are held out whole (their next-item
  loss at every position and the last item's HR/NDCG@10).

It writes, under ``output_dir``::

    run_config.json       the config, vocabulary fingerprint and backbone config of the run
    checkpoints/          a checkpoint per epoch and every ``checkpoint_every_steps`` steps (model,
                          optimizer, epoch, step in the epoch, early-stopping state)
    checkpoints/best/     the weights of the best epoch on the monitored eval metric
    logs/                 TensorBoard: train/ and validation/ scalars, the hparams session, projector/
    logs/history.jsonl    one line per epoch
    export/               the backbone export (docs/architecture.md contract 3), unless export_dir
    metrics.json          the final evaluation

An interrupted run started again with the same ``output_dir`` resumes from its last checkpoint
(epoch counter, step within the epoch, weights, optimizer and early-stopping state) and ends after
``config.epochs`` epochs in all; a kill, even in the middle of a checkpoint write, loses at most
``checkpoint_every_steps`` steps, and with ``deterministic`` the resumed run ends with the weights
of an uninterrupted one. The vocabulary is checked: a config whose ``vocab_size`` disagrees with the
vocabulary, a resume with another vocabulary, or examples holding ids outside it fail clearly.
"""

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from peterrec.components.vocabulary import Vocabulary, VocabularyMismatchError, load_item_titles
from peterrec.trainer.config import BackboneConfig, dataclass_from_dict
from peterrec.trainer.loop import (DEFAULT_CHECKPOINT_EVERY_STEPS, METRICS_FILE,  # noqa: F401 (re-exported)
                                   RunMismatchError, TrainingState, check_or_write_run_config, fit_resumably,
                                   load_vocabulary_of_kind, plain_metrics, vocabulary_errors_explained, write_json)

OBJECTIVES = ("next_item", "cloze")
SOFTMAX_KINDS = ("full", "sampled")
EVALUATIONS = ("leave_one_out", "users")
LEAVE_ONE_OUT_HOLDOUT = 2  # the validation and the test item of each user


@dataclasses.dataclass
class PretrainConfig:
    """Everything a pretraining run needs besides its data.

    backbone: the BackboneConfig; ``vocab_size=0`` takes the size of the vocabulary.
    objective: "next_item" (needs a causal backbone) or "cloze" (needs ``causal=False``).
    softmax: "full" or "sampled"; num_sampled: negatives per step (None: 20 % of the items).
    mask_rate: share of positions the cloze objective masks.
    batch_size, epochs, learning_rate (Adam), seed.
    max_len: the context: the longest window the model trains on (histories are cut into windows).
    evaluation: "leave_one_out" or "users" (see the module docstring).
    early_stopping_patience: epochs without improvement of ``monitor`` before stopping (0: off);
    monitor: ``val_loss`` by default: it is smooth where HR/NDCG on a small split move in steps;
    restore_best: export the best epoch's weights rather than the last.
    steps_per_epoch: cap on training steps per epoch (None: one pass over the data).
    verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    max_checkpoints: per-epoch checkpoints kept. checkpoint_every_steps: also save every that many
    steps within an epoch (0: only per epoch); a killed run loses at most that many steps.
    deterministic: ``tf.config.experimental.enable_op_determinism()`` for the process, so that an
    interrupted and resumed run ends with the same weights as an uninterrupted one.
    """

    backbone: BackboneConfig = dataclasses.field(default_factory=lambda: BackboneConfig(vocab_size=0))
    objective: str = "next_item"
    softmax: str = "full"
    num_sampled: Optional[int] = None
    mask_rate: float = 0.3
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 1e-3
    max_len: int = 200
    evaluation: str = "leave_one_out"
    seed: int = 0
    early_stopping_patience: int = 3
    monitor: str = "val_loss"
    restore_best: bool = True
    steps_per_epoch: Optional[int] = None
    shuffle_buffer: int = 10_000
    max_checkpoints: int = 3
    checkpoint_every_steps: int = DEFAULT_CHECKPOINT_EVERY_STEPS
    deterministic: bool = False
    verbose: int = 1

    def __post_init__(self):
        if isinstance(self.backbone, Mapping):
            data = dict(self.backbone)
            data.setdefault("vocab_size", 0)
            self.backbone = BackboneConfig(**data)

    def validate(self) -> "PretrainConfig":
        """Raises ValueError with a clear message if a value is out of range; returns self."""
        def check(condition, message):
            if not condition:
                raise ValueError(message)

        check(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        check(self.softmax in SOFTMAX_KINDS, f"softmax must be one of {SOFTMAX_KINDS}, got {self.softmax!r}")
        check(self.objective != "next_item" or self.backbone.causal,
              "objective 'next_item' needs a causal backbone (backbone.causal=True)")
        check(self.objective != "cloze" or not self.backbone.causal,
              "objective 'cloze' needs a non-causal backbone (backbone.causal=False, the GRec encoder)")
        check(self.num_sampled is None or int(self.num_sampled) >= 1, "num_sampled must be >= 1")
        check(0.0 < float(self.mask_rate) < 1.0, f"mask_rate must be in (0, 1), got {self.mask_rate}")
        check(int(self.batch_size) >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(int(self.epochs) >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(float(self.learning_rate) > 0, f"learning_rate must be positive, got {self.learning_rate}")
        check(int(self.max_len) >= 2, f"max_len must be >= 2 (one input and one next item), got {self.max_len}")
        check(self.evaluation in EVALUATIONS, f"evaluation must be one of {EVALUATIONS}, got {self.evaluation!r}")
        check(int(self.early_stopping_patience) >= 0, "early_stopping_patience must be >= 0")
        check(self.steps_per_epoch is None or int(self.steps_per_epoch) >= 1, "steps_per_epoch must be >= 1")
        check(int(self.max_checkpoints) >= 1, "max_checkpoints must be >= 1")
        check(int(self.checkpoint_every_steps) >= 0, "checkpoint_every_steps must be >= 0 (0: per epoch only)")
        return self

    def resolved_backbone(self, vocabulary: Vocabulary) -> BackboneConfig:
        """The backbone config with ``vocab_size`` taken from (and checked against) the vocabulary."""
        size = int(self.backbone.vocab_size)
        if size == 0:
            return dataclasses.replace(self.backbone, vocab_size=len(vocabulary)).validate()
        if size != len(vocabulary):
            raise VocabularyMismatchError(
                f"the backbone config says vocab_size={size}, but the vocabulary "
                f"{vocabulary.fingerprint[:16]}... has {len(vocabulary)} ids: the model and the data were built "
                "with different vocabularies (set vocab_size=0 to take the vocabulary's size)")
        return dataclasses.replace(self.backbone).validate()

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (the backbone config nested)."""
        data = dataclasses.asdict(self)
        data["backbone"] = self.backbone.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PretrainConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        return dataclass_from_dict(cls, data).validate()


# ----------------------------------------------------------------------------- pretraining
def build_pretraining_model(backbone_config: BackboneConfig, vocabulary: Vocabulary, config: PretrainConfig):
    """A compiled pretraining model (backbone + objective + Adam) for the run: a
    ``LeaveOneOutModel`` under leave-one-out evaluation, else a ``PretrainingModel``. Call it in
    the training strategy's scope (under several workers, its optimizer averages their gradients)."""
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.trainer.distribution import mean_of_workers_optimizer

    from peterrec.trainer.backbone import NextItNetBackbone
    from peterrec.trainer.leave_one_out import LeaveOneOutModel
    from peterrec.trainer.objectives import PretrainingModel, make_objective

    backbone = NextItNetBackbone.from_backbone_config(backbone_config, name="backbone").ensure_built()
    counts = [float(vocabulary.count_of(i)) for i in range(len(vocabulary))]
    kwargs = {"num_sampled": config.num_sampled, "seed": config.seed}
    if config.objective == "cloze":
        kwargs["mask_rate"] = config.mask_rate
    objective = make_objective(backbone, softmax=config.softmax,
                               item_counts=counts if config.softmax == "sampled" else None, **kwargs)
    model_class = LeaveOneOutModel if config.evaluation == "leave_one_out" else PretrainingModel
    model = model_class(backbone, objective, name="pretraining")
    model.compile(optimizer=mean_of_workers_optimizer(keras.optimizers.Adam, tf.distribute.get_strategy(),
                                                      learning_rate=config.learning_rate))
    return model


def pretrain(examples_dir: Optional[str], vocabulary_dir: str, output_dir: str, config: PretrainConfig,
             train_files: Optional[Sequence[str]] = None, eval_files: Optional[Sequence[str]] = None,
             export_dir: Optional[str] = None, callbacks: Sequence = ()) -> Dict[str, Any]:
    """Pretrains a backbone and exports it; returns the final metrics (see module docstring).

    examples_dir: an Examples folder with Split-train/ (Split-eval/, Split-test/); or give
    ``train_files`` / ``eval_files`` (file patterns, as TFX passes them). Under leave-one-out the
    users of every split found are the data; under "users" evaluation the train split trains and
    the eval split evaluates.
    callbacks: extra Keras callbacks (run after the checkpoint callback).

    Under a ``TF_CONFIG`` naming several workers, every worker runs this with the same arguments
    (``trainer.distribution``): the chief writes ``output_dir`` and ``export_dir``, the others a
    temporary folder they delete; every worker returns the metrics it computed.
    """
    from peterrec.trainer import distribution

    strategy = distribution.training_strategy()  # first: a multi-worker strategy configures TensorFlow
    with distribution.worker_output_dir(output_dir, strategy) as run_dir:
        return _pretrain(examples_dir, vocabulary_dir, run_dir, config, train_files, eval_files,
                         distribution.worker_path(export_dir, output_dir, run_dir), callbacks, strategy)


def _pretrain(examples_dir, vocabulary_dir, output_dir, config, train_files, eval_files, export_dir, callbacks,
              strategy) -> Dict[str, Any]:
    """``pretrain`` in this worker's output folder, under ``strategy``."""
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.trainer import artifacts, data, windows
    from peterrec.trainer import callbacks as callbacks_lib
    from peterrec.trainer.distribution import shard_for_workers
    from peterrec.trainer.runtime import enable_determinism, skip_autograph_for_tf_keras

    skip_autograph_for_tf_keras()
    config.validate()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        enable_determinism()
    vocabulary = load_vocabulary_of_kind(vocabulary_dir, "item", "pretraining")
    backbone_config = config.resolved_backbone(vocabulary)
    run_config = {"kind": "pretrain", "config": config.to_dict(), "backbone_config": backbone_config.to_dict(),
                  "vocabulary_fingerprint": vocabulary.fingerprint}
    resuming = check_or_write_run_config(output_dir, run_config, ["vocabulary_fingerprint", "backbone_config"])

    train_files, eval_files, test_files = _input_files(data, examples_dir, train_files, eval_files, config)
    options = {"vocab_size": len(vocabulary)}
    holdout = LEAVE_ONE_OUT_HOLDOUT if test_files else 0
    train_stats = windows.window_stats(train_files, config.max_len, holdout=holdout)
    num_train = train_stats["sequences"]
    if config.evaluation == "leave_one_out":
        evaluation = windows.leave_one_out_dataset(eval_files, config.batch_size, config.max_len, "validation",
                                                **options)
    else:
        evaluation = (data.dataset_from_files(eval_files, config.batch_size, config.max_len, **options)
                      if eval_files else None)
    evaluation = shard_for_workers(evaluation, strategy)
    if evaluation is None and config.verbose:
        print("pretrain: no eval split, so no evaluation metrics and no early stopping", flush=True)

    with strategy.scope():
        model = build_pretraining_model(backbone_config, vocabulary, config)
    backbone = model.backbone
    trackables = {"backbone": backbone}
    generator = getattr(model.objective, "_rng", None)  # the cloze masking RNG: resume it too
    if isinstance(generator, tf.random.Generator):
        trackables["objective_rng"] = generator
    state = TrainingState(output_dir, trackables, model.optimizer, config.monitor,
                          config.early_stopping_patience, config.max_checkpoints)
    state.restore()
    log_dir = os.path.join(output_dir, "logs")
    if config.verbose:
        action = state.describe_start(resuming)
        print(f"pretrain: {action}; {num_train} sequences, {train_stats['targets']:,} training targets in "
              f"{train_stats['windows']:,} windows of up to {config.max_len} items per epoch, {config.evaluation} "
              f"evaluation, {config.objective} objective, {config.softmax} softmax, "
              f"{len(vocabulary)} ids, d={backbone_config.embedding_dim}, {backbone_config.num_blocks} blocks, "
              f"{backbone.count_params()} parameters; output {output_dir}", flush=True)

    def training_data(first_epoch):
        dataset, steps = windows.window_training_dataset(
            train_files, config.batch_size, config.max_len, seed=config.seed, first_epoch=first_epoch,
            last_epoch=config.epochs, holdout=holdout, num_windows_per_epoch=train_stats["windows"],
            steps_per_epoch=config.steps_per_epoch, shuffle_buffer=config.shuffle_buffer, **options)
        return shard_for_workers(dataset, strategy), steps

    fitted = fit_resumably(model, state, config, training_data, evaluation, log_dir, run_config, vocabulary,
                           callbacks, label="pretrain")
    metrics: Dict[str, Any] = {}
    if evaluation is not None:
        with vocabulary_errors_explained(vocabulary):
            metrics.update(plain_metrics(model.evaluate(evaluation, return_dict=True, verbose=0)))
    if test_files:
        from peterrec.trainer.leave_one_out import evaluate_leave_one_out

        with vocabulary_errors_explained(vocabulary):
            test = evaluate_leave_one_out(backbone, test_files, config.max_len, "test", config.batch_size)
        metrics.update({f"test_{name}": value for name, value in test.items()})
    evaluated = {k: round(v, 4) for k, v in metrics.items()}
    # Items with a title (MovieLens, written by the ingestion next to the vocabulary) show it in the projector.
    callbacks_lib.write_embedding_projector(log_dir, backbone.embedding.embeddings, vocabulary.all_tokens(),
                                            titles=load_item_titles(vocabulary_dir))
    export_dir = export_dir or os.path.join(output_dir, "export")
    artifacts.export_backbone(backbone, backbone_config, vocabulary, export_dir)
    step_seconds = fitted.pop("step_seconds")
    metrics.update({
        **fitted,
        "export_dir": export_dir,
        "backbone_fingerprint": artifacts.read_backbone_metadata(export_dir)["fingerprint"],
        "vocabulary_fingerprint": vocabulary.fingerprint,
        "parameters": int(backbone.count_params()),
        "train_examples": num_train,
        "train_positions": train_stats["targets"],
        "train_windows": train_stats["windows"],
        "evaluation": config.evaluation,
    })
    if step_seconds:
        # Trained positions (targets) per second: one pass's targets over one pass's steps, per step time.
        steps_per_pass = -(-train_stats["windows"] // config.batch_size)
        metrics["step_seconds"] = step_seconds
        metrics["positions_per_second"] = train_stats["targets"] / (steps_per_pass * step_seconds)
    write_json(os.path.join(output_dir, METRICS_FILE), metrics)
    if config.verbose:
        print(f"pretrain: done after {metrics['epochs_completed']} epochs; eval {evaluated}; backbone exported to "
              f"{export_dir}", flush=True)
    return metrics


def _input_files(data, examples_dir: Optional[str], train_files, eval_files, config: PretrainConfig):
    """-> (training files, evaluation files, leave-one-out test files or None).

    Leave-one-out: every split's users train (less their last two items), validate and test.
    "users": the train split trains, the eval split evaluates, no test.
    """
    def split(name):
        if examples_dir is None:
            return None
        try:
            return data.split_files(examples_dir, name)
        except data.DataError:
            return None

    if train_files is None:
        if examples_dir is None:
            raise ValueError("give examples_dir or train_files")
        train_files = data.split_files(examples_dir, "train")
        if eval_files is None:
            eval_files = split("eval")
    if config.evaluation == "users":
        return train_files, eval_files or None, None
    every_user = [train_files, eval_files or [], split("test") or []]
    every_user = data.expand_file_patterns([f for files in every_user
                                            for f in ([files] if isinstance(files, str) else files)])
    return every_user, every_user, every_user
