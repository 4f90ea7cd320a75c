"""Failures: a component that fails leaves the earlier artifacts intact and a rerun picks up from
the cache; bad input that breaks the curated schema stops the run at the ExampleValidator,
before any training, with an error that names the anomaly."""

import os

import pytest

from peterrec.pipeline import metadata, testing

# A curated schema (what a team writes after looking at the first inferred one): timestamps
# are Unix seconds between 2000 and 2100, every example has a user, items and timestamps.
CURATED_SCHEMA = """
feature { name: "user_id" type: BYTES presence { min_fraction: 1.0 min_count: 1 }
          shape { dim { size: 1 } } }
feature { name: "item_ids" type: INT value_count { min: 1 } presence { min_fraction: 1.0 min_count: 1 } }
feature { name: "timestamps" type: INT value_count { min: 1 } presence { min_fraction: 1.0 min_count: 1 }
          int_domain { min: 946684800 max: 4102444800 } }
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return testing.shared_run(str(tmp_path_factory.getbasetemp()))


def test_a_failing_component_keeps_earlier_artifacts_and_the_rerun_uses_the_cache(shared, tmp_path):
    from peterrec.pipeline.components import backbone_dir_of, patch_dir_of
    from peterrec.trainer import artifacts

    blocker = tmp_path / "serving"
    blocker.write_text("a file where the model base's folder should be\n")
    model_base = str(blocker / "peterrec")

    with pytest.raises(Exception) as failure:
        testing.rerun(shared, model_base=model_base)
    assert "serving" in str(failure.value) or isinstance(failure.value, OSError), repr(failure.value)

    store = metadata.open_store(shared.pipeline_root)
    failed_run = metadata.run_ids(store)[-1]
    records = metadata.latest_by_node(store, failed_run)
    assert records["Pusher"].state == "FAILED"
    assert {node: r.state for node, r in records.items() if node != "Pusher"} == \
        {node: "CACHED" for node in records if node != "Pusher"}
    # The artifacts of the components before the failure are intact and still load.
    first = metadata.latest_by_node(store, shared.result.run_id)
    backbone_dir = backbone_dir_of(first["Trainer_pretrain"].output("model"))
    assert artifacts.read_backbone_metadata(backbone_dir)["fingerprint"]
    for task in ("gender", "cold_start"):
        assert artifacts.read_patch_metadata(patch_dir_of(first[f"Trainer_{task}"].output("model"))).task_name == task
    assembled = first["ServingModelAssembler"].output("model").uri
    assert os.path.exists(os.path.join(assembled, "Format-Serving", "saved_model.pb"))

    blocker.unlink()
    result = testing.rerun(shared, model_base=model_base)
    assert result.executed() == ["Pusher"], "only the component that failed runs again"
    assert result.pushed_version == 1 and os.path.exists(os.path.join(model_base, "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(str(tmp_path / "serving"), "models.config"))


def test_an_anomaly_stops_the_run_before_training_and_is_named(tmp_path):
    from peterrec.pipeline import local_runner
    from peterrec.pipeline.components import DataAnomalyError

    schema = tmp_path / "schema.pbtxt"
    schema.write_text(CURATED_SCHEMA)
    data = testing.tiny_config_dict()
    # Bad input: a log exported with timestamps that are not Unix seconds (they start at 1000).
    data["data"]["synthetic"].update({"users": 120, "start_time": 1000})
    data["data"]["schema_path"] = str(schema)
    config = testing.tiny_config(data=data["data"])
    root = str(tmp_path / "root")

    with pytest.raises(DataAnomalyError) as failure:
        local_runner.run(config, root, beam_pipeline_args=testing.BEAM_ARGS, log=lambda line: None)
    message = str(failure.value)
    assert "feature 'timestamps'" in message and "stops before training" in message, message

    store = metadata.open_store(root)
    records = metadata.latest_by_node(store, metadata.run_ids(store)[-1])
    assert records["ExampleValidator"].state == "FAILED"
    assert {records[n].state for n in ("SequenceExampleGen", "StatisticsGen", "ImportSchemaGen")} == {"COMPLETE"}
    assert not [n for n in records if n.startswith(("Trainer", "TaskExampleGen", "TaskEvaluator"))], sorted(records)
