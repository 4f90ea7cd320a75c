"""Assembly: ONE multi-task SavedModel from a backbone export and patch artifacts (contract 5).

``export_serving_model`` (the ``peterrec export`` command) loads the backbone export once, loads
every patch artifact onto that same backbone instance (each artifact's backbone fingerprint is
checked first), and writes the NEXT version ``MODEL_BASE/<N>/`` of one SavedModel whose object
graph holds the backbone's variables ONCE and each task's own variables once. It is written to a
hidden staging folder inside ``MODEL_BASE`` and renamed into place, so a polling server never sees
half a version. The TF Serving files (``models.config``, batching parameters, monitoring config)
are updated beside the model base (``peterrec.serving.serving_files``).

Signatures (``peterrec.serving.signatures`` is the contract):

- ``<task>``, classification: ``probabilities`` = softmax of the task's logits over all classes,
  ``label_id`` = their argmax, ``label`` its name, ``classes`` the class names.
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

How the SavedModel stays small as tasks are added:

- variables: ``backbone_variables`` (the shared backbone, once) and ``task_weights[<task>]``: each
  task's own variables (patches, LN2 copies, [TCL], head, the item table of peterrec+items) packed
  into one flat variable per dtype, so a task adds its patch's bytes and one or two checkpoint
  entries;
- graphs: tasks of the same structure (same config apart from the name, same weight shapes) share
  ONE traced forward function that takes the task's weights as inputs (a template task's Keras
  layers are traced with their weights swapped for those inputs); a task's signature only unpacks
  its weights, calls it and turns logits into outputs. ``embed`` and ``next_items`` share the
  pretrained forward and every signature shares the item-id function. The saved graph grows with
  the number of task structures, not of tasks (the runtime still instantiates each signature).

Strategies that own backbone weights (fine-all, fine-last, peter-zero) keep their own copy in
the SavedModel: they are served, but cost what a separate model costs.
"""

import contextlib
import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from peterrec.components import ids
from peterrec.serving import signatures
from peterrec.trainer import artifacts

DEFAULT_MAX_LEN = 200  # the fine-tuning default context (trainer.finetune.FinetuneConfig.max_len)
VOCABULARY_TSV = "item_vocabulary.tsv"  # token<TAB>id, real items only: what the lookup table reads
VOCABULARY_JSON = "vocabulary.json"  # the full vocabulary artifact (contract 2), for people and tools
WARMUP_UNKNOWN_ITEM = "peterrec-warmup-unknown-item"


class AssemblyError(ValueError):
    """The artifacts cannot be assembled into one served model (the message says why)."""


# ----------------------------------------------------------------------------------- tasks
@dataclasses.dataclass
class ServedTask:
    """One task of the served model: its TaskModel on the shared backbone and its output names.

    ``output_names`` are the class names (classification) or the REAL target items (cold start,
    in target-id order from id ``num_reserved`` on).
    """

    name: str
    kind: str
    model: object  # peterrec.trainer.task_model.TaskModel
    metadata: artifacts.PatchMetadata
    output_names: List[str]
    num_reserved: int
    source: str

    @property
    def strategy(self) -> str:
        """The fine-tuning strategy (paper name)."""
        return self.metadata.strategy

    def top_k(self, requested: int) -> int:
        """K of a cold-start signature: the requested K, at most the number of target items."""
        return min(int(requested), len(self.output_names))


def parse_task_argument(argument: str) -> Tuple[Optional[str], str]:
    """``DIR`` or ``NAME=DIR`` (serve the artifact under another signature name) -> (name, dir)."""
    if "=" in argument and not os.path.isdir(argument):
        name, path = argument.split("=", 1)
        return name, path
    return None, argument


def _output_names(task_config, metadata: artifacts.PatchMetadata, head, source: str) -> Tuple[List[str], int]:
    """(output names, reserved ids) of a task from its label / target vocabulary."""
    vocabulary = metadata.vocabulary()
    outputs = int(task_config.num_outputs)
    if task_config.kind == signatures.KIND_CLASSIFICATION:
        names = [str(n) for n in range(outputs)] if vocabulary is None else vocabulary.all_tokens()
        reserved = 0
    else:
        reserved = int(head.num_reserved)
        if vocabulary is None:
            names = [str(n) for n in range(reserved, outputs)]
        else:
            if vocabulary.num_reserved != reserved:
                raise AssemblyError(f"{source}: the target vocabulary has {vocabulary.num_reserved} reserved ids "
                                    f"but the head reserves {reserved}")
            names = list(vocabulary.tokens)
    if vocabulary is not None and len(vocabulary) != outputs:
        raise AssemblyError(f"{source}: the {vocabulary.kind} vocabulary has {len(vocabulary)} ids but the task "
                            f"has {outputs} outputs: the artifact is inconsistent")
    if not names:
        raise AssemblyError(f"{source}: the task has no real outputs to serve")
    return names, reserved


