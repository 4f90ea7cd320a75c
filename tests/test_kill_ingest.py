"""kill -9 during ingestion, then a rerun: the outputs equal an uninterrupted run's, byte for byte.

A real ``peterrec ingest`` process is killed in the middle of moving its finished files
into place (``PETERREC_TEST_KILL_AT=commit``; in ``make test``) or in the middle of its
Beam pipeline, as soon as its staging folder appears (slow: one more process start).
Neither kill leaves a summary (the mark of a complete run); a rerun into the same folder
cleans up and writes every file exactly as a run that was never interrupted.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from peterrec import cli
from peterrec.components import output_files, synthetic
from peterrec.components.ingest import IngestConfig, run_ingestion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(folder):
    """Every file under ``folder``: relative path -> bytes (the summary without its wall time)."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                data = handle.read()
            if name == "summary.json":
                summary = json.loads(data)
                summary.pop("elapsed_seconds")
                data = json.dumps(summary, sort_keys=True).encode()
            found[os.path.relpath(path, folder)] = data
    return found


def _ingest_command(source, output):
    return [sys.executable, "-m", "peterrec.cli", "ingest", "--format", "csv", "--source", source,
            "--domain", "source", "--output", output, "--num-shards", "2"]


def _run(command, env, kill_when=None):
    """Runs the CLI; with ``kill_when`` (a predicate), SIGKILLs it as soon as that holds. Returns its status."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_when is not None:
        while process.poll() is None and not kill_when():
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr.decode("utf-8", "replace")


def _setup(tmp_path):
    """Small generated data, an uninterrupted run's files, and the environment of a CLI subprocess."""
    data = tmp_path / "data"
    synthetic.generate(str(data), synthetic.SyntheticConfig(users=150, seed=5, source_items=40, target_items=20,
                                                            min_source_len=5, max_source_len=12))
    source = str(data / "interactions.csv")
    reference = tmp_path / "reference"
    config = IngestConfig("csv", source, domain="source", num_shards=2)
    run_ingestion(config, str(reference / "examples"), str(reference / "vocabulary"), str(reference / "rejects"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop(output_files.KILL_AT_ENV, None)
    return source, _files(reference), env


def _rerun_matches(source, out, expected):
    """Reruns the CLI (in this process) into the killed run's folder and compares every file."""
    assert cli.main(_ingest_command(source, str(out))[3:]) == 0
    assert _files(out) == expected


def test_killed_while_moving_outputs_into_place(tmp_path):
    source, expected, env = _setup(tmp_path)
    out = tmp_path / "out"
    status, _ = _run(_ingest_command(source, str(out)), dict(env, **{output_files.KILL_AT_ENV: "commit"}))
    assert status == -signal.SIGKILL
    assert os.path.exists(output_files.staging_dir(str(out / "examples")))  # killed half way through the move
    assert not os.path.exists(out / "rejects" / "summary.json")  # so the run does not look finished
    _rerun_matches(source, out, expected)


@pytest.mark.slow
def test_killed_in_the_middle_of_the_pipeline(tmp_path):
    source, expected, env = _setup(tmp_path)
    out = tmp_path / "out"
    staging = output_files.staging_dir(str(out / "rejects"))  # appears as the pipeline starts writing
    status, _ = _run(_ingest_command(source, str(out)), env, kill_when=lambda: os.path.exists(staging))
    assert status == -signal.SIGKILL, "the run ended before it could be killed"
    assert not os.path.exists(out / "rejects" / "summary.json")
    assert not (out / "examples").exists() or not any(n.startswith("Split-") for n in os.listdir(out / "examples"))
    _rerun_matches(source, out, expected)
