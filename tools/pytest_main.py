"""Runs pytest on the test module named on the command line, as one Bazel test.

Every ``py_test`` in //tests has this file as ``main`` and its own test module as the
argument, so pytest-style tests (fixtures, marks, tests/conftest.py and the settings in
pyproject.toml) behave under ``bazel test`` as under ``make test``. Results go to
Bazel's JUnit XML file, pytest's temporary directories to the test's TEST_TMPDIR.
"""

import os
import resource
import sys


def _same_dir(path, other):
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def keep_only_package_imports():
    """Leaves the runfiles root, not the workspace folder in it, on the import path.

    Bazel's launcher also puts ``<runfiles>/peterrec`` (the repository root) and this
    script's source folder on the path, so ``import components`` would work under Bazel
    only; the installed package offers only ``peterrec.*``. Subprocesses inherit the
    cleaned PYTHONPATH.
    """
    runfiles = os.environ.get("TEST_SRCDIR")
    workspace = os.environ.get("TEST_WORKSPACE")
    if not runfiles or not workspace:
        return
    unwanted = [
        os.path.join(runfiles, workspace),
        os.path.dirname(os.path.realpath(__file__)),
    ]

    def wanted(entry):
        return not any(_same_dir(entry or ".", bad) for bad in unwanted)

    sys.path[:] = [entry for entry in sys.path if wanted(entry)]
    python_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        entry for entry in python_path.split(os.pathsep) if entry and wanted(entry)
    )


def pytest_args(test_files):
    """Returns pytest's arguments for ``test_files`` inside the Bazel test environment."""
    args = ["-p", "no:cacheprovider", "-q", *test_files]
    xml_file = os.environ.get("XML_OUTPUT_FILE")
    if xml_file:
        args.append(f"--junitxml={xml_file}")
    tmp_dir = os.environ.get("TEST_TMPDIR")
    if tmp_dir:
        args.append(f"--basetemp={os.path.join(tmp_dir, 'pytest')}")
    return args


def cpu_seconds():
    """CPU time of this process and its finished subprocesses, user plus system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv):
    """Runs pytest and returns the exit status Bazel should see."""
    if not argv:
        print("usage: pytest_main.py TEST_FILE [PYTEST_ARGS...]", file=sys.stderr)
        return 2
    keep_only_package_imports()
    if "TEST_TMPDIR" in os.environ:
        # Bazel leaves HOME unset; keep caches such as ~/.keras inside the test's folder.
        os.environ.setdefault("HOME", os.environ["TEST_TMPDIR"])
    import pytest

    status = pytest.main(pytest_args(argv))
    # Unlike wall time, this does not depend on how busy the machine is: it is what
    # decides whether a module belongs in the "heavy" list of tests/BUILD.
    print(f"pytest_main: {cpu_seconds():.1f} s of CPU for {' '.join(argv)}")
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        # A module whose tests are all marked slow has nothing to run by default.
        print(f"pytest_main: no test selected in {' '.join(argv)}; nothing to run")
        return 0
    return int(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