def load_served_tasks(task_arguments: Sequence[str], backbone, vocabulary, fingerprint: str,
                      log: Callable[[str], None] = lambda message: None) -> List[ServedTask]:
    """Loads patch artifacts (``DIR`` or ``NAME=DIR``) onto ``backbone``, checking fingerprints first.

    Raises ``artifacts.BackboneMismatchError`` naming the artifact when it was trained on another
    backbone, and AssemblyError for bad or duplicate task names.
    """
    if not task_arguments:
        raise AssemblyError("give at least one patch artifact (--task DIR)")
    tasks: List[ServedTask] = []
    seen: Dict[str, str] = {}
    for argument in task_arguments:
        rename, directory = parse_task_argument(argument)
        if not os.path.isdir(directory):
            raise AssemblyError(f"patch artifact {directory!r} does not exist (or is not a folder)")
        metadata = artifacts.read_patch_metadata(directory)
        name = rename or metadata.task_name
        try:
            signatures.validate_task_name(name)
        except ValueError as error:
            raise AssemblyError(f"{directory}: {error} (serve it under another name with --task NAME={directory})") \
                from error
        if name in seen:
            raise AssemblyError(f"two artifacts are named {name!r} ({seen[name]} and {directory}); "
                                f"rename one with --task OTHER_NAME={directory}")
        if metadata.kind not in signatures.TASK_KINDS:
            raise AssemblyError(f"{directory}: task kind {metadata.kind!r} is not one of {signatures.TASK_KINDS}")
        if metadata.backbone_fingerprint != fingerprint:
            raise artifacts.BackboneMismatchError(
                f"patch artifact {directory} (task {metadata.task_name!r}) was fine-tuned on backbone "
                f"{metadata.backbone_fingerprint[:16]}..., but --backbone is {fingerprint[:16]}...: export it with "
                "the backbone it was trained on, or fine-tune the task again on this backbone")
        seen[name] = directory
        model, metadata = artifacts.load_patch_artifact(directory, backbone, vocabulary)
        task = served_task(model, metadata, os.path.abspath(directory), name)
        tasks.append(task)
        log(f"  task {name}: {metadata.kind}, {metadata.strategy}, {len(task.output_names)} outputs ({directory})")
        if metadata.vocabulary() is None:
            log(f"  warning: {directory} records no label/target vocabulary: its outputs are served as ids")
    return tasks


def served_task(model, metadata: artifacts.PatchMetadata, source: str = "", name: Optional[str] = None) -> ServedTask:
    """A ServedTask of a TaskModel already on the backbone (``name`` defaults to the task's name)."""
    names, reserved = _output_names(model.config, metadata, model.head, source or metadata.task_name)
    return ServedTask(name or metadata.task_name, metadata.kind, model, metadata, names, reserved, source)


# ----------------------------------------------------------------------------------- the module
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


class _Untracked:
    """A plain attribute holder that tf.Module does not track."""

    def __init__(self, **values):
        self.__dict__.update(values)


