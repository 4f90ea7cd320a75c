"""The model manager: loading, version policies, labels, polling, failed loads, reloads, warm-up."""

import os
import shutil

import numpy as np
import pytest

from peterrec.serving import errors, model_config, signatures
from peterrec.serving import model_manager as mm
from peterrec.serving import servable, testing, warmup

ROWS = [["i1", "i2", ""], ["i3", "nope", "i4"]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Versions 1 and 2 of a toy model, kept pristine; tests copy what they need."""
    root = tmp_path_factory.mktemp("exported")
    models = {v: testing.export_toy_model(str(root / "m"), v) for v in (1, 2)}
    return root / "m", models


def _base_with(tmp_path, exported, versions, name="m"):
    source, _ = exported
    base = tmp_path / name
    base.mkdir()
    for version in versions:
        shutil.copytree(source / str(version), base / str(version))
    return str(base)


def _manager(entries, **kwargs):
    manager = mm.ModelManager(model_config.build_model_server_config(entries), poll_seconds=0, **kwargs)
    manager.start()
    return manager


def test_loads_a_version_whose_signatures_match_the_reference(tmp_path, exported):
    _, models = exported
    manager = _manager([model_config.ModelEntry("m", _base_with(tmp_path, exported, [1]))])
    servable = manager.resolve("m")
    assert servable.version == 1
    kinds = {name: runner.kind for name, runner in servable.runners.items()}
    assert kinds == {"genre": "classification", "shop": "cold_start", "embed": "embed", "next_items": "next_items",
                     "genre_classify": "classify"}
    assert servable.tasks["tasks"]["genre"]["labels"] == ["action", "comedy", "drama"]
    items = np.array([[s.encode() for s in row] for row in ROWS], dtype=object)
    for name, runner in servable.runners.items():
        assert not signatures.contract_problems(
            name,
            {k: (v.dtype_name, v.shape) for k, v in runner.inputs.items()},
            {k: (v.dtype_name, v.shape) for k, v in runner.outputs.items()},
        )
        if runner.kind == signatures.KIND_CLASSIFY:
            continue  # takes tf.Examples: tests/test_tf_serving_conformance.py checks it
        outputs = runner({"items": items})
        for key, expected in models[1].reference(name, ROWS).items():
            if expected.dtype == object:
                assert outputs[key].tolist() == expected.tolist()
            else:
                np.testing.assert_allclose(outputs[key], expected, atol=1e-5)


def test_warmup_requests_are_replayed_on_load(tmp_path, exported):
    base = _base_with(tmp_path, exported, [1])
    replayed = warmup.read_warmup_requests(os.path.join(base, "1"))
    assert sorted(r.model_spec.signature_name for r in replayed) == ["embed", "genre", "genre_classify",
                                                                     "next_items", "shop"]
    servable = _manager([model_config.ModelEntry("m", base)]).resolve("m")
    assert all(runner.calls == 1 for runner in servable.runners.values())
    cold = _manager([model_config.ModelEntry("m", base)], warmup=False).resolve("m")
    assert all(runner.calls == 0 for runner in cold.runners.values())


def test_version_policies_and_labels(tmp_path, exported):
    base = _base_with(tmp_path, exported, [1, 2])
    manager = _manager([
        model_config.ModelEntry("latest", base),
        model_config.ModelEntry("all", base, policy="all", labels={"stable": 1, "canary": 2}),
        model_config.ModelEntry("pinned", base, policy="specific", versions=(1,)),
    ])
    assert manager.available_versions("latest") == [2]
    assert manager.available_versions("all") == [1, 2]
    assert manager.available_versions("pinned") == [1]
    assert manager.resolve("all").version == 2
    assert manager.resolve("all", version=1).version == 1
    assert manager.resolve("all", label="stable").version == 1
    assert manager.resolve("all", label="canary").version == 2
    assert [s.version for s in manager.status("all")] == [2, 1]
    assert manager.status("all", label="stable")[0].state == mm.AVAILABLE


@pytest.mark.parametrize(
    "name, version, label, code, text",
    [
        ("nope", None, None, errors.NOT_FOUND, "model 'nope' is not served"),
        ("m", 7, None, errors.NOT_FOUND, "no loaded version 7"),
        ("m", None, "canary", errors.NOT_FOUND, "no version label 'canary'"),
        ("m", 1, "stable", errors.INVALID_ARGUMENT, "not both"),
    ],
)
def test_unknown_model_version_or_label(exported, name, version, label, code, text):
    source, _ = exported
    manager = _manager([model_config.ModelEntry("m", str(source), labels={"stable": 1})], warmup=False)
    with pytest.raises(errors.ServingError) as raised:
        manager.resolve(name, version, label)
    assert raised.value.code == code and text in raised.value.message


def test_a_new_version_loads_before_the_old_one_unloads(tmp_path, exported):
    source, _ = exported
    base = _base_with(tmp_path, exported, [1])
    manager = _manager([model_config.ModelEntry("m", base)])
    held = manager.resolve("m")
    unloaded = []
    manager.add_unload_listener(lambda name, version: unloaded.append((name, version, manager.available_versions(name))))
    shutil.copytree(source / "2", os.path.join(base, "2"))
    manager.poll_once()
    assert manager.resolve("m").version == 2
    assert unloaded == [("m", 1, [2])]  # version 2 was serving when 1 went
    assert {s.version: s.state for s in manager.status("m")} == {2: mm.AVAILABLE, 1: mm.END}
    # A request that held version 1 still runs on it.
    items = np.array([[b"i1"]], dtype=object)
    assert held.signature("embed")({"items": items})["embedding"].shape == (1, 8)


def test_a_broken_version_keeps_the_old_one_serving_and_is_retried(tmp_path, exported):
    source, _ = exported
    base = _base_with(tmp_path, exported, [1])
    manager = _manager([model_config.ModelEntry("m", base)], max_load_retries=2)
    broken = os.path.join(base, "2")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as handle:
        handle.write(b"not a saved model")
    manager.poll_once()
    assert manager.resolve("m").version == 1
    status = {s.version: s for s in manager.status("m")}
    assert status[2].state == mm.END and status[2].error_code != "OK" and "failed to load" in status[2].error_message
    manager.poll_once()
    manager.poll_once()  # no more attempts after max_load_retries
    assert manager._models["m"].records[2].attempts == 2
    # Rewriting the version makes it load.
    shutil.rmtree(broken)
    shutil.copytree(source / "2", broken)
    manager.poll_once()
    assert manager.resolve("m").version == 2


def test_list_versions_skips_incomplete_and_non_numeric_directories(tmp_path):
    for name in ("1", "2", "tmp", ".3-abc", "\u00b2"):
        os.makedirs(tmp_path / name)
    for name in ("1", "tmp", "\u00b2"):  # "\u00b2".isdigit(), yet not a version number
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert list(servable.list_versions(str(tmp_path))) == [1]


def test_reload_config_adds_removes_and_checks_labels(tmp_path, exported):
    base_a = _base_with(tmp_path, exported, [1], "a")
    base_b = _base_with(tmp_path, exported, [1, 2], "b")
    manager = _manager([model_config.ModelEntry("a", base_a)])
    manager.reload_config(model_config.build_model_server_config([
        model_config.ModelEntry("b", base_b, policy="all", labels={"stable": 1}),
    ]))
    assert manager.model_names() == ["b"]
    assert manager.available_versions("b") == [1, 2]
    with pytest.raises(errors.ServingError, match="not served"):
        manager.resolve("a")
    with pytest.raises(errors.ServingError) as raised:
        manager.reload_config(model_config.build_model_server_config([
            model_config.ModelEntry("b", base_b, labels={"stable": 1}),  # latest 1: version 1 goes
        ]))
    assert raised.value.code == errors.FAILED_PRECONDITION and "label 'stable'" in raised.value.message
    assert manager.available_versions("b") == [2]
    bad = model_config.build_model_server_config([model_config.ModelEntry("b", base_b)])
    bad.model_config_list.config.add(name="b", base_path=base_a)
    with pytest.raises(errors.ServingError) as raised:
        manager.reload_config(bad)
    assert raised.value.code == errors.INVALID_ARGUMENT
    assert manager.available_versions("b") == [2]  # the last good config stays


def test_a_reload_with_a_label_of_an_unloaded_version_keeps_the_old_labels(tmp_path, exported):
    base = _base_with(tmp_path, exported, [1, 2])
    manager = _manager([model_config.ModelEntry("m", base, policy="all", labels={"stable": 1})])
    manager.reload_config(model_config.build_model_server_config([
        model_config.ModelEntry("m", base, policy="all", labels={"stable": 1, "canary": 2}),
    ]))
    assert manager.resolve("m", label="canary").version == 2
    # One good label and one of a version that is not there: none of the reload's labels apply.
    with pytest.raises(errors.ServingError) as raised:
        manager.reload_config(model_config.build_model_server_config([
            model_config.ModelEntry("m", base, policy="all", labels={"stable": 2, "canary": 1, "beta": 7}),
        ]))
    assert raised.value.code == errors.FAILED_PRECONDITION and "label 'beta'" in raised.value.message
    assert manager.resolve("m", label="stable").version == 1
    assert manager.resolve("m", label="canary").version == 2
    with pytest.raises(errors.ServingError, match="no version label 'beta'"):
        manager.resolve("m", label="beta")
    assert manager.available_versions("m") == [1, 2]


def test_polling_thread_picks_up_new_versions(tmp_path, exported):
    import threading

    source, _ = exported
    base = _base_with(tmp_path, exported, [1])
    manager = mm.ModelManager(model_config.build_model_server_config([model_config.ModelEntry("m", base)]),
                              poll_seconds=0.05)
    # The poller unloads version 1 only after version 2 is available (latest 1): wait for that.
    replaced = threading.Event()
    manager.add_unload_listener(lambda name, version: replaced.set() if (name, version) == ("m", 1) else None)
    manager.start()
    try:
        # Published as the module says: written aside, then renamed (a poll never sees half of it).
        shutil.copytree(source / "2", os.path.join(base, ".2-staging"))
        os.rename(os.path.join(base, ".2-staging"), os.path.join(base, "2"))
        assert replaced.wait(30), "the poller did not replace version 1 within 30 s"
        assert manager.available_versions("m") == [2]
    finally:
        manager.stop()
