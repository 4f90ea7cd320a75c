"""Caching, checked through the metadata store: a second run with unchanged inputs executes no
component again (every execution of that run is CACHED, no new COMPLETE execution appears and
nothing new is pushed); changing one task's threshold re-executes exactly that task's
evaluator and what depends on it."""

import os

import pytest

from peterrec.pipeline import metadata, pipeline, testing


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return testing.shared_run(str(tmp_path_factory.getbasetemp()))


def _complete_executions(store):
    from ml_metadata.proto import metadata_store_pb2

    return {e.id for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.COMPLETE}


def _versions(model_base):
    return sorted(int(name) for name in os.listdir(model_base) if name.isdigit())


def test_second_run_with_unchanged_inputs_executes_nothing(shared):
    store = metadata.open_store(shared.pipeline_root)
    complete_before = _complete_executions(store)
    versions_before = _versions(shared.result.model_base)

    result = testing.rerun(shared)

    store = metadata.open_store(shared.pipeline_root)
    records = metadata.run_executions(store, result.run_id)
    assert result.run_id != shared.result.run_id
    assert sorted(r.node_id for r in records) == sorted(pipeline.component_ids(shared.config))
    assert {r.state for r in records} == {"CACHED"}, {r.node_id: r.state for r in records if not r.cached}
    assert _complete_executions(store) == complete_before, "no component executed again"
    assert result.executed() == []
    # A cached execution hands on the very artifacts of the first run.
    first = metadata.latest_by_node(store, shared.result.run_id)
    for node, record in metadata.latest_by_node(store, result.run_id).items():
        assert {k: [a.id for a in v] for k, v in record.outputs.items()} == \
            {k: [a.id for a in v] for k, v in first[node].outputs.items()}, node
    assert _versions(shared.result.model_base) == versions_before, "nothing new was pushed"


def test_a_changed_threshold_reruns_only_that_evaluator_and_what_follows(shared):
    data = testing.tiny_config_dict()
    data["tasks"][0]["threshold"]["min_lift"] = 0.01  # gender: a new evaluator property
    changed = testing.tiny_config(tasks=data["tasks"])
    versions_before = _versions(shared.result.model_base)

    result = testing.rerun(shared, config=changed)

    assert sorted(result.executed()) == ["Pusher", "ServingModelAssembler", "TaskEvaluator_gender"]
    assert "Trainer_gender" in result.cached() and "Trainer_pretrain" in result.cached()
    assert result.pushed_version == max(versions_before) + 1
    assert _versions(shared.result.model_base) == versions_before + [result.pushed_version]
