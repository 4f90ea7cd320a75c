"""``kill -9`` during ``peterrec export`` never leaves a version the server would load half-written.

Real ``peterrec export`` processes are SIGKILLed twice: once while the SavedModel is being written
into its staging folder, and once in the middle of the ``models.config`` write (the
``PETERREC_CRASH_POINT`` hook of ``peterrec.serving.crash_safe``). Then the model base must hold
only complete versions, ``models.config`` must parse, a server must load the model and answer,
and the next export must succeed and clean up what the killed ones left. The staging locks and
the stale-file cleanup are also tested on their own, without TensorFlow.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

import peterrec  # noqa: F401
from peterrec.serving import crash_safe, model_config, random_artifacts

ROWS = [["1", "2", "3"], ["4"]]


def _age(path: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_only_stale_staging_folders_are_removed(tmp_path):
    base = str(tmp_path)
    live = crash_safe.ExportStaging(base)
    code = ("import os, signal, sys; from peterrec.serving import crash_safe; "
            "staging = crash_safe.ExportStaging(sys.argv[1]); os.makedirs(staging.model_dir); "
            "print(staging.folder, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, base], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dead = killed.stdout.strip()
    young_unlocked = os.path.join(base, ".export-young")
    old_unlocked = os.path.join(base, ".export-old")
    os.makedirs(young_unlocked)
    os.makedirs(old_unlocked)
    _age(old_unlocked, crash_safe.STALE_UNLOCKED_SECONDS + 10)
    os.makedirs(os.path.join(base, "1"))
    try:
        removed = crash_safe.remove_stale_staging(base)
        assert sorted(removed) == sorted([dead, old_unlocked])
        assert sorted(os.listdir(base)) == sorted(["1", os.path.basename(live.folder), ".export-young"])
    finally:
        live.close()
    assert not os.path.exists(live.folder)


def test_a_write_killed_midway_leaves_the_old_file(tmp_path):
    path = str(tmp_path / "models.config")
    crash_safe.write_text_atomic(path, "old text\n")
    code = ("import sys; from peterrec.serving import crash_safe; "
            "crash_safe.write_text_atomic(sys.argv[1], 'new text ' * 1000)")
    env = dict(os.environ, **{crash_safe.CRASH_POINT_ENV: "write:models.config"})
    done = subprocess.run([sys.executable, "-c", code, path], env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL
    with open(path) as handle:
        assert handle.read() == "old text\n"
    (leftover,) = glob.glob(str(tmp_path / ".models.config.tmp-*"))
    assert 0 < os.path.getsize(leftover) < len("new text " * 1000)
    crash_safe.write_text_atomic(path, "newer\n")  # a fresh leftover may be a live writer's: kept
    assert os.path.exists(leftover)
    _age(leftover, crash_safe.STALE_TEMP_SECONDS + 10)
    crash_safe.write_text_atomic(path, "newest\n")
    assert not os.path.exists(leftover)
    assert os.listdir(tmp_path) == ["models.config"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kill_export"))
    specs = [random_artifacts.TaskSpec("genre", "classification", "fine-cls", "mean", num_classes=3)]
    return random_artifacts.write_random_artifacts(root, specs, num_items=20, embedding_dim=4, dilations=(1, 2)), root


def _export_command(made, base):
    artifacts, _ = made
    return [sys.executable, "-m", "peterrec.cli", "export", "--backbone", artifacts.backbone_dir,
            "--task", artifacts.task_dirs["genre"], "--model-base", base, "--top-k", "3", "--quiet"]


def _kill_when_staging_is_written(command, base):
    """Starts an export and SIGKILLs it as soon as its SavedModel is being written."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not glob.glob(os.path.join(base, ".export-*", crash_safe.MODEL_SUBDIR, "*")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _assert_only_complete_versions(base, checked):
    """Every folder but staging ones is a complete version (loaded once; ``checked`` remembers them)."""
    import tensorflow as tf

    versions = [name for name in os.listdir(base) if not name.startswith(crash_safe.STAGING_PREFIX)]
    assert versions and all(name.isdigit() for name in versions), versions
    for name in set(versions) - checked:
        loaded = tf.saved_model.load(os.path.join(base, name))
        assert {"genre", "embed", "next_items"} <= set(loaded.signatures), name
        checked.add(name)
    return sorted(int(name) for name in versions)


def _run_until_crash_point(command, point):
    env = dict(os.environ, **{crash_safe.CRASH_POINT_ENV: point})
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=240)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def test_killed_exports_leave_a_servable_model_base(made):
    from peterrec.serving import assembly
    from peterrec.serving.client import Client
    from peterrec.serving.server import Server

    artifacts, root = made
    base = os.path.join(root, "models", "recs")
    config_path = os.path.join(root, "models", model_config.MODELS_CONFIG_FILE)
    assembly.export_serving_model(artifacts.backbone_dir, [artifacts.task_dirs["genre"]], base, top_k=3,
                                  label="stable")
    with open(config_path) as handle:
        config_before = handle.read()
    command = _export_command(made, base)
    checked = set()

    _kill_when_staging_is_written(command, base)
    (first_staging,) = glob.glob(os.path.join(base, ".export-*"))
    assert _assert_only_complete_versions(base, checked) == [1]

    # Killed while rewriting models.config (pinning stable's version 1 before publishing 2): this
    # export removed the killed one's staging folder first and left its own; the config is the old one.
    _run_until_crash_point(command, f"write:{model_config.MODELS_CONFIG_FILE}")
    (second_staging,) = glob.glob(os.path.join(base, ".export-*"))
    assert second_staging != first_staging
    assert _assert_only_complete_versions(base, checked) == [1]
    with open(config_path) as handle:
        assert handle.read() == config_before
    (leftover,) = glob.glob(os.path.join(root, "models", ".models.config.tmp-*"))

    # Killed just after publishing version 2, before models.config names it: the pinned config
    # keeps version 1 (and its label) served.
    _run_until_crash_point(command, "export:published")
    assert not glob.glob(os.path.join(base, ".export-*"))
    assert _assert_only_complete_versions(base, checked) == [1, 2]
    (entry,) = model_config.entries_of(model_config.read_model_config(config_path))
    assert (entry.policy, entry.versions, entry.labels) == ("specific", (1,), {"stable": 1})
    with Server(config_path, grpc_port=0, rest_port=None, poll_seconds=0) as server:
        assert server.manager.available_versions("recs") == [1]
        with Client(server.grpc_target, model_name="recs", version_label="stable") as client:
            assert len(client.classify("genre", ROWS)) == 2
            assert len(client.recommend("next_items", ROWS, k=2)) == 2

    _age(leftover, crash_safe.STALE_TEMP_SECONDS + 10)
    result = assembly.export_serving_model(artifacts.backbone_dir, [artifacts.task_dirs["genre"]], base, top_k=3)
    assert result.version == 3
    assert not os.path.exists(leftover)
    assert sorted(os.listdir(base)) == ["1", "2", "3"]
    (entry,) = model_config.entries_of(model_config.read_model_config(config_path))
    assert entry.labels == {"stable": 1} and entry.wants([1, 2, 3]) == [3, 1]
