"""Gives the memory an unloaded version freed back to the operating system.

Measured with the soak's model (``benchmarks/soak.py``) in one process: after a version is
unloaded no Python reference to it is left (a weakref to it dies at the next garbage
collection), and TensorFlow itself keeps about 0.2 MB per ``tf.saved_model.load``. glibc's
malloc keeps the pages it freed inside its per-thread arenas, and a server answering on many
threads has many arenas: right after a push, ``malloc_trim(0)`` took the whole server under
gRPC and REST load from 650 MB down to 598 MB. Under steady load the arenas fill again within
seconds (643 MB twelve seconds later), so this lowers the level between bursts; it does not
change the ~1 MB per push the server grows in that experiment. The model manager calls
``release_freed_memory()`` after every unload."""

import ctypes
import gc
import logging
import platform
from typing import Optional

LOG = logging.getLogger("peterrec.serving")

_UNSET = object()
_libc = _UNSET


def _glibc() -> Optional[ctypes.CDLL]:
    """glibc through ctypes, or None where the C library is another one (musl, macOS)."""
    global _libc
    if _libc is _UNSET:
        _libc = None
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                library = ctypes.CDLL("libc.so.6")
                if hasattr(library, "malloc_trim"):
                    library.malloc_trim.argtypes = [ctypes.c_size_t]
                    library.malloc_trim.restype = ctypes.c_int
                    _libc = library
            except OSError as error:
                LOG.info("no malloc_trim: %s", error)
    return _libc


def release_freed_memory() -> bool:
    """Collects garbage, then asks glibc to return its free heap pages; False without glibc.

    The collection comes first because a loaded SavedModel's objects form reference cycles:
    they are freed by the collector, not when the last reference goes.
    """
    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
