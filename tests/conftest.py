"""Test settings shared by every test module.

As TFX's own conftest does: Beam runs in-memory and TensorFlow uses one thread per op,
so tests are deterministic and fit CI's two cores.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Picked up by peterrec's Beam helpers: use the in-memory DirectRunner in tests.
os.environ["PETERREC_BEAM_IN_MEMORY"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_op():
    """Limits TensorFlow to one thread per op (as TFX's tests do) and sets up AutoGraph."""
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    # As pretrain()/finetune() do: keep AutoGraph from re-converting tf-keras' own loops.
    from peterrec.trainer.runtime import skip_autograph_for_tf_keras

    skip_autograph_for_tf_keras()
    yield
