"""Kill tests: real ``peterrec pretrain`` and ``peterrec finetune`` processes get SIGKILL in the
middle of an epoch while writing a checkpoint, and are resumed.

Each chain: run A is killed while writing a mid-epoch step checkpoint of epoch 2 (its files staged
for pretraining, in place but not yet named by the index for fine-tuning), so one kill is both
mid-epoch and mid-write; run B resumes and finishes. Then: the index still names the previous
complete checkpoint (itself mid-epoch), at most ``EVERY`` steps were lost (the step the killed run
had reached, read from the checkpoint it was writing, minus the step the index's checkpoint
records), what the killed write left is gone, and the final weights and optimizer state equal those
of an uninterrupted run with the same settings, bit for bit (``--deterministic``). The processes
stop at the chosen points through ``trainer/fault_points.py``'s test hook, so the moment of each
kill is deterministic.

Importing TensorFlow costs a process about 15 s of CPU, several times what these tiny runs train,
so every run is forked from one "zygote" process that imported TensorFlow, Keras and the trainer
modules but ran no op (TensorFlow's runtime and thread pools start with the first op, in each
child; forking after that would not be safe). Each fork runs ``peterrec.cli.main`` with the command
line in a process of its own, which is what gets SIGKILL; the zygote's log lists each run's CPU.
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
KILLED_WRITE = "ckpt-2-step-8"  # epoch 2, step 8: the previous complete checkpoint is ckpt-2-step-4
WAIT_SECONDS = 400

# Reads one JSON request a line on stdin, answers one JSON line on stdout. {"argv", "log", "env"}:
# forks a child that runs the CLI with its output in "log" and "env" as its environment -> its pid;
# {"poll": pid}: its exit status as subprocess reports one (-9 for SIGKILL), or null while it runs.
PRELOAD = ["peterrec.trainer." + name for name in (
    "cli", "pretrain", "finetune", "loop", "task_model", "artifacts", "backbone", "data")] + [
    "peterrec.components.records", "peterrec.serving.export_cli"]
ZYGOTE = f"PRELOAD = {PRELOAD!r}\n" + """
import importlib, json, os, sys, traceback
import tensorflow, tf_keras, peterrec.cli  # the CLI imports TensorFlow only when a command runs
for module in PRELOAD:
    importlib.import_module(module)
for line in iter(sys.stdin.readline, ""):
    request = json.loads(line)
    if "poll" in request:
        pid, status, usage = os.wait4(request["poll"], os.WNOHANG)
        if pid:
            print(f"run {pid}: {usage.ru_utime + usage.ru_stime:.1f} s of CPU", file=sys.stderr, flush=True)
        print(json.dumps(os.waitstatus_to_exitcode(status) if pid else None), flush=True)
        continue
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            status = peterrec.cli.main(request["argv"])
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status or 0)
    print(f"run {pid}: {' '.join(request['argv'][:1] + request['argv'][-2:])}", file=sys.stderr, flush=True)
    print(json.dumps(pid), flush=True)
"""


class _Zygote:
    """The process the runs are forked from (see the module docstring), and their handles."""

    def __init__(self, log_path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.running = set()

    def _ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            with open(self.log_path) as handle:
                pytest.fail(f"the zygote ended (status {self.process.wait()}):\n{handle.read()[-3000:]}")
        return json.loads(answer)

    def start(self, args, log_path, pause=None, marker=None):
        """Forks a run of ``peterrec <args>``, its output in ``log_path``; returns its pid."""
        env = dict(os.environ)
        env.pop(fault_points.PAUSE_ENV, None)
        if pause:
            env[fault_points.PAUSE_ENV] = pause
            env[fault_points.MARKER_ENV] = marker
        pid = self._ask({"argv": list(args), "log": str(log_path), "env": env})
        self.running.add(pid)
        return pid

    def poll(self, pid):
        """-> the run's exit status (negative: the signal that ended it), or None while it runs."""
        status = self._ask({"poll": pid})
        if status is not None:
            self.running.discard(pid)
        return status

    def wait(self, pid, seconds=WAIT_SECONDS):
        """Waits for the run to end; kills it if it runs past ``seconds``. -> its exit status."""
        deadline = time.monotonic() + seconds
        while (status := self.poll(pid)) is None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"run {pid} did not end within {seconds} s")
            time.sleep(0.2)
        return status

    def close(self):
        """Kills the runs still going, then ends the zygote."""
        for pid in list(self.running):
            os.kill(pid, signal.SIGKILL)
            self.wait(pid, 60)
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self._log.close()


def _finish(zygote, pid, log_path):
    """Waits for a run to end by itself; returns its final metrics (the JSON it prints)."""
    status = zygote.wait(pid)
    with open(log_path) as handle:
        output = handle.read()
    assert status == 0, output[-3000:]
    return json.loads(output[output.index("{\n"):])


