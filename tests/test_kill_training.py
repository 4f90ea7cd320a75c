"""Kill tests: real ``peterrec pretrain`` and ``peterrec finetune`` processes get SIGKILL in the
middle of an epoch and in the middle of a checkpoint write, and are resumed.

Each chain: run A stops after a chosen training step and is killed (mid-epoch); run B resumes and
is killed while writing its first checkpoint (its files staged or in place, the index not yet
updated); run C resumes and finishes. Then: at most ``EVERY`` steps were lost (read from the step
the checkpoint records), what the killed write left is gone, and the final weights and optimizer
state equal those of an uninterrupted run with the same settings, bit for bit (``--deterministic``).
The processes stop at the chosen points through ``trainer/fault_points.py``'s test hook, so the
moment of each kill is deterministic.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.trainer import checkpointing, fault_points, tiny_examples

EVERY = 4  # --checkpoint-every-steps
LOOP = ["--epochs", "2", "--batch-size", "4", "--max-len", "12", "--patience", "0",
        "--checkpoint-every-steps", str(EVERY), "--deterministic", "--quiet"]
WAIT_SECONDS = 400


def _command(args):
    return [sys.executable, "-m", "peterrec.cli", *args]


def _start(args, log_path, pause=None, marker=None):
    env = dict(os.environ)
    env.pop(fault_points.PAUSE_ENV, None)
    if pause:
        env[fault_points.PAUSE_ENV] = pause
        env[fault_points.MARKER_ENV] = marker
    log = open(log_path, "w")
    return subprocess.Popen(_command(args), stdout=log, stderr=subprocess.STDOUT, env=env), log


def _finish(process, log, log_path):
    """Waits for a process to end by itself; returns its final metrics (the JSON it prints)."""
    try:
        status = process.wait(timeout=WAIT_SECONDS)
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    with open(log_path) as handle:
        output = handle.read()
    assert status == 0, output[-3000:]
    return json.loads(output[output.index("{\n"):])


def _kill_when_paused(args, log_path, pause, marker):
    """Runs a command until it stops at ``pause``, kills it with SIGKILL; returns the marker."""
    process, log = _start(args, log_path, pause, marker)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not os.path.exists(marker):
            if process.poll() is not None:
                with open(log_path) as handle:
                    pytest.fail(f"the run ended (status {process.returncode}) before pausing at {pause}:\n"
                                f"{handle.read()[-3000:]}")
            assert time.monotonic() < deadline, f"no pause at {pause} within {WAIT_SECONDS} s"
            time.sleep(0.2)
        with open(marker) as handle:
            paused = json.load(handle)
        assert paused["pid"] == process.pid
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    os.remove(marker)
    return paused


def _recorded(checkpoints_dir):
    """-> (name of the checkpoint the index names, its step over the run, its step in the epoch)."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(checkpoints_dir)
    reader = tf.train.load_checkpoint(latest)  # fails unless the named checkpoint is complete
    [iterations] = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/") and "iter" in k]
    return (os.path.basename(latest), int(reader.get_tensor(iterations)),
            int(reader.get_tensor("step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE")))


def _assert_same_final_state(run_dir, reference_dir):
    import tensorflow as tf

    resumed = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints", "ckpt-2"))
    straight = tf.train.load_checkpoint(os.path.join(reference_dir, "checkpoints", "ckpt-2"))
    keys = sorted(k for k in straight.get_variable_to_shape_map() if not k.startswith("_CHECKPOINTABLE"))
    assert sorted(k for k in resumed.get_variable_to_shape_map() if not k.startswith("_CHECKPOINTABLE")) == keys
    assert any(k.startswith("optimizer/_variables") for k in keys)
    for key in keys:
        np.testing.assert_array_equal(resumed.get_tensor(key), straight.get_tensor(key), err_msg=key)


def _assert_no_leftovers(checkpoints_dir):
    manager = checkpointing.AtomicCheckpointManager(None, checkpoints_dir)
    named = set(manager.names())
    entries = os.listdir(checkpoints_dir)
    assert not [e for e in entries if e.startswith(checkpointing.STAGING_PREFIX) or "tmp" in e], entries
    files = {e.split(".index")[0].split(".data-")[0] for e in entries if e.startswith("ckpt-")}
    assert files == named, (files, named)


