"""Pieces shared by the pretraining and fine-tuning loops: run bookkeeping in ``output_dir``
(``run_config.json``, resumable checkpoints, ``metrics.json``) and clear vocabulary errors."""

import contextlib
import json
import os
from typing import Any, Dict, Mapping, Sequence

from peterrec.components.vocabulary import Vocabulary, VocabularyError, VocabularyMismatchError

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
# How the input pipeline names a task's ids in its out-of-range messages (data.check_ids_below).
TASK_ID_KINDS = ("label id", "target item id")


class RunMismatchError(ValueError):
    """``output_dir`` holds a run with another config or vocabulary: it cannot be resumed."""


def load_vocabulary_of_kind(path: str, kind: str, what: str) -> Vocabulary:
    """Loads a vocabulary (a folder holding vocabulary.json, or the file) and checks its kind."""
    vocabulary = Vocabulary.load(path)
    if vocabulary.kind != kind:
        raise VocabularyError(f"{path} holds a {vocabulary.kind} vocabulary; {what} needs a {kind} vocabulary")
    return vocabulary


def check_or_write_run_config(output_dir: str, run_config: Dict[str, Any], keys: Sequence[str]) -> bool:
    """Writes ``run_config.json`` for a new run; for an existing one checks ``keys`` agree.

    Returns True if a previous run was found (so the caller resumes it).
    """
    import tensorflow as tf

    path = os.path.join(output_dir, RUN_CONFIG_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "r") as handle:
            previous = json.load(handle)
        for key in keys:
            if previous.get(key) != run_config.get(key):
                message = (f"{output_dir} holds a run with another {key} ({_short(previous.get(key))} vs "
                           f"{_short(run_config.get(key))}); it cannot be resumed. Use a new output folder.")
                if "fingerprint" in key:
                    raise VocabularyMismatchError(message)
                raise RunMismatchError(message)
        return True
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(run_config, handle, indent=2, sort_keys=True)
    return False


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Writes a JSON file (any filesystem TensorFlow reaches)."""
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)


def plain_metrics(logs: Mapping[str, Any]) -> Dict[str, float]:
    """Keras logs as plain floats."""
    return {str(k): float(v) for k, v in logs.items()}


@contextlib.contextmanager
def vocabulary_errors_explained(vocabulary: Vocabulary):
    """Turns the input pipeline's out-of-vocabulary assertion into a VocabularyMismatchError."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if "another vocabulary" not in str(error):
            raise
        first_line = next((line for line in str(error).splitlines() if "another vocabulary" in line), str(error))
        if any(what in first_line for what in TASK_ID_KINDS):
            raise VocabularyMismatchError(
                f"the examples hold more classes or target items than the task has outputs ({first_line.strip()}): "
                "give the task's own vocabulary (peterrec finetune --task-vocabulary DIR, the label or target "
                "vocabulary that task-examples wrote), which sets the number of outputs") from None
        raise VocabularyMismatchError(
            f"the examples do not fit the vocabulary {vocabulary.fingerprint[:16]}... ({len(vocabulary)} ids): "
            f"{first_line.strip()}") from None


class TrainingState:
    """The resumable state of a loop: CheckpointManager of model + optimizer + epoch + early stopping.

    ``trackables`` are the model parts to checkpoint (the variables that change, and any that
    must come back identically); ``restore()`` returns the number of finished epochs.
    """

    def __init__(self, output_dir: str, trackables: Dict[str, Any], optimizer, monitor: str, patience: int,
                 max_to_keep: int = 3):
        import tensorflow as tf

        from peterrec.trainer.callbacks import EarlyStoppingState

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.early_stopping = EarlyStoppingState(monitor, patience)
        checkpoint = tf.train.Checkpoint(optimizer=optimizer, epoch=self.epoch,
                                         early_stopping=self.early_stopping, **trackables)
        directory = os.path.join(output_dir, "checkpoints")
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
        self.best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**trackables), os.path.join(directory, "best"), max_to_keep=1)
        self._trackables = trackables

    def restore(self) -> int:
        """Restores the latest checkpoint if there is one; returns the finished epochs."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        self.manager.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def restore_best(self) -> bool:
        """Loads the best epoch's weights (if a best checkpoint exists); returns whether it did."""
        latest = self.best_manager.latest_checkpoint
        if latest is None:
            return False
        self.best_manager.checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def callback(self, verbose: int = 1, early_stopping: bool = True):
        """The EpochCheckpoint callback that saves this state after every epoch."""
        from peterrec.trainer.callbacks import EpochCheckpoint

        return EpochCheckpoint(self.manager, self.epoch, self.early_stopping if early_stopping else None,
                               self.best_manager if early_stopping else None, verbose=1 if verbose else 0)


def fit_resumably(model, state: TrainingState, config, training_data, evaluation, log_dir: str,
                  run_config: Dict[str, Any], vocabulary: Vocabulary, callbacks: Sequence = (),
                  label: str = "train") -> Dict[str, Any]:
    """Trains ``model`` from the epoch ``state`` last saved up to ``config.epochs``, then restores
    the best epoch's weights if early stopping ran and ``config.restore_best``.

    ``config`` has ``epochs``, ``early_stopping_patience``, ``restore_best`` and ``verbose``;
    ``training_data(initial_epoch) -> (dataset, steps_per_epoch)`` is only called when there is
    something left to train. The callbacks save the state every epoch, time the steps, and log
    history, TensorBoard scalars and the hparams of ``run_config["config"]`` under ``log_dir``;
    ``callbacks`` run after them. Returns ``epochs_completed``, ``best_epoch``,
    ``stopped_early``, ``restored_best`` and ``step_seconds`` (median, None if nothing ran).
    """
    import tf_keras as keras

    from peterrec.trainer import callbacks as callbacks_lib

    initial_epoch = int(state.epoch.numpy())
    early_stopping = evaluation is not None and config.early_stopping_patience > 0
    finished_early = bool(state.early_stopping.stopped.numpy())
    timer = callbacks_lib.StepTimer()
    if initial_epoch < config.epochs and not finished_early:
        train, steps = training_data(initial_epoch)
        fit_callbacks = [
            state.callback(config.verbose, early_stopping),
            timer,
            callbacks_lib.HistoryLog(os.path.join(log_dir, HISTORY_FILE)),
            keras.callbacks.TensorBoard(log_dir, update_freq="epoch", profile_batch=0, write_graph=False),
            callbacks_lib.hparams_callback(log_dir, run_config["config"], trial_id=os.path.basename(
                os.path.dirname(log_dir))),
            *callbacks,
        ]
        with vocabulary_errors_explained(vocabulary):
            model.fit(train, validation_data=evaluation, epochs=config.epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps, callbacks=fit_callbacks, verbose=config.verbose)
    elif config.verbose:
        print(f"{label}: nothing left to train ({initial_epoch} epochs done"
              f"{', stopped early' if finished_early else ''})", flush=True)
    restored_best = early_stopping and config.restore_best and state.restore_best()
    summary = state.early_stopping.summary()
    epochs = int(state.epoch.numpy())
    return {"epochs_completed": epochs, "best_epoch": summary["best_epoch"] if early_stopping else epochs,
            "stopped_early": summary["stopped_early"], "restored_best": bool(restored_best),
            "step_seconds": timer.median_seconds()}