class _WeightSlots:
    """Where a task model keeps the variables of its own (not the shared backbone's).

    ``slots`` lists (module index, attribute, variable index) in a deterministic structural order
    (``[model] + model.submodules``, attributes sorted), ``variables`` the distinct variables.
    Two tasks with the same ``key`` have the same structure: one traced forward serves both, fed
    with each task's own variable values.
    """

    def __init__(self, task: ServedTask, shared_ids):
        self.task_name = task.name
        model = task.model
        own = list(model.task_variables())
        if all(id(v) not in shared_ids for v in model.backbone.weights):
            # fine-all / fine-last run on their own copy, peter-zero on its own untrained backbone
            own += list(model.backbone.weights)
        # the pretraining output layer of a task's own backbone copy is never used by the task
        scorer = {id(v) for v in model.backbone.output_layer.weights}
        own_ids = {id(v) for v in own if id(v) not in scorer}
        self.modules = [model] + list(model.submodules)
        self.slots: List[Tuple[int, str, int]] = []
        self.variables: List[tf.Variable] = []
        position: Dict[int, int] = {}
        for index, module in enumerate(self.modules):
            for attribute, value in sorted(vars(module).items()):
                if isinstance(value, tf.Variable) and id(value) in own_ids:
                    if id(value) not in position:
                        position[id(value)] = len(self.variables)
                        self.variables.append(value)
                    self.slots.append((index, attribute, position[id(value)]))
        config = model.config.to_dict()
        config.pop("name")
        self.key = (repr(sorted(config.items())), type(model.head).__name__, task.num_reserved,
                    tuple((i, type(self.modules[i]).__name__, a, p) for i, a, p in self.slots),
                    tuple((tuple(v.shape.as_list()), v.dtype.name) for v in self.variables))

    @contextlib.contextmanager
    def swapped_in(self, values):
        """While tracing, the slots hold ``values`` (tensors) instead of the variables.

        ``object.__setattr__`` bypasses Keras' attribute tracking, so nothing else changes; a
        layer that read a weight some other way would capture the variable itself, which
        ``ServingModule`` detects after tracing.
        """
        try:
            for index, attribute, position in self.slots:
                object.__setattr__(self.modules[index], attribute, values[position])
            yield
        finally:
            for index, attribute, position in self.slots:
                object.__setattr__(self.modules[index], attribute, self.variables[position])


