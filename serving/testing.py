"""Small SavedModels that follow the signature contract, for tests and benchmarks.

``export_toy_model(base_path, version)`` writes ``base_path/<version>/`` with the four
kinds of signature (and the classify signature of each classification task) over a tiny mean-of-embeddings "backbone" (no training involved),
``assets.extra/peterrec_tasks.json`` and warm-up requests, and returns a ``ToyModel``
whose ``reference(signature, rows)`` computes the same outputs in numpy, so tests can
check what a server answers. Different versions (or seeds) get different weights.
"""

import dataclasses
import os
import shutil
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from peterrec.serving import classify_signatures, signatures

NUM_RESERVED = 4  # PAD, MASK, TCL, UNK as in peterrec.components.ids
UNK_ID = 3

DEFAULT_TASKS = {
    "genre": {"kind": signatures.KIND_CLASSIFICATION, "labels": ["action", "comedy", "drama"]},
    "shop": {"kind": signatures.KIND_COLD_START, "targets": [f"t{n}" for n in range(12)]},
}


@dataclasses.dataclass
class ToyModel:
    """Weights of an exported toy model and a numpy reference of its signatures."""

    path: str
    version: int
    items: List[str]
    embeddings: np.ndarray  # [NUM_RESERVED + len(items), dim], row 0 (padding) is zero
    heads: Dict[str, dict]  # task -> {"kind", "weights", "bias", "labels" | "targets"}
    top_k: int

    def ids(self, rows: Sequence[Sequence[str]]) -> np.ndarray:
        """Item ids of right-padded string rows (0 for "", UNK for unknown ids)."""
        index = {item: NUM_RESERVED + n for n, item in enumerate(self.items)}
        return np.array(
            [[0 if item == signatures.PAD_ITEM else index.get(item, UNK_ID) for item in row] for row in rows],
            dtype=np.int64,
        )

    def user_vectors(self, rows: Sequence[Sequence[str]]) -> np.ndarray:
        """Mean embedding of each row's non-padding items."""
        ids = self.ids(signatures.pad_item_rows(rows))
        mask = (ids != 0).astype(np.float32)[..., None]
        total = (self.embeddings[ids] * mask).sum(axis=1)
        return (total / np.maximum(mask.sum(axis=1), 1.0)).astype(np.float32)

    def reference(self, signature: str, rows: Sequence[Sequence[str]]) -> Dict[str, np.ndarray]:
        """What the signature should answer for ``rows`` (strings as ``bytes``)."""
        user = self.user_vectors(rows)
        if signature == signatures.EMBED_SIGNATURE:
            return {signatures.OUTPUT_EMBEDDING: user}
        if signature == signatures.NEXT_ITEMS_SIGNATURE:
            return self._top_k(user @ self.embeddings[NUM_RESERVED:].T, self.items)
        head = self.heads[signature]
        logits = user @ head["weights"] + head["bias"]
        if head["kind"] == signatures.KIND_COLD_START:
            return self._top_k(logits, head["targets"])
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.array([label.encode() for label in head["labels"]], dtype=object)
        label_id = probabilities.argmax(axis=1).astype(np.int64)
        return {
            signatures.OUTPUT_PROBABILITIES: probabilities.astype(np.float32),
            signatures.OUTPUT_LABEL: labels[label_id],
            signatures.OUTPUT_LABEL_ID: label_id,
            signatures.OUTPUT_CLASSES: np.tile(labels[None, :], (len(rows), 1)),
        }

    def _top_k(self, scores: np.ndarray, names: Sequence[str]) -> Dict[str, np.ndarray]:
        k = min(self.top_k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        encoded = np.array([name.encode() for name in names], dtype=object)
        return {
            signatures.OUTPUT_ITEMS: encoded[order],
            signatures.OUTPUT_SCORES: np.take_along_axis(scores, order, axis=1).astype(np.float32),
        }


def _build_module(model: ToyModel):
    import tensorflow as tf

    class _Toy(tf.Module):
        def __init__(self):
            super().__init__()
            keys = tf.constant([signatures.PAD_ITEM] + list(model.items))
            values = tf.constant([0] + list(range(NUM_RESERVED, NUM_RESERVED + len(model.items))), tf.int64)
            self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), UNK_ID)
            self.embeddings = tf.Variable(model.embeddings, name="embeddings")
            self.item_names = tf.constant(model.items)
            self.heads = {}
            for name, head in model.heads.items():
                names = head["labels"] if head["kind"] == signatures.KIND_CLASSIFICATION else head["targets"]
                self.heads[name] = (
                    tf.Variable(head["weights"], name=f"{name}_weights"),
                    tf.Variable(head["bias"], name=f"{name}_bias"),
                    tf.constant(names),
                )

        def user(self, items):
            ids = self.table.lookup(items)
            mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., None]
            total = tf.reduce_sum(tf.gather(self.embeddings, ids) * mask, axis=1)
            return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

    module = _Toy()
    spec = tf.TensorSpec([None, None], tf.string, name=signatures.INPUT_ITEMS)
    k = model.top_k

    def top_k(scores, names):
        values, indices = tf.math.top_k(scores, k=min(k, scores.shape[-1]))
        return {signatures.OUTPUT_ITEMS: tf.gather(names, indices), signatures.OUTPUT_SCORES: values}

    functions = {}

    @tf.function(input_signature=[spec])
    def embed(items):
        return {signatures.OUTPUT_EMBEDDING: module.user(items)}

    @tf.function(input_signature=[spec])
    def next_items(items):
        user = module.user(items)
        return top_k(tf.matmul(user, module.embeddings[NUM_RESERVED:], transpose_b=True), module.item_names)

    functions[signatures.EMBED_SIGNATURE] = embed
    functions[signatures.NEXT_ITEMS_SIGNATURE] = next_items

    def make_task(name, kind):
        weights, bias, names = module.heads[name]

        @tf.function(input_signature=[spec])
        def task(items):
            logits = tf.matmul(module.user(items), weights) + bias
            if kind == signatures.KIND_COLD_START:
                return top_k(logits, names)
            probabilities = tf.nn.softmax(logits)
            label_id = tf.argmax(probabilities, axis=1, output_type=tf.int64)
            return {
                signatures.OUTPUT_PROBABILITIES: probabilities,
                signatures.OUTPUT_LABEL: tf.gather(names, label_id),
                signatures.OUTPUT_LABEL_ID: label_id,
                signatures.OUTPUT_CLASSES: tf.tile(names[None, :], [tf.shape(items)[0], 1]),
            }

        return task

    for name, head in model.heads.items():
        functions[name] = make_task(name, head["kind"])
        if head["kind"] == signatures.KIND_CLASSIFICATION:
            functions[signatures.classify_signature_name(name)] = tf.function(
                classify_signatures.classify_body(functions[name]),
                input_signature=[classify_signatures.classify_input_spec()])
    return module, {name: fn.get_concrete_function() for name, fn in functions.items()}


