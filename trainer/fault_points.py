"""Named points where a test can freeze a training process, so that it is killed exactly there.

Kill tests (tests/test_kill_training.py) run a real ``peterrec pretrain`` / ``finetune`` process
and ``kill -9`` it; to make the moment of the kill deterministic, the process stops at a named
point and waits to be killed. Nothing happens unless the environment asks for it:

    PETERREC_TEST_PAUSE=step:13            after training step 13 (counted over the whole run)
    PETERREC_TEST_PAUSE=checkpoint-staged  a checkpoint's files are written to its staging folder,
                                           nothing is in place yet
    PETERREC_TEST_PAUSE=checkpoint-placed  a checkpoint's files are in place, the ``checkpoint``
                                           index does not name it yet
    PETERREC_TEST_PAUSE_MARKER=PATH        written (JSON: point, step, path, pid) when the pause begins

A checkpoint pause stops at the first checkpoint write of the process, or, given a checkpoint
name (``checkpoint-staged:ckpt-2-step-8``), at the write of that checkpoint. A paused process that
nobody kills exits with status 3 after ``PAUSE_SECONDS``, so a failed test leaves no process
behind for long.
"""

import json
import os
import time
from typing import Optional

PAUSE_ENV = "PETERREC_TEST_PAUSE"
MARKER_ENV = "PETERREC_TEST_PAUSE_MARKER"
PAUSE_SECONDS = 600
POINTS = ("step", "checkpoint-staged", "checkpoint-placed")


def requested_pause():
    """-> (point, value) asked for by the environment, or None; value: the step threshold (an int)
    of a ``step`` point, the checkpoint name (a str) of a checkpoint point, or None."""
    wanted = os.environ.get(PAUSE_ENV, "").strip()
    if not wanted:
        return None
    point, _, value = wanted.partition(":")
    if point not in POINTS:
        raise ValueError(f"{PAUSE_ENV}={wanted!r}: the point must be one of {POINTS}")
    if not value:
        return point, None
    return point, (int(value) if point == "step" else value)


def pause_here(point: str, step: Optional[int] = None, path: Optional[str] = None) -> None:
    """Freezes the process at ``point`` if the environment asks for it (see the module docstring).

    ``step``: the training step reached (for ``step:N``, the pause happens once step >= N);
    ``path``: the checkpoint being written, reported in the marker (for ``point:NAME``, the pause
    happens when its name is NAME).
    """
    requested = requested_pause()
    if requested is None or requested[0] != point:
        return
    wanted = requested[1]
    if isinstance(wanted, int) and (step is None or step < wanted):
        return
    if isinstance(wanted, str) and (path is None or os.path.basename(path) != wanted):
        return
    marker = os.environ.get(MARKER_ENV)
    if marker:
        temporary = f"{marker}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"point": point, "step": step, "path": path, "pid": os.getpid()}, handle)
        os.replace(temporary, marker)  # the test never reads half a marker
    time.sleep(PAUSE_SECONDS)
    os._exit(3)  # nobody killed the paused process: end it without running any more training
