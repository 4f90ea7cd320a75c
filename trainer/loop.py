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
# Steps between the checkpoints taken within an epoch: a kill loses at most this many steps. One
# write costs about as much as a handful of training steps (0.07 s against 0.01 s steps for the kill
# tests' tiny model, measured on the 2-core machine), so every 500 steps it is noise.
DEFAULT_CHECKPOINT_EVERY_STEPS = 500
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
    """The resumable state of a loop: model + optimizer + epoch + step in the epoch + early stopping.

    ``trackables`` are the model parts to checkpoint (the variables that change, and any that
    must come back identically); ``restore()`` returns the number of finished epochs and sets
    ``step_in_epoch`` to the steps of the next epoch already trained. Checkpoints are written by
    ``AtomicCheckpointManager`` (a kill never leaves the index naming an incomplete one): one per
    epoch, and one every ``checkpoint_every_steps`` steps within an epoch (``step_callback``).
    """

    def __init__(self, output_dir: str, trackables: Dict[str, Any], optimizer, monitor: str, patience: int,
                 max_to_keep: int = 3):
        import tensorflow as tf

        from peterrec.trainer.callbacks import EarlyStoppingState
        from peterrec.trainer.checkpointing import AtomicCheckpointManager

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.early_stopping = EarlyStoppingState(monitor, patience)
        checkpoint = tf.train.Checkpoint(optimizer=optimizer, epoch=self.epoch, step_in_epoch=self.step_in_epoch,
                                         early_stopping=self.early_stopping, **trackables)
        directory = os.path.join(output_dir, "checkpoints")
        self.manager = AtomicCheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
        # Two kept: the best of the epoch being saved and the best the last checkpoint refers to.
        self.best_manager = AtomicCheckpointManager(tf.train.Checkpoint(**trackables), os.path.join(directory, "best"),
                                                    max_to_keep=2)
        self._trackables = trackables

    def restore(self) -> int:
        """Removes what a killed write left, restores the latest checkpoint if there is one and
        forgets best weights of epochs it does not include; returns the finished epochs."""
        self.manager.remove_leftovers()
        self.best_manager.remove_leftovers()
        latest = self.manager.latest_checkpoint
        if latest is not None:
            self.manager.checkpoint.read(latest).assert_existing_objects_matched()
        finished = int(self.epoch.numpy())
        # A best checkpoint of an epoch after the last checkpoint was saved just before a kill: the
        # resumed run trains that epoch again and decides again.
        self.best_manager.drop(lambda name: _epoch_of(name) <= finished)
        return finished

    def describe_start(self, resuming: bool) -> str:
        """How the run starts, for the progress output: "starting", "restarting" (a run folder
        without checkpoints), "resuming after epoch E" or "resuming at step S of epoch E"."""
        finished, step = int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
        if step:
            return f"resuming at step {step} of epoch {finished + 1}"
        if finished:
            return f"resuming after epoch {finished}"
        return "restarting" if resuming else "starting"

    def restore_best(self) -> bool:
        """Loads the best epoch's weights (if a best checkpoint exists); returns whether it did."""
        best_epoch = int(self.early_stopping.best_epoch.numpy())
        named = self.best_manager.names()
        wanted = f"{self.best_manager.prefix}-{best_epoch}"
        if not named:
            return False
        name = wanted if wanted in named else named[-1]
        path = os.path.join(self.best_manager.directory, name)
        self.best_manager.checkpoint.read(path).assert_existing_objects_matched()
        return True

    def callback(self, verbose: int = 1, early_stopping: bool = True):
        """The EpochCheckpoint callback that saves this state after every epoch."""
        from peterrec.trainer.callbacks import EpochCheckpoint

        return EpochCheckpoint(self.manager, self.epoch, self.early_stopping if early_stopping else None,
                               self.best_manager if early_stopping else None, verbose=1 if verbose else 0,
                               step_in_epoch=self.step_in_epoch)

    def step_callback(self, every_steps: int, steps_per_epoch: int, verbose: int = 1):
        """The StepCheckpoint callback that saves this state every ``every_steps`` steps of an epoch."""
        from peterrec.trainer.callbacks import StepCheckpoint

        return StepCheckpoint(self.manager, self.epoch, self.step_in_epoch, every_steps, steps_per_epoch,
                              verbose=1 if verbose else 0)


