"""The SavedModel's root object and its signatures (contract 5, ``peterrec.serving.signatures``).

Signatures:

- ``<task>``, classification: ``probabilities`` = softmax of the task's logits over all classes,
  ``label_id`` = their argmax, ``label`` its name, ``classes`` the class names.
- ``<task>_classify``, for each classification task: TF Serving's classify signature over the same
  outputs (``peterrec.serving.classify_signatures``): serialized tf.Examples with an ``items`` bytes
  feature in ``inputs``; ``classes`` and ``scores`` (= ``probabilities``) out.
- ``<task>``, cold start: the top-K target items by logit (reserved target ids excluded) as
  ``items`` and their logits as ``scores``, best first (K = min(top_k, real target items)).
- ``embed``: the PRETRAINED backbone's user vector: the mean, over the real (non-padding) item
  positions, of the backbone's last hidden layer (no patches, no task token): float32 [B, d].
- ``next_items``: the pretraining prediction of the next item, top-K over the item vocabulary
  without the reserved ids: the pretraining output layer applied to the hidden state of the last
  position (a causal backbone), or of a [MASK] appended after the history (a non-causal one).

Every signature takes ``items``: tf.string [B, None], oldest first, right-padded with "" by
clients (and by the server when it batches rows of different lengths). Inside the signature,
``""`` anywhere is padding; the other strings go through a ``tf.lookup.StaticHashTable`` built
from ``assets/item_vocabulary.tsv`` (an asset, so it travels with the SavedModel), unknown ids
and reserved tokens map to UNK; each row keeps its most recent ``max_len`` items and is
re-laid out LEFT-padded, as the model was trained (``peterrec.trainer.data``). The backbone
ignores padding, so the answer for a row never depends on how much padding it carries.

The module holds ``backbone_variables`` (the shared backbone, once) and ``task_weights[<task>]``
(each task's packed weights, ``peterrec.serving.weight_sharing``); tasks of the same structure
share one traced forward, ``embed`` and ``next_items`` share the pretrained forward and every
signature shares the item-id function. The saved graph grows with the number of task
structures, not of tasks (the runtime still instantiates each signature).
"""

import os
from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from peterrec.components import ids
from peterrec.serving import classify_signatures, signatures
from peterrec.serving.served_tasks import AssemblyError, ServedTask
from peterrec.serving.weight_sharing import PackedWeights, Untracked, WeightSlots

DEFAULT_MAX_LEN = 200  # the fine-tuning default context (trainer.finetune.FinetuneConfig.max_len)
VOCABULARY_TSV = "item_vocabulary.tsv"  # token<TAB>id, real items only: what the lookup table reads
VOCABULARY_JSON = "vocabulary.json"  # the full vocabulary artifact (contract 2), for people and tools


def write_vocabulary_assets(vocabulary, directory: str) -> Tuple[str, str]:
    """Writes the lookup table's ``item_vocabulary.tsv`` and ``vocabulary.json``; returns both paths."""
    os.makedirs(directory, exist_ok=True)
    bad = [token for token in vocabulary.tokens if any(c in token for c in "\t\n\r") or token == signatures.PAD_ITEM]
    if bad:
        raise AssemblyError(f"item ids {bad[:5]} hold a tab, a line break or are empty: they cannot be served "
                            "as strings; rebuild the vocabulary without them")
    tsv = os.path.join(directory, VOCABULARY_TSV)
    with open(tsv, "w", encoding="utf-8") as handle:
        for index, token in enumerate(vocabulary.tokens):
            handle.write(f"{token}\t{vocabulary.num_reserved + index}\n")
    return tsv, vocabulary.save(os.path.join(directory, VOCABULARY_JSON))


