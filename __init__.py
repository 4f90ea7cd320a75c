"""peterrec: pretrain a sequential recommender once, fine-tune many tasks with patches.

Rooms (imports flow one way): ``peterrec.components`` (ingestion, vocabulary, example
format) -> ``peterrec.trainer`` (backbone, patches, fine-tuning) -> ``peterrec.serving``
(multi-task SavedModel, server, client) -> ``peterrec.pipeline`` (TFX).
"""

from peterrec._keras_env import KerasVersionError, ensure_legacy_keras

ensure_legacy_keras()

__version__ = "0.1.0"
__all__ = ["KerasVersionError", "__version__"]
