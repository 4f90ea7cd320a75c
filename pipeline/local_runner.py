"""Runs the pipeline locally: LocalDagRunner, SQLite metadata under the pipeline root.

    from peterrec.pipeline import config, local_runner
    result = local_runner.run(config.load_default_config(), "/tmp/peterrec-root")
    print(result.model_base, result.pushed_version)

Layout under ``PIPELINE_ROOT``::

    metadata.sqlite            ML Metadata (every run, execution and artifact)
    data/                      the generated synthetic data set (synthetic configs)
    <Component>/<output>/<id>/ the artifacts (TFX layout)
    serving/<model_name>/<N>/  the pushed model versions, serving/models.config beside them

Beam runs on the DirectRunner: multi-processing over the machine's cores unless the
arguments (or ``PETERREC_BEAM_IN_MEMORY=1``, as in the tests) say otherwise. Progress is
printed per component (running, cached, finished, seconds).
"""

import contextlib
import dataclasses
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

from peterrec.components import beam_options
from peterrec.pipeline import config as config_lib
from peterrec.pipeline import metadata


@dataclasses.dataclass
class LocalRunResult:
    """What a local run did: where things are and what each component did."""

    pipeline_root: str
    metadata_path: str
    model_base: str
    run_id: str
    executions: Dict[str, "metadata.ExecutionRecord"]
    pushed_version: Optional[int]
    pushed_path: Optional[str]
    seconds: float

    @property
    def model_config_path(self) -> str:
        """``models.config`` beside the model base (for ``peterrec serve`` / TF Serving)."""
        return os.path.join(os.path.dirname(self.model_base), "models.config")

    def executed(self) -> List[str]:
        """Node ids that ran in this run (not served from the cache)."""
        return [node for node, record in self.executions.items() if not record.cached]

    def cached(self) -> List[str]:
        """Node ids whose outputs came from the cache."""
        return [node for node, record in self.executions.items() if record.cached]


class _ProgressHandler(logging.Handler):
    """Turns the LocalDagRunner's log lines into one progress line per component."""

    def __init__(self, node_ids: Sequence[str], log: Callable[[str], None]):
        super().__init__(level=logging.INFO)
        self.total = len(node_ids)
        self.log = log
        self.started: Dict[str, float] = {}
        self.order: Dict[str, int] = {}
        self.cached = False

    def emit(self, record: logging.LogRecord) -> None:
        message, args = record.msg, record.args
        if not isinstance(message, str) or not args:
            return
        if message.startswith("Component %s is running"):
            node = str(args[0])
            self.order.setdefault(node, len(self.order) + 1)
            self.started[node] = time.perf_counter()
            self.cached = False
            self.log(f"[{self._position(node)}] {node} ...")
        elif message.startswith("A cached execution %d is used"):
            self.cached = True
        elif message.startswith("Component %s is finished"):
            node = str(args[0])
            seconds = time.perf_counter() - self.started.get(node, time.perf_counter())
            how = "from the cache" if self.cached else "done"
            self.log(f"[{self._position(node)}] {node}: {how} in {seconds:.1f} s")

    def _position(self, node: str) -> str:
        return f"{self.order.get(node, 0):>{len(str(self.total))}}/{self.total}"


class _ForwardWarnings(logging.Handler):
    """Passes WARNING and above on to the root logger's handlers (INFO chatter stays quiet)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)

    # Warnings TFX repeats for every component and that ask nothing of the user.
    NOISE = ("ArtifactQuery.property_predicate is not supported",)

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith(self.NOISE):
            return
        logging.getLogger().handle(record)


@contextlib.contextmanager
def progress_output(node_ids: Sequence[str], log: Callable[[str], None] = print):
    """Prints a line when each component starts and ends (from TFX's own INFO log records).

    The ``absl`` logger (TFX logs through it) is set to INFO for the progress handler only;
    its warnings and errors still reach the usual handlers, its INFO lines do not.
    """
    from absl import logging as absl_logging

    logger = logging.getLogger("absl")
    handlers = [_ProgressHandler(node_ids, log), _ForwardWarnings()]
    previous_verbosity, previous_propagate = absl_logging.get_verbosity(), logger.propagate
    for handler in handlers:
        logger.addHandler(handler)
    # Through absl's verbosity, not logger.setLevel: TensorFlow saves and restores that verbosity
    # around checkpointing, which would otherwise put the logger back to WARNING mid-run.
    absl_logging.set_verbosity(absl_logging.INFO)
    logger.propagate = False
    try:
        yield handlers[0]
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        absl_logging.set_verbosity(previous_verbosity)
        logger.propagate = previous_propagate


def run(config: config_lib.PipelineConfig, pipeline_root: str, beam_pipeline_args: Optional[Sequence[str]] = None,
        enable_cache: Optional[bool] = None, model_base: Optional[str] = None,
        log: Callable[[str], None] = print, **pipeline_options) -> LocalRunResult:
    """Prepares the data, runs the pipeline with the LocalDagRunner and reads the run back.

    Raises whatever the failing component raised (for example ``DataAnomalyError`` from the
    ExampleValidator); the artifacts of the components that finished stay in place, and a
    rerun takes them from the cache. ``pipeline_options`` go to ``create_pipeline``.
    """
    from tfx import v1 as tfx

    from peterrec.pipeline.pipeline import component_ids, create_pipeline

    started = time.perf_counter()
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(pipeline_root, exist_ok=True)
    config_lib.prepare_data(config, pipeline_root, log=log)
    model_base = os.path.abspath(model_base or config.serving.resolved_model_base(pipeline_root))
    # Every Beam component (TFX's StatisticsGen too) runs as peterrec's own components do by
    # default: the DirectRunner, multi-processing on every core (in memory under the tests).
    given = list(config.beam_pipeline_args) + list(beam_pipeline_args or ())
    beam_pipeline_args = list(beam_pipeline_args or ()) + beam_options.default_direct_args(given)
    log(f"Beam: {beam_options.describe(given)}")
    pipeline = create_pipeline(config, pipeline_root, metadata.connection_config(pipeline_root),
                               beam_pipeline_args=beam_pipeline_args, enable_cache=enable_cache,
                               model_base=model_base, **pipeline_options)
    nodes = component_ids(config)
    log(f"pipeline {config.pipeline_name}: {len(nodes)} components, root {pipeline_root}")
    with progress_output(nodes, log):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    store = metadata.open_store(pipeline_root)
    run_id = metadata.run_ids(store)[-1]
    executions = metadata.latest_by_node(store, run_id)
    version, path = pushed(executions)
    seconds = time.perf_counter() - started
    log(f"pipeline finished in {seconds:.1f} s: {len(executions)} components "
        f"({sum(r.cached for r in executions.values())} from the cache)"
        + (f"; pushed version {version} to {path}" if version is not None else "; nothing pushed"))
    return LocalRunResult(pipeline_root, metadata.metadata_path(pipeline_root), model_base, run_id, executions,
                          version, path, seconds)


def pushed(executions: Dict[str, "metadata.ExecutionRecord"]):
    """(version, path) the Pusher of a run pushed, or (None, None)."""
    record = executions.get("Pusher")
    if record is None or "pushed_model" not in record.outputs:
        return None, None
    artifact = record.output("pushed_model")
    if not metadata.artifact_property(artifact, "pushed", 0):
        return None, None
    version = metadata.artifact_property(artifact, "pushed_version")
    return (int(version) if version is not None else None), metadata.artifact_property(artifact, "pushed_destination")
