"""Reading a pipeline run back from the ML Metadata store (SQLite under the pipeline root).

TFX records each run as a ``pipeline_run`` context; every component execution of the run
(a new one, or a ``CACHED`` one that reuses an earlier execution's outputs) is attributed
to it and to its ``node`` context (``PIPELINE.NODE_ID``). These helpers answer what the
runner, the demo and the tests ask: which executions did the last run have, in which
state, with which output artifacts.
"""

import dataclasses
import os
from typing import Dict, List, Optional

METADATA_FILE = "metadata.sqlite"
PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"


def metadata_path(pipeline_root: str) -> str:
    """The SQLite MLMD file of a local pipeline root."""
    return os.path.join(pipeline_root, METADATA_FILE)


def connection_config(pipeline_root: str):
    """The SQLite MLMD connection config of a local pipeline root (the file is created if needed)."""
    from tfx.orchestration import metadata

    os.makedirs(pipeline_root, exist_ok=True)
    return metadata.sqlite_metadata_connection_config(metadata_path(pipeline_root))


def open_store(pipeline_root: str):
    """An ``ml_metadata`` MetadataStore on the pipeline root's SQLite file."""
    from ml_metadata import metadata_store

    if not os.path.exists(metadata_path(pipeline_root)):
        raise FileNotFoundError(f"no metadata store at {metadata_path(pipeline_root)}: has the pipeline run?")
    return metadata_store.MetadataStore(connection_config(pipeline_root))


@dataclasses.dataclass
class ExecutionRecord:
    """One component execution of a run: node id, state name, outputs by key."""

    node_id: str
    execution_id: int
    state: str
    outputs: Dict[str, list]  # output key -> [mlmd Artifact]
    inputs: Dict[str, list]
    properties: Dict[str, object]

    @property
    def cached(self) -> bool:
        """True when the run reused an earlier execution's outputs."""
        return self.state == "CACHED"

    def output(self, key: str):
        """The single output artifact under ``key``."""
        artifacts = self.outputs.get(key) or []
        if len(artifacts) != 1:
            raise KeyError(f"{self.node_id}: expected one {key!r} output, found {len(artifacts)}")
        return artifacts[0]


def run_ids(store, pipeline_name: Optional[str] = None) -> List[str]:
    """The ``pipeline_run`` context names (run ids), oldest first."""
    contexts = store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
    if pipeline_name is not None:
        pipelines = {c.id for c in store.get_contexts_by_type("pipeline") if c.name == pipeline_name}
        contexts = [c for c in contexts if any(p.id in pipelines for p in store.get_parent_contexts_by_context(c.id))] \
            or contexts
    return [c.name for c in sorted(contexts, key=lambda c: (c.create_time_since_epoch, c.id))]


def _custom_value(value):
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _events_by_key(store, execution_id: int):
    from ml_metadata.proto import metadata_store_pb2

    events = store.get_events_by_execution_ids([execution_id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    inputs: Dict[str, list] = {}
    outputs: Dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT):
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        elif event.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT):
            inputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return inputs, outputs


def run_executions(store, run_id: Optional[str] = None) -> List[ExecutionRecord]:
    """The executions of one run (default: the latest), in execution order."""
    from ml_metadata.proto import metadata_store_pb2

    ids = run_ids(store)
    if not ids:
        return []
    run_id = run_id or ids[-1]
    context = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)
    if context is None:
        raise KeyError(f"no pipeline run {run_id!r}; runs: {ids}")
    records = []
    for execution in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id):
        node_contexts = [c for c in store.get_contexts_by_execution(execution.id) if c.type == NODE_CONTEXT]
        if not node_contexts:
            node_contexts = [c for c in store.get_contexts_by_execution(execution.id)
                             if c.type_id == store.get_context_type(NODE_CONTEXT).id]
        node_id = node_contexts[0].name.split(".", 1)[-1] if node_contexts else str(execution.type_id)
        inputs, outputs = _events_by_key(store, execution.id)
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        properties = {k: _custom_value(v) for k, v in execution.custom_properties.items()}
        records.append(ExecutionRecord(node_id, execution.id, state, outputs, inputs, properties))
    return records


def latest_by_node(store, run_id: Optional[str] = None) -> Dict[str, ExecutionRecord]:
    """``{node id: its last execution}`` of one run (default: the latest run)."""
    return {record.node_id: record for record in run_executions(store, run_id)}


def artifact_property(artifact, name: str, default=None):
    """A custom property of an MLMD artifact as a Python value."""
    if name in artifact.custom_properties:
        return _custom_value(artifact.custom_properties[name])
    if name in artifact.properties:
        return _custom_value(artifact.properties[name])
    return default
