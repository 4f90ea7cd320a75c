"""Multi-worker training (peterrec.trainer.distribution): two ``peterrec pretrain`` processes on
127.0.0.1 under ``MultiWorkerMirroredStrategy`` train what one process trains with the same global
batch, only the chief writes the run's files, and a run resumed by two workers (each restoring the
chief's checkpoint) ends where one uninterrupted worker ends.

Tolerance: 1e-4 relative on the final weights and the loss curve. Exact equality is not expected:
each worker's gradient is computed on half of the batch and the two are summed by an all-reduce,
then halved, which rounds differently from one worker's gradient over the whole batch.

The data has every history of one length, shorter than the context: each batch then has the same
number of positions on both workers, the case where the average of the workers' mean losses is the
one worker's mean loss (see the distribution module's docstring for the other case).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.trainer import artifacts, distribution, tiny_examples
from peterrec.trainer.config import BackboneConfig
from peterrec.trainer.pretrain import PretrainConfig, pretrain

EPOCHS, BATCH, MAX_LEN, DIM = 2, 8, 12, 8
TOLERANCE = 1e-4
FLAGS = ["--batch-size", str(BATCH), "--max-len", str(MAX_LEN), "--dim", str(DIM),
         "--dilations", "1,2", "--patience", "0", "--evaluation", "users", "--deterministic", "--quiet"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker_env(workers, index):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
    return env


def _run_two_workers(dataset, output, export, epochs):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "peterrec.cli", "pretrain", "--examples", dataset.pretrain_examples,
               "--vocabulary", dataset.item_vocabulary_dir, "--output", output, "--export", export, "--epochs", str(epochs), *FLAGS]
    processes = [subprocess.Popen(command, env=_worker_env(workers, i), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=900)  # generous: a loaded 2-core machine
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, err[-3000:]
        lines = out.splitlines()
        start = max(i for i, line in enumerate(lines) if line.startswith("{"))  # the metrics JSON ends stdout
        results.append(json.loads("\n".join(lines[start:])))
    return results


def _history_losses(output):
    with open(os.path.join(output, "logs", "history.jsonl")) as handle:
        return [json.loads(line)["loss"] for line in handle if line.strip()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 32 users of 8 items each: one window per user and epoch, all with 7 targets.
    return tiny_examples.write_tiny_dataset(str(tmp_path_factory.mktemp("tiny")), num_users=32, num_items=20,
                                            min_len=8, max_len=8)


def test_tf_config_decides_the_worker_count():
    assert distribution.num_workers("") == 1
    two = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})
    assert distribution.num_workers(two) == 2
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}})
    assert distribution.num_workers(chief) == 2
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribution.num_workers("{not json")


def test_two_workers_train_and_resume_what_one_worker_trains(dataset, tmp_path):
    output, export = str(tmp_path / "two"), str(tmp_path / "two_export")
    _run_two_workers(dataset, output, export, epochs=EPOCHS - 1)
    chief, other = _run_two_workers(dataset, output, export, epochs=EPOCHS)  # resumes after epoch 1

    config = PretrainConfig(backbone=BackboneConfig(vocab_size=0, embedding_dim=DIM, dilations=(1, 2)),
                            batch_size=BATCH, epochs=EPOCHS, max_len=MAX_LEN, early_stopping_patience=0,
                            evaluation="users", verbose=0)
    # Not deterministic=True here: op determinism is process-wide and cannot be turned off again,
    # so it would break later tests in this pytest process that draw non-deterministic seeds. The
    # CPU kernels of this tiny model give the same values either way, within the 1e-4 compared.
    single = pretrain(dataset.pretrain_examples, dataset.item_vocabulary_dir, str(tmp_path / "one"), config)

    # Only the chief wrote where it was told; the other worker's folder is gone.
    assert chief["export_dir"] == export and other["export_dir"] != export
    assert not os.path.exists(other["export_dir"])
    assert sorted(os.listdir(tmp_path)) == ["one", "two", "two_export"]
    with open(os.path.join(output, "metrics.json")) as handle:
        assert json.load(handle)["epochs_completed"] == EPOCHS

    np.testing.assert_allclose(_history_losses(output), _history_losses(str(tmp_path / "one")), rtol=TOLERANCE)
    two_weights = artifacts.load_backbone(export)[0].get_weights()
    one_weights = artifacts.load_backbone(single["export_dir"])[0].get_weights()
    assert len(two_weights) == len(one_weights)
    for two, one in zip(two_weights, one_weights):
        np.testing.assert_allclose(two, one, rtol=TOLERANCE, atol=TOLERANCE * float(np.abs(one).max()))
    assert chief["loss"] == pytest.approx(single["loss"], rel=TOLERANCE)
