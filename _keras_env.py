"""Prepares the process for TensorFlow and its libraries before any of them is imported.

Two jobs, both of which must happen before TensorFlow loads, which is why ``peterrec``'s
``__init__`` imports this module first:

- **tf-keras.** tensorflow-recommenders and TF Transform refuse Keras 3, and TensorFlow
  2.16 picks the Keras flavour from ``TF_USE_LEGACY_KERAS`` the first time ``tf.keras`` is
  touched. ``ensure_legacy_keras`` sets the variable, and a process that already bound
  ``tf.keras`` to Keras 3 gets a clear error instead of obscure failures later.
- **Quiet start-up.** Importing this module (``quiet_library_noise``) hides the known lines
  that TensorFlow, Beam and the Google client libraries print on every start and that say
  nothing about the run: the CUDA factory registration errors and CPU-feature notes of
  TensorFlow's C++ runtime, the "non-supported Python version" FutureWarning of
  ``google.api_core``, and a few Beam worker notices. Each filter applies only where the
  user has not chosen a setting (``TF_CPP_MIN_LOG_LEVEL``, ``-W`` / ``PYTHONWARNINGS``),
  matches only the listed messages, and ``PETERREC_LIBRARY_NOISE=1`` turns all of them off.
  peterrec's own progress goes through the ``peterrec`` loggers and stdout, which no filter
  touches.
"""

import contextlib
import importlib.abc
import logging
import os
import sys
import tempfile
import warnings

# Set to 1 to see every library's start-up output unfiltered.
SHOW_NOISE_ENV = "PETERREC_LIBRARY_NOISE"

# Lines TensorFlow's C++ runtime writes to stderr while it is imported, at ERROR level (so
# TF_CPP_MIN_LOG_LEVEL=2 does not hide them) although nothing failed: the CUDA plugins
# register twice in the pip wheels. Matched as substrings of a line.
TENSORFLOW_IMPORT_NOISE = (
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "TF-TRT Warning: Could not find TensorRT",
)

# (message prefix, category) of Python warnings libraries raise on import; no commas
# allowed, since these also travel to child processes in PYTHONWARNINGS.
LIBRARY_WARNINGS = (
    ("You are using a non-supported Python version", FutureWarning),
)

# logger name -> message substrings of notices that Beam logs on every run.
BEAM_LOG_NOISE = {
    "apache_beam.io.tfrecordio": ("Couldn't find python-snappy",),
    "apache_beam.runners.portability.local_job_service": (
        "No semi_persistent_directory found",
        "Discarding unparseable args",
        "Couldn't find python-snappy",
    ),
    "apache_beam.options.pipeline_options": ("Discarding unparseable args",),
}


class KerasVersionError(RuntimeError):
    """TensorFlow was imported with Keras 3 before peterrec could select tf-keras."""


def ensure_legacy_keras() -> None:
    """Selects tf-keras for TensorFlow, or raises KerasVersionError if it is too late."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    keras = getattr(tf, "keras", None)
    version = str(getattr(keras, "__version__", "")) if keras is not None else ""
    if version.startswith("3"):
        raise KerasVersionError(
            "peterrec needs tf-keras (Keras 2), but TensorFlow was already imported with "
            f"Keras {version}. Set TF_USE_LEGACY_KERAS=1 in the environment, or import "
            "peterrec before tensorflow."
        )


class _DropMessages(logging.Filter):
    """A logging filter that drops records whose message contains one of ``substrings``."""

    def __init__(self, substrings):
        super().__init__()
        self.substrings = tuple(substrings)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.substrings)


@contextlib.contextmanager
def filtered_stderr(noise):
    """Sends file descriptor 2 to a temporary file for the block, then writes back every line
    that contains none of the ``noise`` substrings. It works at the descriptor level because
    the C++ runtime writes there directly, below ``sys.stderr``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if not any(text.encode() in line for text in noise)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` through the other finders and runs its import inside
    ``filtered_stderr(TENSORFLOW_IMPORT_NOISE)``; it removes itself once the import runs."""

    def find_spec(self, fullname, path=None, target=None):
        """The import spec of ``tensorflow`` with a quieted loader; None for anything else."""
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def quiet_exec_module(module):
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            with filtered_stderr(TENSORFLOW_IMPORT_NOISE):
                exec_module(module)

        loader.exec_module = quiet_exec_module
        return spec


def quiet_library_noise() -> None:
    """Installs the start-up noise filters described in the module docstring (idempotent).

    - ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (TensorFlow's C++ INFO and WARNING lines off);
      when the user has not set it, TensorFlow's import also runs through ``filtered_stderr``.
    - The ``LIBRARY_WARNINGS`` are ignored in this process and, through ``PYTHONWARNINGS``, in
      the worker processes it starts, unless the user gave ``-W`` or ``PYTHONWARNINGS``.
    - Beam's ``BEAM_LOG_NOISE`` notices are dropped from their loggers.
    """
    if os.environ.get(SHOW_NOISE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _QuietTensorFlowImport())
    if not sys.warnoptions and "PYTHONWARNINGS" not in os.environ:
        for message, category in LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        os.environ["PYTHONWARNINGS"] = ",".join(
            f"ignore:{message}:{category.__name__}" for message, category in LIBRARY_WARNINGS)
    for name, substrings in BEAM_LOG_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(substrings))


# ``peterrec/__init__.py`` imports this module before anything else, so importing peterrec
# installs the filters before any library loads.
quiet_library_noise()
