"""Writes that a ``kill -9`` (or a power cut) cannot leave half done, for ``peterrec export``.

- ``write_text_atomic(path, text)``: the text goes to a hidden temporary file beside ``path``
  (``.<name>.tmp-*``), is flushed and fsynced, then ``os.replace``\\ d over ``path`` and the folder
  is fsynced: a reader sees the old file or the new one, never half of one. Temporary files
  left by a killed writer are removed by the next write of the same file once they are older
  than ``STALE_TEMP_SECONDS`` (a live writer holds its temporary file for milliseconds).
- ``ExportStaging(model_base)``: the hidden folder ``MODEL_BASE/.export-XXXX/`` a version is
  written into (its ``model/`` subfolder) before it is renamed to ``MODEL_BASE/<N>``. The
  export holds an exclusive ``flock`` on ``.export-XXXX/lock`` while it lives; the kernel drops
  the lock when the process dies, however it dies. ``remove_stale_staging`` deletes the
  staging folders whose lock nobody holds, so a new export cleans up after a killed one but
  never touches a concurrent export's live staging. The server never sees any of this: it
  reads only all-digit version folders (``peterrec.serving.servable.list_versions``).
- ``exclusive_lock(path)``: serialises the read-modify-write of ``models.config`` between
  concurrent exports (one export's label update is never lost to another's).
- ``crash_point(name)``: a deterministic test hook. When the environment variable
  ``PETERREC_CRASH_POINT`` equals ``name``, the process SIGKILLs itself there (the kill tests
  use it to die in the middle of a ``models.config`` write); otherwise it does nothing.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
from typing import Iterator, List

CRASH_POINT_ENV = "PETERREC_CRASH_POINT"
STAGING_PREFIX = ".export-"
LOCK_FILE = "lock"
MODEL_SUBDIR = "model"
STALE_TEMP_SECONDS = 60.0
# A staging folder without a lock file is one whose creator died between mkdtemp and taking
# the lock (microseconds) -- or one that is being created right now: only age tells them apart.
STALE_UNLOCKED_SECONDS = 3600.0


def crash_point(name: str) -> None:
    """Kills this process with SIGKILL when ``PETERREC_CRASH_POINT`` is ``name`` (a test hook)."""
    if os.environ.get(CRASH_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: str) -> None:
    """Makes the entries of a folder (a rename into it, a new file) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: str) -> None:
    """fsyncs every file and folder under ``root`` (before a rename publishes it)."""
    for folder, _, files in os.walk(root):
        for name in files:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_dir(folder)


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.tmp-"


def remove_stale_temporaries(path: str, older_than: float = STALE_TEMP_SECONDS) -> List[str]:
    """Removes ``.<name>.tmp-*`` files beside ``path`` older than ``older_than`` seconds; returns them."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    now = time.time()
    for name in os.listdir(directory):
        candidate = os.path.join(directory, name)
        if not name.startswith(prefix) or not os.path.isfile(candidate):
            continue
        try:
            if now - os.path.getmtime(candidate) > older_than:
                os.remove(candidate)
                removed.append(candidate)
        except FileNotFoundError:  # another writer cleaned it first
            continue
    return removed


def write_text_atomic(path: str, text: str) -> str:
    """Replaces ``path`` with ``text`` atomically and durably (see the module doc); returns ``path``."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path)
    data = text.encode("utf-8")
    descriptor, temporary = tempfile.mkstemp(prefix=_temp_prefix(path), dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            half = len(data) // 2
            handle.write(data[:half])
            handle.flush()
            crash_point(f"write:{os.path.basename(path)}")
            handle.write(data[half:])
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the server may run as another user
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    fsync_dir(directory)
    return path


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _lock_is_free(lock_path: str) -> bool:
    """True when nobody holds the flock on ``lock_path`` (its export died)."""
    try:
        descriptor = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)  # also drops the lock if we got it
    return True


def remove_stale_staging(model_base: str, unlocked_older_than: float = STALE_UNLOCKED_SECONDS) -> List[str]:
    """Deletes the ``.export-*`` folders under ``model_base`` left by killed exports; returns them.

    Stale: the lock file exists and nobody holds its lock, or there is no lock file and the
    folder is older than ``unlocked_older_than`` seconds. A live export's folder is kept.
    """
    if not os.path.isdir(model_base):
        return []
    removed = []
    now = time.time()
    for name in sorted(os.listdir(model_base)):
        folder = os.path.join(model_base, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(folder):
            continue
        lock_path = os.path.join(folder, LOCK_FILE)
        try:
            if os.path.exists(lock_path):
                stale = _lock_is_free(lock_path)
            else:
                stale = now - os.path.getmtime(folder) > unlocked_older_than
        except FileNotFoundError:  # its export finished and removed it meanwhile
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class ExportStaging:
    """A locked hidden folder under ``model_base`` to write one version into (see the module doc).

    Use as a context manager: ``model_dir`` is where the SavedModel goes; on leaving, the
    folder (and whatever is still in it) is removed and the lock released.
    """

    def __init__(self, model_base: str):
        self._descriptor = None
        self.folder = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_base)
        # Lock a file under a temporary name, then rename it to LOCK_FILE: a cleaner that finds
        # LOCK_FILE always finds it locked while this export lives.
        pending = os.path.join(self.folder, f".{LOCK_FILE}-pending")
        self._descriptor = os.open(pending, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX)
            os.rename(pending, os.path.join(self.folder, LOCK_FILE))
        except BaseException:
            self.close()
            raise
        self.model_dir = os.path.join(self.folder, MODEL_SUBDIR)

    def close(self) -> None:
        """Removes the staging folder, then releases the lock."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> "ExportStaging":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