class _PackedWeights:
    """One task's own variables packed into one flat variable per dtype (what the SavedModel stores).

    A SavedModel's save/restore functions and its loading grow with the number of variables; a
    patch has ~10 per block. Packed, a task adds one or two variables, and ``unpack`` gives back
    the tensors in the task's slot order for the shared forward.
    """

    def __init__(self, name: str, variables: Sequence[tf.Variable]):
        self.shapes = [v.shape.as_list() for v in variables]
        self.dtypes = [v.dtype for v in variables]
        self.order = sorted({d.name for d in self.dtypes})
        self.variables = []
        for dtype_name in self.order:
            members = [v for v in variables if v.dtype.name == dtype_name]
            flat = np.concatenate([v.numpy().reshape(-1) for v in members]) if members else []
            self.variables.append(tf.Variable(flat, dtype=dtype_name, trainable=False,
                                              name=f"{name}_weights_{dtype_name}"))

    def specs(self) -> List[tf.TensorSpec]:
        """The TensorSpecs of the packed variables (one flat vector per dtype)."""
        return [tf.TensorSpec(v.shape, v.dtype) for v in self.variables]

    def unpack(self, packed: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The weights as tensors in slot order, from the packed vectors (of this or an equal layout)."""
        values: List[Optional[tf.Tensor]] = [None] * len(self.shapes)
        for dtype_name, flat in zip(self.order, packed):
            members = [i for i, d in enumerate(self.dtypes) if d.name == dtype_name]
            pieces = tf.split(flat, [int(np.prod(self.shapes[i])) for i in members])
            for i, piece in zip(members, pieces):
                values[i] = tf.reshape(piece, self.shapes[i])
        return values


class ServingModule(tf.Module):
    """The SavedModel root: the backbone's variables once, each task's packed weights, the tables.

    ``signature_functions()`` traces one concrete function per signature (and checks that each
    reads only the backbone's and its own task's variables). The object graph holds
    ``backbone_variables`` and ``task_weights[<task>]`` (see ``_PackedWeights``).

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
        self._models = _Untracked(backbone=backbone, tasks=list(tasks), functions={}, slots={}, templates={},
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
            slots = _WeightSlots(task, shared_ids)
            self._models.slots[task.name] = slots
            self._models.templates.setdefault(slots.key, slots)
            self._models.packed[task.name] = _PackedWeights(task.name, slots.variables)
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
            own = allowed | {id(v) for v in self.task_weights.get(name, [])}
            stray = [v.name for v in function.variables if id(v) not in own]
            if stray:
                raise AssemblyError(f"signature {name!r} reads variables outside the backbone and its own "
                                    f"task weights: {stray[:5]} (a layer keeps weights where the shared "
                                    "forward cannot swap them)")


# ----------------------------------------------------------------------------------- sizes
@dataclasses.dataclass
class SizeReport:
    """Bytes on disk: the served version against its inputs and against N separate full models.

    ``separate_models_bytes`` estimates N separately fine-tuned full models as N backbone copies
    plus every patch (what serving each task on its own would store).
    """

    version_bytes: int
    parts: Dict[str, int]
    backbone_bytes: int
    patch_bytes: Dict[str, int]

    @property
    def patches_total(self) -> int:
        return sum(self.patch_bytes.values())

    @property
    def shared_inputs_bytes(self) -> int:
        """backbone + sum of patches."""
        return self.backbone_bytes + self.patches_total

    @property
    def separate_models_bytes(self) -> int:
        return len(self.patch_bytes) * self.backbone_bytes + self.patches_total

    def lines(self) -> List[str]:
        """The human-readable report (printed by ``peterrec export``)."""
        n = len(self.patch_bytes)
        parts = ", ".join(f"{name} {_mb(size)}" for name, size in self.parts.items())
        return [
            f"size on disk: served model {_mb(self.version_bytes)} ({parts})",
            f"  backbone export {_mb(self.backbone_bytes)} + {n} patch artifact(s) {_mb(self.patches_total)} "
            f"= {_mb(self.shared_inputs_bytes)}; served / (backbone + patches) = "
            f"{self.version_bytes / max(1, self.shared_inputs_bytes):.2f}",
            f"  {n} separate full model(s) (a backbone copy + patch each) ~ {_mb(self.separate_models_bytes)}; "
            f"served / separate = {self.version_bytes / max(1, self.separate_models_bytes):.2f}",
        ]


def _mb(size: int) -> str:
    return f"{size / 1e6:.3f} MB"


def size_report(version_dir: str, backbone_dir: str, tasks: Sequence[ServedTask]) -> SizeReport:
    """Measures the served version, the backbone export and the patch artifacts on disk."""
    parts: Dict[str, int] = {}
    for entry in sorted(os.listdir(version_dir)):
        path = os.path.join(version_dir, entry)
        parts[entry] = artifacts.directory_size(path) if os.path.isdir(path) else os.path.getsize(path)
    return SizeReport(sum(parts.values()), parts, artifacts.directory_size(backbone_dir),
                      {task.name: artifacts.directory_size(task.source) for task in tasks})


# ----------------------------------------------------------------------------------- export
def next_version(model_base: str) -> int:
    """1 + the highest numeric folder under ``model_base`` (1 when there is none)."""
    if not os.path.isdir(model_base):
        return 1
    numbers = [int(name) for name in os.listdir(model_base) if name.isdigit()]
    return max(numbers, default=0) + 1


def _publish(staging: str, model_base: str, attempts: int = 20) -> Tuple[int, str]:
    """Renames the finished staging folder to the next free version number."""
    for _ in range(attempts):
        version = next_version(model_base)
        target = os.path.join(model_base, str(version))
        if os.path.exists(target):
            continue
        try:
            os.rename(staging, target)
        except OSError:  # another export took this number in the meantime
            if os.path.exists(staging):
                continue
            raise
        return version, target
    raise AssemblyError(f"could not find a free version number under {model_base}")


@dataclasses.dataclass
class ExportResult:
    """What ``export_serving_model`` wrote."""

    model_name: str
    model_base: str
    version: int
    path: str
    signatures: List[str]
    sizes: SizeReport
    serving_files: Dict[str, str]
    seconds: float

    def lines(self) -> List[str]:
        """The summary ``peterrec export`` prints."""
        lines = [f"exported {self.model_name} version {self.version} to {self.path} in {self.seconds:.1f} s",
                 f"signatures: {', '.join(self.signatures)}"]
        lines += self.sizes.lines()
        for kind, path in self.serving_files.items():
            lines.append(f"{kind}: {path}")
        return lines


def task_entries(module: ServingModule, tasks: Sequence[ServedTask], backbone) -> Dict[str, dict]:
    """The ``peterrec_tasks.json`` entries of every signature."""
    entries = {}
    for task in tasks:
        common = dict(strategy=task.strategy, readout=task.model.config.readout, metrics=dict(task.metadata.metrics),
                      trainable_params=int(task.metadata.trainable_params))
        if task.kind == signatures.KIND_CLASSIFICATION:
            entries[task.name] = signatures.task_entry(task.kind, labels=task.output_names, **common)
        else:
            entries[task.name] = signatures.task_entry(task.kind, top_k=task.top_k(module.top_k),
                                                       num_targets=len(task.output_names), **common)
    if module.serves_backbone_signatures:
        entries[signatures.EMBED_SIGNATURE] = signatures.task_entry(signatures.KIND_EMBED,
                                                                    dim=int(backbone.embedding_dim))
        entries[signatures.NEXT_ITEMS_SIGNATURE] = signatures.task_entry(
            signatures.KIND_NEXT_ITEMS, top_k=min(module.top_k, module.num_items))
    return entries


def warmup_rows(vocabulary) -> List[List[str]]:
    """Two item rows of different lengths for the warm-up requests, one with an unknown id."""
    tokens = list(vocabulary.tokens[:3])
    return [tokens, tokens[-1:] + [WARMUP_UNKNOWN_ITEM]]


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


def save_version(module: ServingModule, concrete: Dict[str, object], model_base: str, metadata: Dict[str, dict],
                 warmup_items: Optional[List[List[str]]] = None, **extra) -> Tuple[int, str]:
    """Saves the module as the next version under ``model_base`` (staging folder, then rename).

    ``metadata``: the ``peterrec_tasks.json`` entries (``task_entries``); ``extra``: its other
    top-level keys. ``warmup_items``: rows for one warm-up request per signature (None: none).
    Returns (version, path).
    """
    from peterrec.serving import warmup as warmup_module

    model_base = os.path.abspath(model_base)
    os.makedirs(model_base, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_base)
    try:
        tf.saved_model.save(module, staging, signatures=concrete)
        signatures.write_tasks_metadata(staging, metadata, **extra)
        if warmup_items:
            requests = warmup_module.contract_warmup_requests(os.path.basename(model_base), sorted(concrete),
                                                              warmup_items)
            warmup_module.write_warmup_requests(staging, requests)
        return _publish(staging, model_base)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export_serving_model(backbone_dir: str, task_arguments: Sequence[str], model_base: str,
                         top_k: int = signatures.DEFAULT_TOP_K, max_len: int = DEFAULT_MAX_LEN,
                         label: Optional[str] = None, warmup: bool = True, write_serving_files: bool = True,
                         config_dir: Optional[str] = None,
                         log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Writes the next version of the multi-task SavedModel under ``model_base`` (see module doc).

    ``task_arguments``: patch artifact folders (``DIR`` or ``NAME=DIR``). ``label`` (e.g. stable or
    canary) points that version label at the new version in ``models.config``; ``config_dir``
    (default: the folder holding ``model_base``) receives the TF Serving files.
    """
    from peterrec.serving import serving_files

    started = time.perf_counter()
    model_base = os.path.abspath(model_base)
    model_name = os.path.basename(model_base)
    if not model_name or model_name.isdigit() or model_name.startswith("."):
        raise AssemblyError(f"--model-base must be DIR/NAME (NAME: the model's name), got {model_base!r}")
    if label is not None:
        serving_files.validate_label(label)
    log(f"loading backbone {backbone_dir}")
    fingerprint = artifacts.read_backbone_metadata(backbone_dir)["fingerprint"]
    backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
    log(f"loading {len(task_arguments)} patch artifact(s)")
    tasks = load_served_tasks(task_arguments, backbone, vocabulary, fingerprint, log)
    asset_dir = tempfile.mkdtemp(prefix="peterrec-export-assets-")
    try:
        log(f"tracing {len(tasks) + 2} signatures")
        module, concrete = build_serving_module(backbone, vocabulary, tasks, asset_dir, max_len=max_len, top_k=top_k)
        log("saving the SavedModel")
        version, path = save_version(
            module, concrete, model_base, task_entries(module, tasks, backbone),
            warmup_rows(vocabulary) if warmup else None,
            backbone_fingerprint=fingerprint, item_vocabulary_fingerprint=vocabulary.fingerprint,
            backbone_config=backbone.backbone_config.to_dict(), max_len=module.max_len,
            sources={"backbone": os.path.abspath(backbone_dir), **{t.name: t.source for t in tasks}},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    finally:
        shutil.rmtree(asset_dir, ignore_errors=True)
    log(f"published version {version}")
    files = {}
    if write_serving_files:
        files = serving_files.update_serving_files(model_base, version, label=label, config_dir=config_dir)
    return ExportResult(model_name, model_base, version, path, sorted(concrete), size_report(path, backbone_dir, tasks),
                        files, time.perf_counter() - started)