def _epoch_of(name: str) -> int:
    """The epoch number of a per-epoch checkpoint name (``ckpt-3`` -> 3)."""
    return int(name.rsplit("-", 1)[1])


def fit_resumably(model, state: TrainingState, config, training_data, evaluation, log_dir: str,
                  run_config: Dict[str, Any], vocabulary: Vocabulary, callbacks: Sequence = (),
                  label: str = "train") -> Dict[str, Any]:
    """Trains ``model`` from where ``state`` last saved (an epoch, and a step within the next one)
    up to ``config.epochs``, then restores the best epoch's weights if early stopping ran and
    ``config.restore_best``.

    ``config`` has ``epochs``, ``early_stopping_patience``, ``restore_best``, ``verbose`` and
    ``checkpoint_every_steps``; ``training_data(initial_epoch) -> (dataset, steps_per_epoch)``
    gives the batches of epochs ``initial_epoch`` .. ``epochs - 1`` (each epoch's order fixed by
    the seed and the epoch) and is only called when there is something left to train. A run
    resumed ``s`` steps into an epoch skips that epoch's first ``s`` batches and trains the rest
    of it in a ``fit`` of its own, then the later epochs. The callbacks save the state every
    epoch and every ``checkpoint_every_steps`` steps, time the steps, and log history,
    TensorBoard scalars and the hparams of ``run_config["config"]`` under ``log_dir``;
    ``callbacks`` run after them. Returns ``epochs_completed``, ``best_epoch``,
    ``stopped_early``, ``restored_best`` and ``step_seconds`` (median, None if nothing ran).
    """
    import tf_keras as keras

    from peterrec.trainer import callbacks as callbacks_lib
    from peterrec.trainer.distribution import is_multi_worker

    initial_epoch = int(state.epoch.numpy())
    skip = int(state.step_in_epoch.numpy())
    early_stopping = evaluation is not None and config.early_stopping_patience > 0
    finished_early = bool(state.early_stopping.stopped.numpy())
    timer = callbacks_lib.StepTimer()
    if initial_epoch < config.epochs and not finished_early:
        train, steps = training_data(initial_epoch)
        if skip >= steps:
            raise RunMismatchError(f"the last checkpoint was taken {skip} steps into epoch {initial_epoch + 1}, "
                                   f"but an epoch now has {steps} steps; it cannot be resumed. Use a new output folder.")
        fit_callbacks = [
            state.callback(config.verbose, early_stopping),
            state.step_callback(config.checkpoint_every_steps, steps, config.verbose),
            timer,
            callbacks_lib.HistoryLog(os.path.join(log_dir, HISTORY_FILE)),
            keras.callbacks.TensorBoard(log_dir, update_freq="epoch", profile_batch=0, write_graph=False),
            callbacks_lib.hparams_callback(log_dir, run_config["config"], trial_id=os.path.basename(
                os.path.dirname(log_dir))),
            *callbacks,
        ]
        if is_multi_worker(model.distribute_strategy):
            fit_callbacks.insert(0, callbacks_lib.WorkerMeanMetrics())
        fits = [(initial_epoch, config.epochs, train, steps)]
        if skip:
            # The rest of the interrupted epoch: the same batches the uninterrupted run trained on.
            fits = [(initial_epoch, initial_epoch + 1, train.skip(skip).take(steps - skip), steps - skip)]
            if initial_epoch + 1 < config.epochs:
                fits.append((initial_epoch + 1, config.epochs, None, steps))
        with vocabulary_errors_explained(vocabulary):
            for first, last, dataset, fit_steps in fits:
                if model.stop_training or bool(state.early_stopping.stopped.numpy()):
                    break
                if dataset is None:
                    dataset = training_data(first)[0]
                model.fit(dataset, validation_data=evaluation, epochs=last, initial_epoch=first,
                          steps_per_epoch=fit_steps, callbacks=fit_callbacks, verbose=config.verbose)
    elif config.verbose:
        print(f"{label}: nothing left to train ({initial_epoch} epochs done"
              f"{', stopped early' if finished_early else ''})", flush=True)
    restored_best = early_stopping and config.restore_best and state.restore_best()
    summary = state.early_stopping.summary()
    epochs = int(state.epoch.numpy())
    return {"epochs_completed": epochs, "best_epoch": summary["best_epoch"] if early_stopping else epochs,
            "stopped_early": summary["stopped_early"], "restored_best": bool(restored_best),
            "step_seconds": timer.median_seconds()}