def _kill_chain(args, run_dir, tmp_path, kill_step, write_stage):
    """Run A killed after step ``kill_step``, run B killed mid-write at ``write_stage``, run C to
    the end; checks what each kill leaves and returns C's metrics."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    marker = str(tmp_path / "paused.json")
    paused = _kill_when_paused(args, tmp_path / "a.log", f"step:{kill_step}", marker)
    assert paused["step"] == kill_step
    name, step, step_in_epoch = _recorded(checkpoints)
    assert checkpointing.is_step_checkpoint(name) and step_in_epoch > 0, name  # a mid-epoch checkpoint
    assert 0 <= kill_step - step <= EVERY, (kill_step, step)  # at most EVERY steps lost

    paused = _kill_when_paused(args, tmp_path / "b.log", write_stage, marker)
    assert _recorded(checkpoints) == (name, step, step_in_epoch), "the index still names the last complete one"
    written = paused["path"]
    if write_stage == "checkpoint-staged":
        staging = os.path.join(checkpoints, checkpointing.STAGING_PREFIX + os.path.basename(written))
        assert any(f.endswith(".index") for f in os.listdir(staging)), "killed with the data staged"
    else:
        assert os.path.exists(written + ".index"), "killed with the files in place but not named"

    process, log = _start(args, tmp_path / "c.log")
    metrics = _finish(process, log, tmp_path / "c.log")
    assert metrics["epochs_completed"] == 2
    _assert_no_leftovers(checkpoints)
    return metrics


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data and the uninterrupted pretraining run (started now, awaited by ``finished()``)."""
    root = tmp_path_factory.mktemp("kill")
    dataset = tiny_examples.write_tiny_dataset(str(root / "data"), num_users=60, num_items=30)
    args = ["pretrain", "--examples", dataset.pretrain_examples, "--vocabulary", dataset.item_vocabulary_dir,
            "--dim", "16", "--dilations", "1,2", *LOOP]
    reference_dir = str(root / "reference")
    process, log = _start([*args, "--output", reference_dir], root / "reference.log")
    result = {}

    def finished():
        if not result:
            result.update(_finish(process, log, root / "reference.log"))
        return result

    yield dataset, args, reference_dir, finished
    if process.poll() is None:
        process.kill()
        process.wait()


def test_pretraining_killed_mid_epoch_and_mid_write_resumes_to_the_same_weights(setup, tmp_path):
    dataset, args, reference_dir, reference = setup
    run_dir = str(tmp_path / "run")
    # 69 windows in batches of 4: 18 steps an epoch; step 25 is step 7 of epoch 2.
    metrics = _kill_chain([*args, "--output", run_dir], run_dir, tmp_path, 25, "checkpoint-staged")
    assert metrics["backbone_fingerprint"] == reference()["backbone_fingerprint"]  # a hash of every weight
    _assert_same_final_state(run_dir, reference_dir)


def test_finetuning_killed_mid_epoch_and_mid_write_resumes_to_the_same_weights(setup, tmp_path):
    dataset, _, _, reference = setup
    args = ["finetune", "--backbone", reference()["export_dir"], "--examples", dataset.classification_examples,
            "--task-name", "gender", "--kind", "classification", "--task-vocabulary", dataset.label_vocabulary_dir,
            "--bottleneck", "4", *LOOP]
    reference_dir = str(tmp_path / "reference")
    process, log = _start([*args, "--output", reference_dir], tmp_path / "reference.log")
    run_dir = str(tmp_path / "run")
    # 42 training users in batches of 4: 11 steps an epoch; step 17 is step 6 of epoch 2.
    metrics = _kill_chain([*args, "--output", run_dir], run_dir, tmp_path, 17, "checkpoint-placed")
    straight = _finish(process, log, tmp_path / "reference.log")
    assert metrics["loss"] == straight["loss"] and metrics["accuracy"] == straight["accuracy"]
    _assert_same_final_state(run_dir, reference_dir)
