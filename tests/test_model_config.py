"""models.config, batching parameters and monitoring config: parse, write, validate."""

import os

import pytest

from peterrec.serving import model_config as mc

TF_SERVING_STYLE = """
model_config_list {
  config {
    name: 'peterrec'
    base_path: '/models/peterrec'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 2 }
  }
  config {
    name: 'other'
    base_path: '/models/other'
    model_version_policy { all {} }
  }
  config {
    name: 'plain'
    base_path: '/models/plain'
  }
}
"""


def test_parses_a_tf_serving_config_with_every_policy_and_labels():
    entries = mc.entries_of(mc.parse_model_config(TF_SERVING_STYLE))
    by_name = {entry.name: entry for entry in entries}
    assert by_name["peterrec"].policy == mc.POLICY_SPECIFIC
    assert by_name["peterrec"].versions == (1, 2)
    assert by_name["peterrec"].labels == {"stable": 1, "canary": 2}
    assert by_name["other"].policy == mc.POLICY_ALL
    # No policy: TF Serving serves the latest version.
    assert (by_name["plain"].policy, by_name["plain"].num_versions) == (mc.POLICY_LATEST, 1)


def test_entries_round_trip_through_text(tmp_path):
    entries = [
        mc.ModelEntry("peterrec", "/m/peterrec", num_versions=2, labels={"stable": 3, "canary": 4}),
        mc.ModelEntry("b", "/m/b", policy=mc.POLICY_SPECIFIC, versions=(7, 5)),
        mc.ModelEntry("c", "/m/c", policy=mc.POLICY_ALL),
    ]
    path = mc.write_model_config(str(tmp_path / "models.config"), entries)
    assert os.listdir(tmp_path) == ["models.config"]  # written aside, then renamed
    text = open(path).read()
    assert 'key: "canary"' in text and "num_versions: 2" in text
    back = mc.entries_of(mc.read_model_config(path))
    assert back[0] == entries[0]
    assert back[1].versions == (5, 7)
    assert back[2].policy == mc.POLICY_ALL


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'a' } }", "no base_path"),
        ("model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
         "more than once"),
        ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }", "not supported"),
        ("model_config_list { config { name: 'a' base_path: '/a' model_version_policy { specific {} } } }",
         "at least one version"),
        ("model_config_list { config { name: 'a' base_path: '/a' nonsense: 1 } }", "not a valid"),
        ("custom_model_config { }", "custom_model_config"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_message(text, message):
    with pytest.raises(mc.ModelConfigError, match=message):
        mc.parse_model_config(text)


def test_missing_config_file_says_which(tmp_path):
    with pytest.raises(mc.ModelConfigError, match="cannot read"):
        mc.read_model_config(str(tmp_path / "nope.config"))


def test_policies_choose_versions_from_disk():
    on_disk = [1, 3, 2, 10]
    assert mc.ModelEntry("a", "/a").wants(on_disk) == [10]
    assert mc.ModelEntry("a", "/a", num_versions=2).wants(on_disk) == [10, 3]
    assert mc.ModelEntry("a", "/a", policy=mc.POLICY_ALL).wants(on_disk) == [10, 3, 2, 1]
    assert mc.ModelEntry("a", "/a", policy=mc.POLICY_SPECIFIC, versions=(2, 4)).wants(on_disk) == [2]


def test_entry_validation():
    with pytest.raises(mc.ModelConfigError, match="num_versions"):
        mc.ModelEntry("a", "/a", num_versions=0).validate()
    with pytest.raises(mc.ModelConfigError, match="label"):
        mc.ModelEntry("a", "/a", labels={"bad label": 1}).validate()
    with pytest.raises(mc.ModelConfigError, match="name"):
        mc.ModelEntry("a/b", "/a").validate()


def test_batching_parameters_round_trip_and_read_tf_serving_files(tmp_path):
    parameters = mc.BatchingParameters(max_batch_size=16, batch_timeout_micros=500, num_batch_threads=3,
                                       allowed_batch_sizes=(4, 16))
    path = mc.write_batching_parameters(str(tmp_path / "batching.txt"), parameters)
    assert mc.read_batching_parameters(path) == parameters
    # The format people write for tensorflow_model_server.
    text = ("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n"
            "max_enqueued_batches { value: 3 }\nnum_batch_threads { value: 1 }\npad_variable_length_inputs: true\n")
    read = mc.BatchingParameters.from_text(text)
    assert (read.max_batch_size, read.batch_timeout_micros, read.max_enqueued_batches, read.num_batch_threads) == (
        8, 0, 3, 1)
    assert read.pad_variable_length_inputs


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size { value: 0 }", "max_batch_size"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4", "allowed_batch_sizes"),
        ("max_batch_size: 8", "not a valid"),
        ("unknown_field { value: 1 }", "not a valid"),
    ],
)
def test_bad_batching_parameters(text, message):
    with pytest.raises(mc.ModelConfigError, match=message):
        mc.BatchingParameters.from_text(text)


def test_monitoring_config(tmp_path):
    path = mc.write_monitoring_config(str(tmp_path / "monitoring.config"))
    assert "prometheus_config" in open(path).read()
    assert mc.read_monitoring_config(path) == mc.MonitoringConfig(True, mc.DEFAULT_METRICS_PATH)
    assert mc.MonitoringConfig.from_text("prometheus_config { enable: true }").path == mc.DEFAULT_METRICS_PATH
    with pytest.raises(mc.ModelConfigError, match="must start with"):
        mc.MonitoringConfig.from_text('prometheus_config { enable: true path: "metrics" }')


def test_write_serving_files_writes_all_three(tmp_path):
    paths = mc.write_serving_files(str(tmp_path), [mc.ModelEntry("peterrec", "/models/peterrec")])
    assert sorted(os.path.basename(p) for p in paths.values()) == sorted(
        [mc.MODELS_CONFIG_FILE, mc.BATCHING_PARAMETERS_FILE, mc.MONITORING_CONFIG_FILE])
    assert mc.entries_of(mc.read_model_config(paths["model_config"]))[0].base_path == "/models/peterrec"
    assert mc.read_batching_parameters(paths["batching_parameters"]) == mc.BatchingParameters()
    assert mc.read_monitoring_config(paths["monitoring_config"]).enable
