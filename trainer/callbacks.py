"""Keras callbacks of the training loops: per-epoch and every-N-steps checkpoints that resume,
early stopping whose state survives an interruption, hparams and item-embedding projector logs for
TensorBoard, and a per-epoch history file.

Resuming: ``EpochCheckpoint`` saves a checkpoint after every epoch and ``StepCheckpoint`` every N
steps within an epoch (``trainer/checkpointing.py`` writes them so that a kill never leaves the
index naming a half-written one). The checkpoint holds the model variables, the optimizer, an
epoch counter, the steps done in the current epoch and the ``EarlyStoppingState``, so a run
restarted after a crash restores all of them and continues at that step of that epoch
(``loop.fit_resumably``): it loses at most N steps and ends after the same number of epochs.
Early stopping is done inside ``EpochCheckpoint`` (before the save) so the saved state is always
the state after that epoch.
"""

import json
import math
import os
import time
from typing import Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from peterrec.trainer import fault_points


def monitor_mode(monitor: str) -> str:
    """"min" for losses, "max" for every other metric (accuracy, HR, NDCG, MRR, F1)."""
    return "min" if "loss" in monitor else "max"


class EarlyStoppingState(tf.Module):
    """The early-stopping bookkeeping as variables, so it is checkpointed with the model.

    ``update(value, epoch)`` records one epoch's monitored value and returns
    ``(improved, should_stop)``; ``patience <= 0`` never stops.
    """

    def __init__(self, monitor: str, patience: int, mode: Optional[str] = None, min_delta: float = 0.0):
        super().__init__(name="early_stopping")
        self.monitor = monitor
        self.patience = int(patience)
        self.mode = mode or monitor_mode(monitor)
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        self.min_delta = float(min_delta)
        initial = math.inf if self.mode == "min" else -math.inf
        self.best = tf.Variable(initial, dtype=tf.float64, trainable=False, name="best")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="wait")
        self.stopped = tf.Variable(False, trainable=False, name="stopped")

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        best = float(self.best.numpy())
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def update(self, value: float, epoch: int):
        """Records the value of (1-based) ``epoch``; returns (improved, should_stop)."""
        improved = self.is_improvement(value)
        if improved:
            self.best.assign(value)
            self.best_epoch.assign(epoch)
            self.wait.assign(0)
        else:
            self.wait.assign_add(1)
        should_stop = self.patience > 0 and int(self.wait.numpy()) >= self.patience
        if should_stop:
            self.stopped.assign(True)
        return improved, should_stop

    def summary(self) -> Dict[str, object]:
        """Plain values for logs and metrics files."""
        return {"monitor": self.monitor, "best": float(self.best.numpy()), "best_epoch": int(self.best_epoch.numpy()),
                "stopped_early": bool(self.stopped.numpy())}


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: update early stopping, save the best weights, save a resumable checkpoint.

    manager: CheckpointManager whose checkpoint holds the model, optimizer, ``epoch`` and
    ``early_stopping``. best_manager: CheckpointManager of the weights alone, written when the
    monitored value improves (restored at the end of training). epoch: int64 variable counting
    finished epochs. step_in_epoch: int64 variable of the steps done in the current epoch (see
    ``StepCheckpoint``), set to 0 before the save.
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 early_stopping: Optional[EarlyStoppingState] = None,
                 best_manager: Optional[tf.train.CheckpointManager] = None, verbose: int = 1,
                 step_in_epoch: Optional[tf.Variable] = None):
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.early_stopping = early_stopping
        self.best_manager = best_manager
        self.verbose = verbose
        self.step_in_epoch = step_in_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        finished = epoch + 1
        should_stop = False
        if self.early_stopping is not None:
            monitor = self.early_stopping.monitor
            if monitor not in logs:
                raise KeyError(f"early stopping monitors {monitor!r}, but the epoch logs only have "
                               f"{sorted(logs)}; pick one of those (eval metrics need eval data)")
            improved, should_stop = self.early_stopping.update(float(logs[monitor]), finished)
            if improved and self.best_manager is not None:
                self.best_manager.save(checkpoint_number=finished)
        self.epoch.assign(finished)
        if self.step_in_epoch is not None:
            self.step_in_epoch.assign(0)
        path = self.manager.save(checkpoint_number=finished)
        if self.verbose:
            print(f"epoch {finished}: checkpoint {path}", flush=True)
        if should_stop:
            if self.verbose:
                state = self.early_stopping.summary()
                print(f"early stopping after epoch {finished}: {state['monitor']} has not improved for "
                      f"{self.early_stopping.patience} epochs (best {state['best']:.5f} at epoch "
                      f"{state['best_epoch']})", flush=True)
            self.model.stop_training = True


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every ``every_steps`` training steps within an epoch (0: never), named
    ``ckpt-<epoch>-step-<s>``, with ``step_in_epoch`` = s so that a resumed run starts at step s.

    Counting starts from ``step_in_epoch`` at each epoch's start (the steps a resumed run skips);
    the last step of an epoch is left to ``EpochCheckpoint``. ``steps_per_epoch``: the full
    epoch's steps. After each step it passes ``fault_points.pause_here("step", ...)`` with the
    step counted over the whole run (epochs x steps_per_epoch + s), where kill tests stop it.
    """

    def __init__(self, manager, epoch: tf.Variable, step_in_epoch: tf.Variable, every_steps: int,
                 steps_per_epoch: int, verbose: int = 1):
        super().__init__()
        if int(every_steps) < 0:
            raise ValueError(f"every_steps must be >= 0, got {every_steps}")
        self._supports_tf_logs = True  # the logs are not read: Keras need not copy them every step
        self.manager = manager
        self.epoch = epoch
        self.step_in_epoch = step_in_epoch
        self.every_steps = int(every_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.verbose = verbose
        self._epoch = 0
        self._step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = int(self.step_in_epoch.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.every_steps and self._step % self.every_steps == 0 and self._step < self.steps_per_epoch:
            self.step_in_epoch.assign(self._step)
            path = self.manager.save(name=f"{self.manager.prefix}-{self._epoch + 1}-step-{self._step}")
            if self.verbose:
                print(f"epoch {self._epoch + 1}, step {self._step}: checkpoint {path}", flush=True)
        fault_points.pause_here("step", step=self._epoch * self.steps_per_epoch + self._step)


class StepTimer(keras.callbacks.Callback):
    """Measures the wall time of each training step (batch), without the first of each ``fit``.

    The first step includes tracing and is left out; ``median_seconds()`` is the median of the
    rest (None if there were none), a robust per-step cost for throughput and step-time ratios.
    """

    def __init__(self):
        super().__init__()
        self.durations = []
        self._start = None
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._start
        if self._first:
            self._first = False
            return
        self.durations.append(elapsed)

    def median_seconds(self) -> Optional[float]:
        """Median seconds per training step (first step excluded), or None."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


