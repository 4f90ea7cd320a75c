"""Tests of peterrec.serving.serving_files: models.config labels and policies after each export."""

import os

import pytest

import peterrec  # noqa: F401
from peterrec.serving import model_config, serving_files


def _version(base, number):
    os.makedirs(os.path.join(base, str(number)))
    open(os.path.join(base, str(number), "saved_model.pb"), "wb").close()


def _entry(directory):
    return model_config.entries_of(model_config.read_model_config(os.path.join(directory, "models.config")))


def test_first_export_serves_the_latest_version(tmp_path):
    base = str(tmp_path / "recs")
    _version(base, 1)
    paths = serving_files.update_serving_files(base, 1)
    (entry,) = _entry(str(tmp_path))
    assert (entry.policy, entry.num_versions, entry.labels) == ("latest", 1, {})
    assert set(paths) == {"model_config", "batching_parameters", "monitoring_config"}
    assert all(os.path.exists(path) for path in paths.values())


def test_labels_move_and_keep_their_versions_loaded(tmp_path):
    base = str(tmp_path / "recs")
    for number in (1, 2, 3):
        _version(base, number)
    serving_files.update_serving_files(base, 1, label="stable")
    serving_files.update_serving_files(base, 2, label="canary")
    (entry,) = _entry(str(tmp_path))
    assert entry.labels == {"stable": 1, "canary": 2} and entry.wants([1, 2, 3]) == [2, 1]
    serving_files.update_serving_files(base, 3, label="canary")  # a new canary; stable stays on 1
    (entry,) = _entry(str(tmp_path))
    assert entry.labels == {"stable": 1, "canary": 3} and entry.wants([1, 2, 3]) == [3, 1]
    serving_files.update_serving_files(base, 3, label="stable")  # promote
    (entry,) = _entry(str(tmp_path))
    assert entry.labels == {"stable": 3, "canary": 3} and entry.wants([1, 2, 3]) == [3]


def test_other_models_and_edited_files_are_kept(tmp_path):
    other = model_config.ModelEntry("other", "/models/other", policy="all")
    model_config.write_model_config(str(tmp_path / "models.config"), [other])
    batching = str(tmp_path / model_config.BATCHING_PARAMETERS_FILE)
    model_config.write_batching_parameters(batching, model_config.BatchingParameters(max_batch_size=8))
    base = str(tmp_path / "recs")
    _version(base, 4)
    serving_files.update_serving_files(base, 4)
    entries = {entry.name: entry for entry in _entry(str(tmp_path))}
    assert entries["other"] == other.validate()
    assert entries["recs"].base_path == base
    assert model_config.read_batching_parameters(batching).max_batch_size == 8


def test_labels_of_deleted_versions_are_dropped_and_policies_kept():
    previous = model_config.ModelEntry("recs", "/m/recs", policy="specific", versions=(1, 2), labels={"stable": 1})
    entry = serving_files.plan_entry("recs", "/m/recs", 3, None, previous, on_disk=[2, 3])
    assert entry.labels == {} and entry.policy == "latest" and entry.num_versions == 1
    entry = serving_files.plan_entry("recs", "/m/recs", 3, None, previous, on_disk=[1, 2, 3])
    assert entry.labels == {"stable": 1} and entry.policy == "specific" and entry.versions == (1, 3)
    window = model_config.ModelEntry("recs", "/m/recs", num_versions=3, labels={"stable": 1})
    entry = serving_files.plan_entry("recs", "/m/recs", 3, None, window, on_disk=[1, 2])
    assert entry.policy == "latest" and entry.num_versions == 3
    everything = model_config.ModelEntry("recs", "/m/recs", policy="all", labels={"stable": 1})
    entry = serving_files.plan_entry("recs", "/m/recs", 2, "canary", everything, on_disk=[1, 2])
    assert entry.policy == "all" and entry.labels == {"stable": 1, "canary": 2}
    with pytest.raises(ValueError, match="version label"):
        serving_files.validate_label("a b")


def test_served_versions_are_pinned_before_a_version_that_would_drop_a_label(tmp_path):
    base = str(tmp_path / "recs")
    _version(base, 1)
    serving_files.update_serving_files(base, 1, label="stable")
    assert not serving_files.pin_served_versions(base, label="stable")  # the label moves: latest 1 fits
    assert serving_files.pin_served_versions(base)  # an unlabelled version 2 would push stable=1 out
    (entry,) = _entry(str(tmp_path))
    assert (entry.policy, entry.versions, entry.labels) == ("specific", (1,), {"stable": 1})
    _version(base, 2)  # published: a polling server keeps serving exactly version 1
    assert entry.wants([1, 2]) == [1]
    serving_files.update_serving_files(base, 2)
    (after,) = _entry(str(tmp_path))
    assert (after.policy, after.versions, after.labels) == ("specific", (1, 2), {"stable": 1})
    assert not serving_files.pin_served_versions(base)  # already specific


def test_nothing_is_pinned_without_labels_or_config(tmp_path):
    base = str(tmp_path / "recs")
    _version(base, 1)
    assert not serving_files.pin_served_versions(base)
    serving_files.update_serving_files(base, 1)
    assert not serving_files.pin_served_versions(base)
    (entry,) = _entry(str(tmp_path))
    assert (entry.policy, entry.num_versions) == ("latest", 1)