def export_toy_model(
    base_path: str,
    version: int,
    tasks: Optional[Mapping[str, dict]] = None,
    num_items: int = 30,
    dim: int = 8,
    top_k: int = 10,
    seed: int = 0,
    model_name: str = signatures.DEFAULT_MODEL_NAME,
    warmup: bool = True,
) -> ToyModel:
    """Exports a toy model as ``base_path/<version>``, written aside then renamed into place.

    ``tasks`` maps task names to ``{"kind": "classification", "labels": [...]}`` or
    ``{"kind": "cold_start", "targets": [...]}`` (default: one of each).
    """
    import tensorflow as tf

    from peterrec.serving import warmup as warmup_module

    tasks = DEFAULT_TASKS if tasks is None else tasks
    rng = np.random.RandomState(seed * 1000 + version)
    items = [f"i{n}" for n in range(num_items)]
    embeddings = rng.normal(size=(NUM_RESERVED + num_items, dim)).astype(np.float32)
    embeddings[0] = 0.0
    heads = {}
    for name, task in tasks.items():
        signatures.validate_task_name(name)
        names = task["labels"] if task["kind"] == signatures.KIND_CLASSIFICATION else task["targets"]
        heads[name] = dict(
            task,
            weights=rng.normal(size=(dim, len(names))).astype(np.float32),
            bias=rng.normal(size=(len(names),)).astype(np.float32),
        )
    final = os.path.join(base_path, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists")
    model = ToyModel(final, version, items, embeddings, heads, top_k)
    module, concrete = _build_module(model)
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=base_path)
    try:
        tf.saved_model.save(module, staging, signatures=concrete)
        entries = {}
        for name, head in heads.items():
            if head["kind"] == signatures.KIND_CLASSIFICATION:
                entries[name] = signatures.task_entry(head["kind"], labels=head["labels"])
            else:
                entries[name] = signatures.task_entry(head["kind"], top_k=min(top_k, len(head["targets"])))
        entries[signatures.EMBED_SIGNATURE] = signatures.task_entry(signatures.KIND_EMBED, dim=dim)
        entries[signatures.NEXT_ITEMS_SIGNATURE] = signatures.task_entry(
            signatures.KIND_NEXT_ITEMS, top_k=min(top_k, num_items)
        )
        signatures.write_tasks_metadata(staging, entries, toy_version=version)
        if warmup:
            requests = warmup_module.contract_warmup_requests(model_name, sorted(concrete), [items[:2], items[2:3]])
            warmup_module.write_warmup_requests(staging, requests)
        os.rename(staging, final)  # a polling server never sees a half-written version
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model
