"""Checkpoints that a ``kill -9`` at any moment cannot corrupt: the ``checkpoint`` index only ever
names checkpoints whose files are complete.

``AtomicCheckpointManager`` keeps the layout of ``tf.train.CheckpointManager`` (``ckpt-N.index``,
``ckpt-N.data-*`` and the ``checkpoint`` index file, which ``tf.train.latest_checkpoint`` reads)
and writes each checkpoint in three steps:

1. the checkpoint is written into a staging folder ``.staging-<name>``;
2. its files are moved into place, the data first and the ``.index`` last (each move is a rename);
3. the ``checkpoint`` index is rewritten to name it (TensorFlow writes that file to a temporary
   name and renames it, so a reader sees the old index or the new one, never half of one).

A kill before step 3 leaves the index naming the previous checkpoint, whose files are untouched:
a name is never written twice while the index names it (``save`` refuses). What a killed write
leaves behind (the staging folder, TensorFlow's own ``*_temp`` folders and ``*.tempstate*`` files,
``checkpoint.tmp*``, files of a checkpoint the index does not name) is removed by
``remove_leftovers``, which the training loop runs before it restores.

Checkpoints whose name ends in ``-step-<s>`` (taken in the middle of an epoch) are kept only
until a newer checkpoint exists; the others (one per epoch) keep the newest ``max_to_keep``.
"""

import os
import re
from typing import List, Optional

from peterrec.trainer import fault_points

STAGING_PREFIX = ".staging-"
INDEX_FILE = "checkpoint"
_STEP_NAME = re.compile(r"-step-\d+$")


def is_step_checkpoint(name: str) -> bool:
    """Whether a checkpoint name is a mid-epoch one (superseded by any newer checkpoint)."""
    return bool(_STEP_NAME.search(name))


class AtomicCheckpointManager:
    """A ``tf.train.CheckpointManager`` look-alike (``save``, ``latest_checkpoint``,
    ``checkpoint``, ``directory``) whose writes survive a kill at any moment (module docstring).

    checkpoint: the ``tf.train.Checkpoint`` to write; directory: where its files go;
    max_to_keep: how many per-epoch checkpoints to keep; prefix: the checkpoint name prefix.
    """

    def __init__(self, checkpoint, directory: str, max_to_keep: int = 3, prefix: str = "ckpt"):
        if int(max_to_keep) < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.checkpoint = checkpoint
        self.directory = directory
        self.max_to_keep = int(max_to_keep)
        self.prefix = prefix

    # ------------------------------------------------------------------ reading the index
    def names(self) -> List[str]:
        """The checkpoints the index names, oldest first (empty without an index)."""
        import tensorflow as tf

        state = tf.train.get_checkpoint_state(self.directory)
        if state is None:
            return []
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        names = [os.path.basename(path) for path in paths if path]
        latest = os.path.basename(state.model_checkpoint_path)
        if latest and latest not in names:
            names.append(latest)
        return names

    @property
    def latest_checkpoint(self) -> Optional[str]:
        """The path prefix of the newest named checkpoint, or None."""
        names = self.names()
        return os.path.join(self.directory, names[-1]) if names else None

    # ------------------------------------------------------------------ writing
    def save(self, checkpoint_number: Optional[int] = None, name: Optional[str] = None) -> str:
        """Writes the checkpoint as ``<prefix>-<checkpoint_number>`` (or ``name``), names it in the
        index, drops the checkpoints it supersedes; returns its path prefix."""
        import tensorflow as tf

        if (checkpoint_number is None) == (name is None):
            raise ValueError("give checkpoint_number or name")
        name = name or f"{self.prefix}-{int(checkpoint_number)}"
        named = self.names()
        if name in named:
            raise ValueError(f"{os.path.join(self.directory, name)} is named by the index; rewriting it in place "
                             "could leave the index naming a half-written checkpoint")
        staging = os.path.join(self.directory, STAGING_PREFIX + name)
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        tf.io.gfile.makedirs(staging)
        self.checkpoint.write(os.path.join(staging, name))
        final = os.path.join(self.directory, name)
        fault_points.pause_here("checkpoint-staged", path=final)
        files = sorted(tf.io.gfile.listdir(staging), key=lambda f: f.endswith(".index"))  # the index last
        for filename in files:
            tf.io.gfile.rename(os.path.join(staging, filename), os.path.join(self.directory, filename),
                               overwrite=True)
        tf.io.gfile.rmtree(staging)
        fault_points.pause_here("checkpoint-placed", path=final)
        kept = self._kept(named + [name])
        tf.__internal__.train.update_checkpoint_state(self.directory, name, all_model_checkpoint_paths=kept,
                                                     save_relative_paths=True)
        for dropped in named:
            if dropped not in kept:
                self._delete(dropped)
        return final

    def _kept(self, names: List[str]) -> List[str]:
        """The names to keep, oldest first: the newest ``max_to_keep`` epoch checkpoints, and a
        step checkpoint only while it is the newest of all."""
        epochs = [n for n in names if not is_step_checkpoint(n)][-self.max_to_keep:]
        return [n for n in names if n in epochs or n == names[-1]]

    def _delete(self, name: str) -> None:
        import tensorflow as tf

        for path in tf.io.gfile.glob(os.path.join(self.directory, name) + ".*"):
            tf.io.gfile.remove(path)

    def drop(self, keep) -> List[str]:
        """Unnames and deletes the named checkpoints for which ``keep(name)`` is false; returns them."""
        import tensorflow as tf

        named = self.names()
        dropped = [n for n in named if not keep(n)]
        if not dropped:
            return []
        kept = [n for n in named if keep(n)]
        if kept:
            tf.__internal__.train.update_checkpoint_state(self.directory, kept[-1], all_model_checkpoint_paths=kept,
                                                         save_relative_paths=True)
        else:
            tf.io.gfile.remove(os.path.join(self.directory, INDEX_FILE))
        for name in dropped:
            self._delete(name)
        return dropped

    # ------------------------------------------------------------------ after a kill
    def remove_leftovers(self) -> List[str]:
        """Deletes what killed writes left in the directory (see the module docstring); returns
        the removed names. Folders other than staging and TensorFlow temp folders (``best/``) stay."""
        import tensorflow as tf

        if not tf.io.gfile.isdir(self.directory):
            return []
        named = set(self.names())
        removed = []
        for entry in tf.io.gfile.listdir(self.directory):
            entry = entry.rstrip("/")
            path = os.path.join(self.directory, entry)
            if entry.startswith(STAGING_PREFIX) or entry.endswith("_temp"):
                tf.io.gfile.rmtree(path)
            elif entry.startswith(INDEX_FILE + ".tmp") or ".tempstate" in entry:
                tf.io.gfile.remove(path)
            elif self._is_unnamed_checkpoint_file(entry, named) and not tf.io.gfile.isdir(path):
                tf.io.gfile.remove(path)
            else:
                continue
            removed.append(entry)
        return sorted(removed)

    def _is_unnamed_checkpoint_file(self, entry: str, named) -> bool:
        if not entry.startswith(self.prefix + "-"):
            return False
        stem = entry.split(".index")[0].split(".data-")[0]
        return (entry.endswith(".index") or ".data-" in entry) and stem not in named
