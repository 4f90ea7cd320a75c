"""Training on several workers: ``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
names more than one worker, the default strategy otherwise (one process, no change).

How the loops use it (pretrain.py, finetune.py, loop.py):

- ``training_strategy()``: the strategy; the model and its optimizer are built in its scope.
- ``shard_for_workers(dataset)``: the input is sharded by DATA: every worker runs the same input
  pipeline (same files, same seeded order) and Keras splits each global batch of ``batch_size``
  between the workers, so the batches, the steps per epoch and a resumed run's skipped steps are
  those of one worker, and the global batch stays the configured one.
- ``worker_output_dir(output_dir)``: the chief writes ``output_dir`` (checkpoints, export,
  metrics.json, TensorBoard); every other worker writes the same files into a temporary folder it
  deletes at the end (as the TensorFlow multi-worker guide does: saving a model or checkpoint may
  need every worker to take part). A non-chief worker's folder starts with a copy of the chief's
  checkpoints and run_config.json, so every worker restores the chief's checkpoint and resumes
  at the same step. ``output_dir`` must be on storage every worker reads (one machine, NFS, GCS).

Gradients: each worker's loss is the mean over its half of the batch and the optimizer sums the
workers' gradients, so ``mean_of_workers_optimizer`` divides the sum by the number of workers.
That is the gradient of one worker exactly when the workers' halves count the same number of
positions; when they do not, the halves are weighted equally rather than by their positions.
"""

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator, Optional

RUN_FILES = ("run_config.json",)
CHECKPOINT_FOLDERS = ("checkpoints", os.path.join("checkpoints", "best"))

_STRATEGY = None


def cluster_spec(tf_config: Optional[str] = None) -> dict:
    """``TF_CONFIG`` (the environment variable unless given) parsed: ``{"cluster": ..., "task": ...}``;
    an empty dict without one. A malformed value raises ValueError naming the variable."""
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return {}
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error}): {text[:80]!r}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {text[:80]!r}")
    return spec


def num_workers(tf_config: Optional[str] = None) -> int:
    """How many training processes ``TF_CONFIG`` names (its chief and workers; 1 without it)."""
    cluster = cluster_spec(tf_config).get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def training_strategy():
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers, else the default
    strategy. Created once per process (a process joins one cluster) and reused."""
    global _STRATEGY
    import tensorflow as tf

    if num_workers() <= 1:
        return tf.distribute.get_strategy()
    if _STRATEGY is None:
        _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGY


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` trains over several workers."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._num_workers > 1  # pylint: disable=protected-access


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files: always with one worker; under several, the
    ``chief`` task, or worker 0 when the cluster has no chief (TensorFlow's rule)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and int(task_id) == 0 and not has_chief)


def shard_for_workers(dataset, strategy):
    """``dataset`` with DATA auto-sharding under several workers (module docstring), else as is."""
    if dataset is None or not is_multi_worker(strategy):
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def mean_of_workers_optimizer(optimizer_class, strategy, **kwargs):
    """An instance of the tf-keras ``optimizer_class`` whose summed gradients are divided by the
    number of replicas (module docstring); the plain optimizer with one replica."""
    replicas = strategy.num_replicas_in_sync
    if replicas <= 1:
        return optimizer_class(**kwargs)

    class MeanOfWorkers(optimizer_class):
        """``optimizer_class`` averaging, not summing, the replicas' gradients."""

        def aggregate_gradients(self, grads_and_vars):
            import tensorflow as tf

            summed = super().aggregate_gradients(grads_and_vars)
            # scalar_mul also scales IndexedSlices (the embedding's sparse gradients).
            return [(None if g is None else tf.math.scalar_mul(1.0 / replicas, g), v) for g, v in summed]

    MeanOfWorkers.__name__ = optimizer_class.__name__
    return MeanOfWorkers(**kwargs)


def _copy_named_checkpoints(source: str, target: str) -> None:
    """Copies the checkpoints the index of ``source`` names (and the index) into ``target``; only
    named files, which a chief cleaning its folder never deletes."""
    import tensorflow as tf

    from peterrec.trainer.checkpointing import INDEX_FILE, AtomicCheckpointManager

    names = AtomicCheckpointManager(None, source).names()
    if not names:
        return
    tf.io.gfile.makedirs(target)
    for name in names:
        for path in tf.io.gfile.glob(os.path.join(source, name) + ".*"):
            tf.io.gfile.copy(path, os.path.join(target, os.path.basename(path)), overwrite=True)
    tf.io.gfile.copy(os.path.join(source, INDEX_FILE), os.path.join(target, INDEX_FILE), overwrite=True)


@contextlib.contextmanager
def worker_output_dir(output_dir: str, strategy) -> Iterator[str]:
    """Yields the folder this worker writes the run into: ``output_dir`` for the chief, a temporary
    copy of the chief's resumable state for any other worker, deleted on exit (module docstring)."""
    if is_chief(strategy):
        yield output_dir
        return
    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="peterrec-worker-")
    try:
        if tf.io.gfile.exists(os.path.join(output_dir, CHECKPOINT_FOLDERS[0], "checkpoint")):
            # A resumed run: run_config.json was written before that checkpoint, so it is complete.
            for name in RUN_FILES:
                if tf.io.gfile.exists(os.path.join(output_dir, name)):
                    tf.io.gfile.copy(os.path.join(output_dir, name), os.path.join(folder, name))
            for sub in CHECKPOINT_FOLDERS:
                _copy_named_checkpoints(os.path.join(output_dir, sub), os.path.join(folder, sub))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def worker_path(path: Optional[str], output_dir: str, written_dir: str) -> Optional[str]:
    """Where this worker writes an output the caller placed at ``path`` (an export or patch folder
    outside ``output_dir``): ``path`` for the chief (``written_dir == output_dir``), else a folder
    inside this worker's temporary ``written_dir``."""
    if path is None or written_dir == output_dir:
        return path
    return os.path.join(written_dir, "elsewhere", os.path.basename(os.path.normpath(path)) or "out")