class ServingModule(tf.Module):
    """The SavedModel root: the backbone's variables once, each task's packed weights, the tables.

    ``signature_functions()`` traces one concrete function per signature (and checks that each
    reads only the backbone's and its own task's variables). The object graph holds
    ``backbone_variables`` and ``task_weights[<task>]`` (see ``PackedWeights``).

    Graphs are shared too: tasks of the same structure (config apart from the name, and variable
    shapes) share ONE traced forward function that takes the task's weights as inputs, every
    signature calls one shared item-id function, and ``embed`` and ``next_items`` share the
    pretrained forward. A task's own graph is then a few dozen nodes, so the SavedModel's graph
    and the export time grow with the number of task *structures*, not of tasks. (Loading is
    another matter: TensorFlow's runtime still instantiates every signature with the shared
    forward inlined, about 10-20 MB per task signature for an 8-block d=64 backbone.)
    """

    def __init__(self, backbone, vocabulary, tasks: Sequence[ServedTask], vocabulary_tsv: str, vocabulary_json: str,
                 max_len: int = DEFAULT_MAX_LEN, top_k: int = signatures.DEFAULT_TOP_K,
                 backbone_signatures: bool = True):
        super().__init__(name="peterrec_serving")
        if int(max_len) < 1 or int(top_k) < 1:
            raise AssemblyError(f"max_len and top_k must be >= 1, got {max_len} and {top_k}")
        # Held outside tf.Module's attribute tracking: saving must not serialise the Keras objects
        # (that would trace every layer and store their graphs); only their values are saved.
        self._models = Untracked(backbone=backbone, tasks=list(tasks), functions={}, slots={}, templates={},
                                  packed={}, backbone_signatures=bool(backbone_signatures))
        self.max_len = int(max_len)
        self.top_k = int(top_k)
        self.num_items = len(vocabulary.tokens)
        self.vocabulary_json = tf.saved_model.Asset(vocabulary_json)
        # The initializers track the .tsv as an asset: saved into assets/, re-read from there on load.
        self.item_ids = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_tsv, tf.string, 0, tf.int64, 1, delimiter="\t"),
            default_value=ids.UNK_ID)
        self.item_names = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_tsv, tf.int64, 1, tf.string, 0, delimiter="\t"),
            default_value=signatures.PAD_ITEM)
        shared_ids = {id(v) for v in backbone.weights}
        for task in self._models.tasks:
            slots = WeightSlots(task, shared_ids)
            self._models.slots[task.name] = slots
            self._models.templates.setdefault(slots.key, slots)
            self._models.packed[task.name] = PackedWeights(task.name, slots.variables)
        self.task_weights = {name: list(packed.variables) for name, packed in self._models.packed.items()}

    @property
    def serves_backbone_signatures(self) -> bool:
        """Whether ``embed`` and ``next_items`` are served."""
        return self._models.backbone_signatures

    # ---- inputs -------------------------------------------------------------------------
    def left_padded_ids(self, items, keep: Optional[int] = None):
        """``items`` string [B, T] (any "" is padding) -> int32 ids [B, W], LEFT-padded with PAD,
        the most recent ``keep`` (default max_len) items of each row; W = longest kept row (>= 1)."""
        keep = self.max_len if keep is None else keep
        items = tf.convert_to_tensor(items, tf.string)
        real = tf.not_equal(items, signatures.PAD_ITEM)
        looked_up = tf.cast(self.item_ids.lookup(items), tf.int32)
        recent = tf.ragged.boolean_mask(looked_up, real)[:, -keep:]
        lengths = tf.cast(recent.row_lengths(), tf.int32)
        right = recent.to_tensor(default_value=ids.PAD_ID)
        present = tf.shape(right)[1]
        width = tf.maximum(present, 1)
        right = tf.pad(right, [[0, 0], [0, width - present]])
        # Position j of a row of length n holds its item j - (width - n), or padding when negative.
        source = tf.range(width)[tf.newaxis, :] - (width - lengths)[:, tf.newaxis]
        shifted = tf.gather(right, tf.maximum(source, 0), batch_dims=1)
        return tf.where(source >= 0, shifted, ids.PAD_ID)

    def _shared(self, key, python_function, input_signature):
        """One tf.function per key, traced once and called (as a function call) by every signature."""
        functions = self._models.functions
        if key not in functions:
            # The runtime inlines it into each caller when it instantiates a signature: that costs
            # memory per signature, but less than a "_noinline" call (measured: ~10 vs ~16 MB per
            # task signature of an 8-block d=64 backbone), and the SavedModel holds it once.
            functions[key] = tf.function(python_function, input_signature=input_signature, autograph=False)
        return functions[key]

    def _ids(self, items, keep: Optional[int] = None):
        keep = self.max_len if keep is None else int(keep)
        spec = [tf.TensorSpec([None, None], tf.string)]
        item_ids = self._shared(("ids", keep), lambda batch: self.left_padded_ids(batch, keep), spec)(items)
        return tf.ensure_shape(item_ids, [None, None])

    def _pretrained_hidden(self, item_ids):
        spec = [tf.TensorSpec([None, None], tf.int32)]
        hidden = self._shared(("pretrained",), lambda batch: self._models.backbone(batch, training=False),
                              spec)(item_ids)
        return tf.ensure_shape(hidden, [None, None, int(self._models.backbone.embedding_dim)])

    # ---- signature bodies ---------------------------------------------------------------
    def embed(self, items):
        """The pretrained backbone's user vector: mean of the last hidden layer over real positions."""
        item_ids = self._ids(items)
        hidden = self._pretrained_hidden(item_ids)
        weights = tf.cast(tf.not_equal(item_ids, ids.PAD_ID), hidden.dtype)[..., tf.newaxis]
        total = tf.reduce_sum(hidden * weights, axis=1)
        return {signatures.OUTPUT_EMBEDDING: total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)}

    def next_items(self, items):
        """Pretraining top-K next items (reserved ids excluded)."""
        backbone = self._models.backbone
        if backbone.causal:
            item_ids = self._ids(items)
        else:  # the cloze model predicts a [MASK] placed after the history
            history = self._ids(items, keep=max(1, self.max_len - 1))
            item_ids = tf.concat([history, tf.fill([tf.shape(history)[0], 1], ids.MASK_ID)], axis=1)
        hidden = self._pretrained_hidden(item_ids)[:, -1, :]
        scores = backbone.item_logits(hidden)[:, ids.NUM_RESERVED:]
        # Not tfrs.layers.factorized_top_k.BruteForce: measured with the same answers and speed, but
        # its index is its own copy of the item table (and no bias), which the SavedModel would store twice.
        values, indices = tf.math.top_k(scores, k=min(self.top_k, self.num_items))
        names = self.item_names.lookup(tf.cast(indices, tf.int64) + ids.NUM_RESERVED)
        return {signatures.OUTPUT_ITEMS: names, signatures.OUTPUT_SCORES: values}

    def task_logits(self, task: ServedTask, item_ids):
        """The task's logits [B, num_outputs] for left-padded ids: the shared forward of its
        structure, fed with the task's own packed weights (unpacked inside the shared forward)."""
        slots = self._models.slots[task.name]
        template = self._models.templates[slots.key]
        layout = self._models.packed[template.task_name]
        spec = [tf.TensorSpec([None, None], tf.int32), layout.specs()]

        def forward(batch, packed):
            with template.swapped_in(layout.unpack(packed)):
                return template.modules[0](batch, training=False)

        shared = self._shared(("forward",) + slots.key, forward, spec)
        logits = shared(item_ids, [tf.convert_to_tensor(v) for v in self._models.packed[task.name].variables])
        # The call's static output shape is not recorded with it: restate it for the optimisers.
        return tf.ensure_shape(logits, [None, int(task.model.config.num_outputs)])

    def task(self, task: ServedTask, items):
        """A task's outputs from its logits."""
        logits = self.task_logits(task, self._ids(items))
        names = tf.constant(task.output_names)
        if task.kind == signatures.KIND_COLD_START:
            values, indices = tf.math.top_k(logits[:, task.num_reserved:], k=task.top_k(self.top_k))
            return {signatures.OUTPUT_ITEMS: tf.gather(names, indices), signatures.OUTPUT_SCORES: values}
        label_id = tf.argmax(logits, axis=1, output_type=tf.int64)
        return {
            signatures.OUTPUT_PROBABILITIES: tf.nn.softmax(logits, axis=1),
            signatures.OUTPUT_LABEL: tf.gather(names, label_id),
            signatures.OUTPUT_LABEL_ID: label_id,
            signatures.OUTPUT_CLASSES: tf.tile(names[tf.newaxis, :], [tf.shape(logits)[0], 1]),
        }

    # ---- tracing -------------------------------------------------------------------------
    def signature_functions(self) -> Dict[str, object]:
        """{signature name: concrete function} for every task, ``embed`` and ``next_items``."""
        spec = tf.TensorSpec([None, None], tf.string, name=signatures.INPUT_ITEMS)
        bodies = {task.name: self._task_body(task) for task in self._models.tasks}
        if self._models.backbone_signatures:
            bodies[signatures.EMBED_SIGNATURE] = self.embed
            bodies[signatures.NEXT_ITEMS_SIGNATURE] = self.next_items
        if not bodies:
            raise AssemblyError("nothing to serve: no task and no backbone signature")
        # autograph=False: these bodies have no data-dependent Python control flow.
        concrete = {name: tf.function(body, input_signature=[spec], autograph=False).get_concrete_function()
                    for name, body in bodies.items()}
        for task in self._models.tasks:
            if task.kind == signatures.KIND_CLASSIFICATION:
                body = classify_signatures.classify_body(self._task_body(task))
                concrete[signatures.classify_signature_name(task.name)] = tf.function(
                    body, input_signature=[classify_signatures.classify_input_spec()], autograph=False
                ).get_concrete_function()
        self._check_captures(concrete)
        # The backbone's variables that some signature reads (all of them once next_items is served).
        captured = {id(v) for function in concrete.values() for v in function.variables}
        self.backbone_variables = [v for v in self._models.backbone.weights if id(v) in captured]
        return concrete

    def _task_body(self, task: ServedTask):
        def body(items):
            return self.task(task, items)

        return body

    def _check_captures(self, concrete) -> None:
        """Each signature may read only the backbone's variables and its own task's weights: a
        Keras variable read directly would mean the weight swap missed it (and a task read
        another task's weights)."""
        allowed = {id(v) for v in self._models.backbone.weights}
        for name, function in concrete.items():
            task = name[: -len(signatures.CLASSIFY_SUFFIX)] if signatures.is_classify_signature(name) else name
            own = allowed | {id(v) for v in self.task_weights.get(task, [])}
            stray = [v.name for v in function.variables if id(v) not in own]
            if stray:
                raise AssemblyError(f"signature {name!r} reads variables outside the backbone and its own "
                                    f"task weights: {stray[:5]} (a layer keeps weights where the shared "
                                    "forward cannot swap them)")


def build_serving_module(backbone, vocabulary, tasks: Sequence[ServedTask], asset_dir: str,
                         max_len: int = DEFAULT_MAX_LEN, top_k: int = signatures.DEFAULT_TOP_K,
                         backbone_signatures: bool = True):
    """(ServingModule, {signature: concrete function}) for tasks already loaded on ``backbone``.

    ``asset_dir`` receives the vocabulary assets; it must exist until the module is saved.
    ``backbone_signatures=False`` leaves out ``embed`` and ``next_items`` (not the contract: for
    comparisons such as a single fine-tuned model served on its own).
    """
    tsv, vocabulary_json = write_vocabulary_assets(vocabulary, asset_dir)
    module = ServingModule(backbone, vocabulary, tasks, tsv, vocabulary_json, max_len=max_len, top_k=top_k,
                           backbone_signatures=backbone_signatures)
    return module, module.signature_functions()
