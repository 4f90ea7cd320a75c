"""Makes sure TensorFlow runs with tf-keras (Keras 2), which this project needs.

tensorflow-recommenders and TF Transform refuse Keras 3, and TensorFlow 2.16 picks the
Keras flavour from ``TF_USE_LEGACY_KERAS`` the first time ``tf.keras`` is touched. So the
variable is set as soon as ``peterrec`` is imported, before any of its modules imports
TensorFlow; a process that already bound ``tf.keras`` to Keras 3 gets a clear error
instead of obscure failures later.
"""

import os
import sys


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
