"""Claims on benchmark runs, so several processes on one work dir share a plan.

Each process walks the same list of pending runs and takes the next one it can claim. A claim is
an exclusive ``flock`` on a file named after the run, held for as long as the run lasts: the
operating system drops it when the process ends, however it ends, so a killed worker's run is
free again for the next process that reaches it and no stale claim is ever left to clean up.
The results file stays the record of what finished; claims only keep two processes off the
same run at the same time. (Local file systems; ``flock`` over NFS depends on the mount.)
"""

import fcntl
import os
from typing import Dict


class RunClaims:
    """Run claims in ``folder``: ``claim(key)`` is True in exactly one process at a time."""

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._held: Dict[str, int] = {}

    def _path(self, key: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return os.path.join(self.folder, safe + ".lock")

    def claim(self, key: str) -> bool:
        """Claims ``key`` for this process; False while another process holds it."""
        if key in self._held:
            return True
        descriptor = os.open(self._path(key), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._held[key] = descriptor
        return True

    def release(self, key: str) -> None:
        """Drops this process's claim on ``key`` (nothing happens when it holds none)."""
        descriptor = self._held.pop(key, None)
        if descriptor is not None:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
