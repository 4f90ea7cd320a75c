"""Commands print our progress and summaries, not the libraries' start-up noise.

``peterrec._keras_env`` filters a known list of lines (TensorFlow's CUDA factory errors and
CPU notes, google.api_core's Python-version FutureWarning, Beam's worker notices). These
tests check the filters one by one, that they yield to the user's own settings, and run real
subcommands in fresh processes: stderr holds none of the noise, stdout holds the summary.
"""

import logging
import os
import subprocess
import sys

from peterrec import _keras_env

# What must never reach the user's terminal on a normal run (substrings of stderr).
KNOWN_NOISE = (
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "Could not find cuda drivers",
    "cpu_feature_guard",
    "TF-TRT Warning",
    "FutureWarning",
    "non-supported Python version",
    "python-snappy",
    "semi_persistent_directory",
)

# Variables through which a user chooses what to see; the subprocesses start without them.
USER_SETTINGS = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", _keras_env.SHOW_NOISE_ENV)


def _fresh_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    env.update(extra)
    return env


def _run(args, env, timeout=600):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_filtered_stderr_drops_the_listed_lines_and_keeps_the_rest(capfd):
    with _keras_env.filtered_stderr(_keras_env.TENSORFLOW_IMPORT_NOISE):
        os.write(2, b"E0000 cuda_dnn.cc] Unable to register cuDNN factory: already registered\n")
        os.write(2, b"E0000 some_op.cc] a real error\n")
        os.write(2, b"I0000 cpu_feature_guard.cc] This TensorFlow binary is optimized to use available "
                    b"CPU instructions\n")
    err = capfd.readouterr().err
    assert err == "E0000 some_op.cc] a real error\n"


def test_beam_notices_are_dropped_and_other_beam_warnings_kept(caplog):
    logger = logging.getLogger("apache_beam.io.tfrecordio")
    with caplog.at_level(logging.WARNING, logger="apache_beam"):
        logger.warning("Couldn't find python-snappy so the implementation is not as fast as it could be.")
        logger.warning("a real problem with a TFRecord file")
    assert [r.getMessage() for r in caplog.records] == ["a real problem with a TFRecord file"]


_SHOW_SETTINGS = ("import os, peterrec; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), "
                  "os.environ.get('PYTHONWARNINGS'))")


def test_defaults_apply_only_where_the_user_chose_nothing():
    default = _run(["-c", _SHOW_SETTINGS], _fresh_env()).stdout.split(" ", 1)
    assert default[0] == "2"
    assert "ignore:You are using a non-supported Python version:FutureWarning" in default[1]
    chosen = _run(["-c", _SHOW_SETTINGS], _fresh_env(TF_CPP_MIN_LOG_LEVEL="0", PYTHONWARNINGS="default"))
    assert chosen.stdout.split() == ["0", "default"]
    shown = _run(["-c", _SHOW_SETTINGS], _fresh_env(**{_keras_env.SHOW_NOISE_ENV: "1"}))
    assert shown.stdout.split() == ["None", "None"]


def _assert_quiet(result, summary_line):
    assert result.returncode == 0, result.stderr
    assert summary_line in result.stdout
    noisy = [line for line in result.stderr.splitlines() if any(text in line for text in KNOWN_NOISE)]
    assert not noisy, "library noise on stderr:\n" + "\n".join(noisy)


def test_export_prints_its_summary_without_tensorflow_noise(tmp_path):
    from peterrec.serving.random_artifacts import TaskSpec, write_random_artifacts

    made = write_random_artifacts(str(tmp_path / "artifacts"), [TaskSpec("gender", num_classes=2)])
    result = _run(["-m", "peterrec.cli", "export", "--backbone", made.backbone_dir,
                   "--task", made.task_dirs["gender"], "--model-base", str(tmp_path / "serving" / "peterrec"),
                   "--no-warmup"], _fresh_env())
    _assert_quiet(result, "exported peterrec version 1")
    assert "loading backbone" in result.stdout  # our progress lines stay


def test_ingest_prints_its_summary_without_beam_noise(tmp_path):
    from peterrec.components import synthetic

    paths = synthetic.generate(str(tmp_path / "data"), synthetic.SyntheticConfig(users=30, seed=1))
    result = _run(["-m", "peterrec.cli", "ingest", "--format", "csv", "--source", paths.interactions,
                   "--output", str(tmp_path / "out")], _fresh_env(PETERREC_BEAM_IN_MEMORY="1"))
    _assert_quiet(result, "Ingestion summary")
    assert "running the ingestion pipeline" in result.stderr  # our progress lines stay
