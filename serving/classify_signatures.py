"""TF Serving classify signatures of classification tasks (contract 5, ``peterrec.serving.signatures``).

``classify_body(predict)`` turns a classification task's predict body (``items`` -> outputs) into
the body of its ``<task>_classify`` signature: serialized ``tf.Example`` strings in ``inputs``
(each with a bytes feature ``items``), ``classes`` and ``scores`` out. TF2's
``tf.saved_model.save`` writes every signature with the predict method name, and TF Serving's
Classify API refuses those, so ``mark_classify_methods`` sets ``tensorflow/serving/classify`` on
the classify signatures of a saved version afterwards (and rewrites ``fingerprint.pb``, which
hashes ``saved_model.pb``). ``signatures.write_tasks_metadata`` calls it, so every exporter that
writes the contract's metadata after saving gets it.
"""

import os
from typing import Callable, List

from peterrec.serving import signatures


def classify_input_spec():
    """The ``tf.TensorSpec`` of a classify signature's input: serialized tf.Examples [B]."""
    import tensorflow as tf

    return tf.TensorSpec([None], tf.string, name=signatures.CLASSIFY_INPUTS)


def parse_items(serialized):
    """Serialized tf.Examples [B] -> their ``items`` bytes features as strings [B, T], right-padded with ""."""
    import tensorflow as tf

    features = tf.io.parse_example(serialized, {signatures.INPUT_ITEMS: tf.io.VarLenFeature(tf.string)})
    return tf.sparse.to_dense(features[signatures.INPUT_ITEMS], default_value=signatures.PAD_ITEM)


def classify_body(predict: Callable) -> Callable:
    """The body of a classify signature over a classification task's predict body."""

    def body(inputs):
        outputs = predict(parse_items(inputs))
        return {
            signatures.CLASSIFY_OUTPUT_CLASSES: outputs[signatures.OUTPUT_CLASSES],
            signatures.CLASSIFY_OUTPUT_SCORES: outputs[signatures.OUTPUT_PROBABILITIES],
        }

    return body


def mark_classify_methods(version_dir: str) -> List[str]:
    """Sets the classify method name on every ``<task>_classify`` signature of a saved version.

    Returns the names it changed (none when ``saved_model.pb`` already has them right).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(version_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    changed = []
    for meta_graph in saved_model.meta_graphs:
        for name, definition in meta_graph.signature_def.items():
            if signatures.is_classify_signature(name) and definition.method_name != signatures.CLASSIFY_METHOD_NAME:
                definition.method_name = signatures.CLASSIFY_METHOD_NAME
                changed.append(name)
    if not changed:
        return []
    staging = path + ".tmp"
    with open(staging, "wb") as handle:
        handle.write(saved_model.SerializeToString(deterministic=True))
    os.replace(staging, path)
    if os.path.exists(os.path.join(version_dir, "fingerprint.pb")):
        # The fingerprint hashes saved_model.pb; TensorFlow writes it with its own (internal) helper.
        from tensorflow.python.saved_model import fingerprinting_utils

        fingerprinting_utils.write_fingerprint(version_dir)
    return sorted(set(changed))