class WorkerMeanMetrics(keras.callbacks.Callback):
    """Under several workers, puts the epoch's training metrics over every worker's batches into
    the epoch logs. Keras sums what each worker's ``train_step`` returns (its own running mean), so
    two workers would log twice the loss; the metrics' ``result()`` read outside the step combines
    the workers' totals and counts instead. Read after the epoch's last step (validation resets the
    metrics before ``on_epoch_end``); it must come first among the callbacks, which share the logs.
    """

    def __init__(self):
        super().__init__()
        self._results = {}

    def on_epoch_begin(self, epoch, logs=None):
        self._results = {}

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.params.get("steps"):
            self._results = {m.name: float(m.result()) for m in self.model.metrics if m.name in (logs or {})}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._results)


class HistoryLog(keras.callbacks.Callback):
    """Appends one JSON line per finished epoch (epoch number, seconds, all logs) to a file.

    Survives resumes: a resumed run appends the epochs it trains, so the file lists every epoch
    of the run exactly once when nothing is retrained.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started if self._started is not None else float("nan")
        record = {"epoch": epoch + 1, "seconds": seconds}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        with tf.io.gfile.GFile(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_history(path: str):
    """The records written by ``HistoryLog``, in order (empty if the file does not exist)."""
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path, "r") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def flatten_hparams(config: Mapping, prefix: str = "") -> Dict[str, object]:
    """Flattens a nested config dict into TensorBoard hparams (bool/int/float/str values)."""
    flat: Dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is None:
            flat[name] = "none"
        else:
            flat[name] = str(list(value)) if isinstance(value, (list, tuple)) else str(value)
    return flat


def hparams_callback(log_dir: str, config: Mapping, trial_id: Optional[str] = None) -> keras.callbacks.Callback:
    """TensorBoard HParams plugin callback logging the run's flattened config.

    Written to the same ``log_dir`` as Keras' TensorBoard callback, so the HParams dashboard
    finds the run's ``train/`` and ``validation/`` scalars under the same session.
    """
    from tensorboard.plugins.hparams import api as hp

    return hp.KerasCallback(log_dir, flatten_hparams(config), trial_id=trial_id)


PROJECTOR_RUN = "projector"  # the folder under a run's log dir that holds its embedding projector


def write_embedding_projector(log_dir: str, embeddings, tokens: Sequence[str], name: str = "item_embedding",
                              titles: Optional[Mapping[str, str]] = None) -> str:
    """Writes an embedding matrix and its row labels for TensorBoard's projector; returns the folder.

    ``embeddings`` [V, d] (array or variable); ``tokens`` [V] name each row (the vocabulary's
    tokens in id order). ``titles`` (token -> title, e.g. movie titles) label the rows they
    cover; then ``metadata.tsv`` has a header and two columns, ``title`` (the title, else the
    token) and ``item`` (the token); without titles it is one column of tokens.

    Files go to ``log_dir/projector``: a checkpoint holding the matrix as ``name``,
    ``metadata.tsv``, ``projector_config.pbtxt`` and an (empty) event file. The event file is
    what makes the folder a TensorBoard run: the projector plugin looks for its config and
    checkpoint only in run folders, so without it TensorBoard opened on the run's log dir or on
    a pipeline root above it finds no projector.
    """
    from tensorboard.plugins import projector

    values = tf.convert_to_tensor(embeddings)
    if int(values.shape[0]) != len(tokens):
        raise ValueError(f"{values.shape[0]} embedding rows but {len(tokens)} tokens")
    folder = os.path.join(log_dir, PROJECTOR_RUN)
    tf.io.gfile.makedirs(folder)
    rows = [[token] for token in tokens]
    if titles:
        rows = [["title", "item"]] + [[titles.get(str(token)) or token, token] for token in tokens]
    with tf.io.gfile.GFile(os.path.join(folder, "metadata.tsv"), "w") as handle:
        for row in rows:
            handle.write("\t".join(_tsv_field(field) for field in row) + "\n")
    checkpoint = tf.train.Checkpoint(**{name: tf.Variable(values, name=name)})
    checkpoint.save(os.path.join(folder, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(folder, config)
    if not tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*")):  # one, however often rewritten
        tf.summary.create_file_writer(folder).close()
    return folder


def _tsv_field(value) -> str:
    """One metadata cell: tabs and newlines would break the TSV, so they become spaces."""
    return str(value).replace("\t", " ").replace("\n", " ")


class RaiseAfterEpoch(keras.callbacks.Callback):
    """Raises ``InterruptedError`` at the end of a given (1-based) epoch: simulates a crash.

    For tests and resume drills; placed after ``EpochCheckpoint`` it crashes after the save.
    """

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = int(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise InterruptedError(f"simulated interruption after epoch {self.epoch}")
