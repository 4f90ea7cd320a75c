"""Beam pipeline options: the DirectRunner on every core by default, anything else passed through.

``make_pipeline_options(beam_pipeline_args)`` keeps the caller's arguments exactly as
given (so ``--runner=FlinkRunner``, ``SparkRunner`` or ``DataflowRunner`` and their flags
work unchanged) and only fills in what is missing for the local DirectRunner:

- ``--direct_running_mode=multi_processing`` with ``--direct_num_workers`` = the CPUs this
  process may use, so ingestion uses the whole machine;
- ``--direct_running_mode=in_memory`` instead when ``PETERREC_BEAM_IN_MEMORY=1`` (tests:
  no worker processes, fast start-up, deterministic).
"""

import os
from typing import List, Optional, Sequence

IN_MEMORY_ENV = "PETERREC_BEAM_IN_MEMORY"
_DIRECT_RUNNERS = ("directrunner", "direct", "bundlebaseddirectrunner", "switchingdirectrunner")


def available_cpus() -> int:
    """The number of CPUs this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def in_memory_requested() -> bool:
    """Whether the environment asks for Beam's in-memory DirectRunner (tests)."""
    return os.environ.get(IN_MEMORY_ENV, "").strip().lower() in ("1", "true", "yes")


def _given(args: Sequence[str], name: str) -> bool:
    flag = f"--{name}"
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _value(args: Sequence[str], name: str) -> Optional[str]:
    flag = f"--{name}"
    for index, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
    return None


def _runner(args: Sequence[str]) -> Optional[str]:
    return _value(args, "runner")


def is_local_direct(beam_pipeline_args: Optional[Sequence[str]]) -> bool:
    """Whether these arguments run on the local DirectRunner (no ``--runner`` or a direct one)."""
    runner = _runner(list(beam_pipeline_args or ()))
    return runner is None or runner.lower().rsplit(".", 1)[-1] in _DIRECT_RUNNERS


def default_direct_args(beam_pipeline_args: Optional[Sequence[str]] = None) -> List[str]:
    """Returns the DirectRunner defaults that the caller's arguments do not already set."""
    args = list(beam_pipeline_args or ())
    if not is_local_direct(args):
        return []
    extra = []
    mode = _value(args, "direct_running_mode")
    if mode is None:
        mode = "in_memory" if in_memory_requested() else "multi_processing"
        extra.append(f"--direct_running_mode={mode}")
    if not _given(args, "direct_num_workers"):
        extra.append(f"--direct_num_workers={1 if mode == 'in_memory' else available_cpus()}")
    return extra


def make_pipeline_options(beam_pipeline_args: Optional[Sequence[str]] = None):
    """Builds ``PipelineOptions`` from the caller's arguments plus the DirectRunner defaults."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_pipeline_args or ())
    return PipelineOptions(args + default_direct_args(args))


def describe(beam_pipeline_args: Optional[Sequence[str]] = None) -> str:
    """A one-line description of where a pipeline with these arguments runs (progress output)."""
    args = list(beam_pipeline_args or ())
    full = args + default_direct_args(args)
    runner = _runner(full) or "DirectRunner"
    if not is_local_direct(full):
        return runner
    mode = _value(full, "direct_running_mode") or "in_memory"
    workers = _value(full, "direct_num_workers") or "1"
    return f"{runner} ({mode}, {workers} worker{'s' if workers != '1' else ''})"