def _kill_when_paused(zygote, args, log_path, pause, marker):
    """Runs a command until it stops at ``pause``, kills it with SIGKILL; returns the marker."""
    pid = zygote.start(args, log_path, pause, marker)
    deadline = time.monotonic() + WAIT_SECONDS
    while not os.path.exists(marker):
        status = zygote.poll(pid)
        if status is not None:
            with open(log_path) as handle:
                pytest.fail(f"the run ended (status {status}) before pausing at {pause}:\n{handle.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"no pause at {pause} within {WAIT_SECONDS} s")
        time.sleep(0.2)
    with open(marker) as handle:
        paused = json.load(handle)
    assert paused["pid"] == pid
    os.kill(pid, signal.SIGKILL)
    assert zygote.wait(pid, 60) == -signal.SIGKILL
    os.remove(marker)
    return paused


def _steps(prefix):
    """-> (the step over the run, the step in the epoch) that the checkpoint at ``prefix`` records."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)  # fails unless the checkpoint is complete
    [iterations] = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/") and "iter" in k]
    return int(reader.get_tensor(iterations)), int(reader.get_tensor("step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE"))


def _recorded(checkpoints_dir):
    """-> (name of the checkpoint the index names, its step over the run, its step in the epoch)."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(checkpoints_dir)
    return (os.path.basename(latest), *_steps(latest))


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


def _kill_chain(zygote, args, run_dir, tmp_path, write_stage):
    """Run A killed at ``write_stage`` of ``KILLED_WRITE`` (mid-epoch and mid-write), run B to the
    end; checks what the kill leaves and returns B's metrics."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    marker = str(tmp_path / "paused.json")
    paused = _kill_when_paused(zygote, args, tmp_path / "a.log", f"{write_stage}:{KILLED_WRITE}", marker)
    written = paused["path"]
    assert os.path.basename(written) == KILLED_WRITE, written
    name, step, step_in_epoch = _recorded(checkpoints)
    assert name == "ckpt-2-step-4" and step_in_epoch == 4, "the index names the previous complete one, mid-epoch"
    if write_stage == "checkpoint-staged":
        partial = os.path.join(checkpoints, checkpointing.STAGING_PREFIX + KILLED_WRITE, KILLED_WRITE)
        assert not os.path.exists(written + ".index"), "killed with the data staged, nothing in place"
    else:
        partial = written
    assert os.path.exists(partial + ".index"), f"killed with the data at {partial}"
    killed_step, killed_step_in_epoch = _steps(partial)  # how far the killed run had trained
    assert killed_step_in_epoch == 8, "killed mid-epoch"
    assert 0 < killed_step - step <= EVERY, (killed_step, step)  # at most EVERY steps lost

    pid = zygote.start(args, tmp_path / "b.log")
    metrics = _finish(zygote, pid, tmp_path / "b.log")
    assert metrics["epochs_completed"] == 2
    _assert_no_leftovers(checkpoints)
    return metrics


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The zygote, tiny data and the uninterrupted pretraining run (started now, awaited by
    ``finished()``)."""
    root = tmp_path_factory.mktemp("kill")
    zygote = _Zygote(root / "zygote.log")
    try:
        dataset = tiny_examples.write_tiny_dataset(str(root / "data"), num_users=60, num_items=30)
        args = ["pretrain", "--examples", dataset.pretrain_examples, "--vocabulary", dataset.item_vocabulary_dir,
                "--dim", "16", "--dilations", "1,2", *LOOP]
        reference_dir = str(root / "reference")
        pid = zygote.start([*args, "--output", reference_dir], root / "reference.log")
        result = {}

        def finished():
            if not result:
                result.update(_finish(zygote, pid, root / "reference.log"))
            return result

        yield zygote, dataset, args, reference_dir, finished
    finally:
        zygote.close()


def test_pretraining_killed_mid_epoch_and_mid_write_resumes_to_the_same_weights(setup, tmp_path):
    zygote, dataset, args, reference_dir, reference = setup
    run_dir = str(tmp_path / "run")
    # 69 windows in batches of 4: 18 steps an epoch, step checkpoints at steps 4, 8, 12, 16 of each.
    metrics = _kill_chain(zygote, [*args, "--output", run_dir], run_dir, tmp_path, "checkpoint-staged")
    assert metrics["backbone_fingerprint"] == reference()["backbone_fingerprint"]  # a hash of every weight
    _assert_same_final_state(run_dir, reference_dir)


def test_finetuning_killed_mid_epoch_and_mid_write_resumes_to_the_same_weights(setup, tmp_path):
    zygote, dataset, _, _, reference = setup
    args = ["finetune", "--backbone", reference()["export_dir"], "--examples", dataset.classification_examples,
            "--task-name", "gender", "--kind", "classification", "--task-vocabulary", dataset.label_vocabulary_dir,
            "--bottleneck", "4", *LOOP]
    reference_dir = str(tmp_path / "reference")
    pid = zygote.start([*args, "--output", reference_dir], tmp_path / "reference.log")
    run_dir = str(tmp_path / "run")
    # 42 training users in batches of 4: 11 steps an epoch, step checkpoints at steps 4 and 8 of each.
    metrics = _kill_chain(zygote, [*args, "--output", run_dir], run_dir, tmp_path, "checkpoint-placed")
    straight = _finish(zygote, pid, tmp_path / "reference.log")
    assert metrics["loss"] == straight["loss"] and metrics["accuracy"] == straight["accuracy"]
    _assert_same_final_state(run_dir, reference_dir)
