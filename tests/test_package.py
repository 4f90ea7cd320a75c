"""Tests of the package itself: the tf-keras guard, the lazy CLI, and where it imports from.

Each check that depends on what a fresh interpreter has imported runs in a subprocess
(this process already imported TensorFlow through tests/conftest.py).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import peterrec


def _run_python(code, env_overrides=None):
    """Runs ``code`` in a fresh interpreter without TF_USE_LEGACY_KERAS set."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_peterrec_is_imported_from_the_tree_under_test():
    # Under Bazel both lie in the test's runfiles, under pytest in the checkout: never
    # another checkout's copy (e.g. through the editable install of a shared .venv).
    package_dir = Path(peterrec.__file__).parent
    tests_dir = Path(__file__).parent
    assert package_dir == tests_dir.parent, (package_dir, tests_dir)
    assert (package_dir / "components" / "__init__.py").is_file()


@pytest.mark.skipif("TEST_SRCDIR" not in os.environ, reason="checks Bazel's import path")
def test_under_bazel_rooms_import_only_inside_peterrec():
    # tools/pytest_main.py removes the repository folder that Bazel's launcher adds.
    assert importlib.util.find_spec("components") is None
    assert importlib.util.find_spec("peterrec.components") is not None


def test_import_selects_tf_keras_without_importing_tensorflow():
    result = _run_python(
        "import os, sys, peterrec\n"
        "print('TF_USE_LEGACY_KERAS=' + str(os.environ.get('TF_USE_LEGACY_KERAS')))\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stdout
    assert "tensorflow imported: False" in result.stdout


def test_cli_help_lists_usage_without_heavy_imports():
    result = _run_python(
        "import sys\n"
        "from peterrec import cli\n"
        "try:\n"
        "    status = cli.main(['--help'])\n"
        "except SystemExit as exit_:\n"
        "    status = exit_.code\n"
        "print('STATUS', status)\n"
        "heavy = ('tensorflow', 'apache_beam', 'tfx', 'tensorflow_transform')\n"
        "print('HEAVY', sorted(name for name in heavy if name in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "usage: peterrec" in result.stdout
    assert "STATUS 0" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout


def test_cli_module_runs_as_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "peterrec.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: peterrec")


def test_guard_raises_when_tensorflow_already_uses_keras_3():
    result = _run_python(
        "import tensorflow as tf\n"
        "print('KERAS', tf.keras.__version__)\n"
        "try:\n"
        "    import peterrec\n"
        "except Exception as error:\n"
        "    print('RAISED', type(error).__name__)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    assert result.returncode == 0, result.stderr
    assert "KERAS 3." in result.stdout, result.stdout
    assert "RAISED KerasVersionError" in result.stdout, result.stdout
